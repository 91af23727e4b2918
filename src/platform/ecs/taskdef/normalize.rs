//! The comparable form of a task definition.

use serde_json::{Map, Value};

// ------------------------------------------------------------------------------ normalize

/// Fields ECS fills in on registration; never part of a comparison.
const SERVER_FIELDS: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
];

/// The comparable form of a task definition, rendered or described: server-filled fields
/// dropped; nulls, empty lists and empty objects dropped (ECS and moto echo `volumes: []`,
/// `placementConstraints: []`, `mountPoints: []`, `volumesFrom: []`, `environment: []`);
/// values equal to what ECS fills in when a field is left out dropped (container `cpu: 0`,
/// `essential: true`, port `protocol: "tcp"`, `hostPort` equal to `containerPort` in `awsvpc`
/// and `host` mode, health-check `interval: 30`, `timeout: 5`, `retries: 3`,
/// `startPeriod: 0`, `networkMode: "bridge"`, `readonlyRootFilesystem: false`); and
/// `tags` sorted by key, `environment`, `secrets`, `secretOptions` and `ulimits` by name.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    let Value::Object(m) = &mut v else {
        return v;
    };
    for key in SERVER_FIELDS {
        m.remove(*key);
    }
    if m.get("networkMode").and_then(Value::as_str) == Some("bridge") {
        m.remove("networkMode");
    }
    let mode = m
        .get("networkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge")
        .to_string();
    if let Some(Value::Array(containers)) = m.get_mut("containerDefinitions") {
        for c in containers.iter_mut() {
            if let Value::Object(c) = c {
                normalize_container(c, &mode);
            }
        }
    }
    sort_by(m, "tags", "key");
    prune(&mut v);
    v
}

fn normalize_container(c: &mut Map<String, Value>, mode: &str) {
    remove_if(c, "cpu", &Value::from(0));
    remove_if(c, "essential", &Value::Bool(true));
    remove_if(c, "readonlyRootFilesystem", &Value::Bool(false));
    sort_by(c, "environment", "name");
    sort_by(c, "secrets", "name");
    sort_by(c, "ulimits", "name");
    if let Some(Value::Object(log)) = c.get_mut("logConfiguration") {
        sort_by(log, "secretOptions", "name");
    }
    if let Some(Value::Object(h)) = c.get_mut("healthCheck") {
        remove_if(h, "interval", &Value::from(30));
        remove_if(h, "timeout", &Value::from(5));
        remove_if(h, "retries", &Value::from(3));
        remove_if(h, "startPeriod", &Value::from(0));
    }
    if let Some(Value::Array(ports)) = c.get_mut("portMappings") {
        for p in ports.iter_mut() {
            let Value::Object(p) = p else { continue };
            remove_if(p, "protocol", &Value::from("tcp"));
            let container_port = p.get("containerPort").cloned();
            match (mode, container_port) {
                ("awsvpc" | "host", Some(port)) => remove_if(p, "hostPort", &port),
                // In bridge mode an absent hostPort is a dynamic one, which ECS shows as 0.
                _ => remove_if(p, "hostPort", &Value::from(0)),
            }
        }
    }
}

fn remove_if(m: &mut Map<String, Value>, key: &str, default: &Value) {
    if m.get(key) == Some(default) {
        m.remove(key);
    }
}

/// Sorts a list of objects by one of their string fields.
fn sort_by(m: &mut Map<String, Value>, list: &str, key: &str) {
    if let Some(Value::Array(items)) = m.get_mut(list) {
        items.sort_by(|a, b| {
            let ka = a.get(key).and_then(Value::as_str).unwrap_or_default();
            let kb = b.get(key).and_then(Value::as_str).unwrap_or_default();
            ka.cmp(kb)
        });
    }
}

/// Drops nulls, empty lists and empty objects, recursively (an object or list that becomes
/// empty is dropped too). The top-level value itself is kept.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                prune(child);
            }
            m.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                prune(child);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
