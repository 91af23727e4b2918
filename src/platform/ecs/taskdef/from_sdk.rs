//! A described task definition (the SDK's types) → shoal's JSON shape.

use std::collections::HashMap;

use aws_sdk_ecs::types::{ContainerDefinition, PortMapping, Secret, Tag, TaskDefinition, Volume};
use serde_json::{Map, Value};

// ------------------------------------------------------------------------------ SDK → JSON

/// What [`to_json`] writes for a field that is set on a live revision but that shoal's
/// conversion does not cover: the comparison then shows it as a difference.
pub const UNMANAGED: &str = "(set on the live revision; not managed by shoal)";

/// The JSON shape of a task definition as ECS describes it: the request fields shoal
/// converts, the server-filled ones (`taskDefinitionArn`, `revision`, `status`,
/// `compatibilities`, `requiresAttributes`, `registeredAt`, ...) and `tags`. Fields outside
/// the conversion that are set carry [`UNMANAGED`].
pub fn to_json(td: &TaskDefinition, tags: &[Tag]) -> Value {
    let mut m = Map::new();
    put_str(
        &mut m,
        "taskDefinitionArn",
        td.task_definition_arn.as_deref(),
    );
    put_str(&mut m, "family", td.family.as_deref());
    m.insert("revision".into(), Value::from(td.revision));
    put_str(&mut m, "status", td.status.as_ref().map(|s| s.as_str()));
    put_str(&mut m, "taskRoleArn", td.task_role_arn.as_deref());
    put_str(&mut m, "executionRoleArn", td.execution_role_arn.as_deref());
    put_str(
        &mut m,
        "networkMode",
        td.network_mode.as_ref().map(|n| n.as_str()),
    );
    put_opt(
        &mut m,
        "requiresCompatibilities",
        td.requires_compatibilities
            .as_ref()
            .map(|v| strings(v.iter().map(|c| c.as_str()))),
    );
    put_opt(
        &mut m,
        "compatibilities",
        td.compatibilities
            .as_ref()
            .map(|v| strings(v.iter().map(|c| c.as_str()))),
    );
    put_opt(
        &mut m,
        "requiresAttributes",
        td.requires_attributes.as_ref().map(|attrs| {
            Value::Array(
                attrs
                    .iter()
                    .map(|a| {
                        let mut o = Map::new();
                        o.insert("name".into(), Value::from(a.name.as_str()));
                        put_str(&mut o, "value", a.value.as_deref());
                        put_str(&mut o, "targetId", a.target_id.as_deref());
                        put_str(
                            &mut o,
                            "targetType",
                            a.target_type.as_ref().map(|t| t.as_str()),
                        );
                        Value::Object(o)
                    })
                    .collect(),
            )
        }),
    );
    put_str(&mut m, "cpu", td.cpu.as_deref());
    put_str(&mut m, "memory", td.memory.as_deref());
    if let Some(rp) = &td.runtime_platform {
        let mut o = Map::new();
        put_str(
            &mut o,
            "cpuArchitecture",
            rp.cpu_architecture.as_ref().map(|c| c.as_str()),
        );
        put_str(
            &mut o,
            "operatingSystemFamily",
            rp.operating_system_family.as_ref().map(|o| o.as_str()),
        );
        m.insert("runtimePlatform".into(), Value::Object(o));
    }
    if let Some(es) = &td.ephemeral_storage {
        m.insert(
            "ephemeralStorage".into(),
            serde_json::json!({ "sizeInGiB": es.size_in_gib }),
        );
    }
    if let Some(volumes) = &td.volumes {
        m.insert(
            "volumes".into(),
            Value::Array(volumes.iter().map(volume_json).collect()),
        );
    }
    if let Some(containers) = &td.container_definitions {
        m.insert(
            "containerDefinitions".into(),
            Value::Array(containers.iter().map(container_json).collect()),
        );
    }
    unmanaged(
        &mut m,
        &[
            (
                "placementConstraints",
                has_items(td.placement_constraints.as_deref()),
            ),
            (
                "inferenceAccelerators",
                has_items(td.inference_accelerators.as_deref()),
            ),
            ("pidMode", td.pid_mode.is_some()),
            ("ipcMode", td.ipc_mode.is_some()),
            ("proxyConfiguration", td.proxy_configuration.is_some()),
            (
                "enableFaultInjection",
                td.enable_fault_injection == Some(true),
            ),
        ],
    );
    put_str(
        &mut m,
        "registeredAt",
        td.registered_at.map(|t| t.to_string()).as_deref(),
    );
    put_str(&mut m, "registeredBy", td.registered_by.as_deref());
    put_str(
        &mut m,
        "deregisteredAt",
        td.deregistered_at.map(|t| t.to_string()).as_deref(),
    );
    put_str(
        &mut m,
        "deleteRequestedAt",
        td.delete_requested_at.map(|t| t.to_string()).as_deref(),
    );
    if !tags.is_empty() {
        m.insert(
            "tags".into(),
            Value::Array(
                tags.iter()
                    .map(|t| pair_json("key", t.key.as_deref(), t.value.as_deref()))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// `{<label>: name, "value": value}`, leaving out what is absent: tags and environment entries.
fn pair_json(label: &str, name: Option<&str>, value: Option<&str>) -> Value {
    let mut o = Map::new();
    put_str(&mut o, label, name);
    put_str(&mut o, "value", value);
    Value::Object(o)
}

fn container_json(c: &ContainerDefinition) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "name", c.name.as_deref());
    put_str(&mut m, "image", c.image.as_deref());
    put_opt(&mut m, "essential", c.essential.map(Value::from));
    m.insert("cpu".into(), Value::from(c.cpu));
    put_opt(&mut m, "memory", c.memory.map(Value::from));
    put_opt(
        &mut m,
        "memoryReservation",
        c.memory_reservation.map(Value::from),
    );
    put_opt(
        &mut m,
        "command",
        c.command.as_ref().map(|v| strings(v.iter())),
    );
    put_opt(
        &mut m,
        "entryPoint",
        c.entry_point.as_ref().map(|v| strings(v.iter())),
    );
    put_str(&mut m, "workingDirectory", c.working_directory.as_deref());
    put_str(&mut m, "user", c.user.as_deref());
    put_opt(
        &mut m,
        "environment",
        c.environment.as_ref().map(|env| {
            Value::Array(
                env.iter()
                    .map(|kv| pair_json("name", kv.name.as_deref(), kv.value.as_deref()))
                    .collect(),
            )
        }),
    );
    put_opt(&mut m, "secrets", c.secrets.as_deref().map(secrets_json));
    put_opt(
        &mut m,
        "portMappings",
        c.port_mappings
            .as_ref()
            .map(|pm| Value::Array(pm.iter().map(port_json).collect())),
    );
    if let Some(h) = &c.health_check {
        let mut o = Map::new();
        o.insert("command".into(), strings(h.command.iter()));
        put_opt(&mut o, "interval", h.interval.map(Value::from));
        put_opt(&mut o, "timeout", h.timeout.map(Value::from));
        put_opt(&mut o, "retries", h.retries.map(Value::from));
        put_opt(&mut o, "startPeriod", h.start_period.map(Value::from));
        m.insert("healthCheck".into(), Value::Object(o));
    }
    if let Some(l) = &c.log_configuration {
        let mut o = Map::new();
        o.insert("logDriver".into(), Value::from(l.log_driver.as_str()));
        put_opt(&mut o, "options", l.options.as_ref().map(string_map_json));
        put_opt(
            &mut o,
            "secretOptions",
            l.secret_options.as_deref().map(secrets_json),
        );
        m.insert("logConfiguration".into(), Value::Object(o));
    }
    put_opt(
        &mut m,
        "dockerLabels",
        c.docker_labels.as_ref().map(string_map_json),
    );
    put_opt(&mut m, "stopTimeout", c.stop_timeout.map(Value::from));
    put_opt(
        &mut m,
        "readonlyRootFilesystem",
        c.readonly_root_filesystem.map(Value::from),
    );
    put_opt(
        &mut m,
        "ulimits",
        c.ulimits.as_ref().map(|u| {
            Value::Array(
                u.iter()
                    .map(|u| {
                        serde_json::json!({
                            "name": u.name.as_str(),
                            "softLimit": u.soft_limit,
                            "hardLimit": u.hard_limit,
                        })
                    })
                    .collect(),
            )
        }),
    );
    unmanaged(
        &mut m,
        &[
            ("repositoryCredentials", c.repository_credentials.is_some()),
            ("links", has_items(c.links.as_deref())),
            ("restartPolicy", c.restart_policy.is_some()),
            (
                "environmentFiles",
                has_items(c.environment_files.as_deref()),
            ),
            ("mountPoints", has_items(c.mount_points.as_deref())),
            ("volumesFrom", has_items(c.volumes_from.as_deref())),
            ("linuxParameters", c.linux_parameters.is_some()),
            ("dependsOn", has_items(c.depends_on.as_deref())),
            ("startTimeout", c.start_timeout.is_some()),
            // "enabled" is ECS's default.
            (
                "versionConsistency",
                c.version_consistency
                    .as_ref()
                    .is_some_and(|v| v.as_str() != "enabled"),
            ),
            ("hostname", c.hostname.is_some()),
            ("disableNetworking", c.disable_networking == Some(true)),
            ("privileged", c.privileged == Some(true)),
            ("dnsServers", has_items(c.dns_servers.as_deref())),
            (
                "dnsSearchDomains",
                has_items(c.dns_search_domains.as_deref()),
            ),
            ("extraHosts", has_items(c.extra_hosts.as_deref())),
            (
                "dockerSecurityOptions",
                has_items(c.docker_security_options.as_deref()),
            ),
            ("interactive", c.interactive == Some(true)),
            ("pseudoTerminal", c.pseudo_terminal == Some(true)),
            ("systemControls", has_items(c.system_controls.as_deref())),
            (
                "resourceRequirements",
                has_items(c.resource_requirements.as_deref()),
            ),
            ("firelensConfiguration", c.firelens_configuration.is_some()),
            ("credentialSpecs", has_items(c.credential_specs.as_deref())),
        ],
    );
    Value::Object(m)
}

fn port_json(p: &PortMapping) -> Value {
    let mut o = Map::new();
    put_opt(&mut o, "containerPort", p.container_port.map(Value::from));
    put_opt(&mut o, "hostPort", p.host_port.map(Value::from));
    put_str(&mut o, "protocol", p.protocol.as_ref().map(|x| x.as_str()));
    put_str(&mut o, "name", p.name.as_deref());
    put_str(
        &mut o,
        "appProtocol",
        p.app_protocol.as_ref().map(|x| x.as_str()),
    );
    put_str(
        &mut o,
        "containerPortRange",
        p.container_port_range.as_deref(),
    );
    Value::Object(o)
}

fn volume_json(v: &Volume) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "name", v.name.as_deref());
    if let Some(h) = &v.host {
        let mut ho = Map::new();
        put_str(&mut ho, "sourcePath", h.source_path.as_deref());
        o.insert("host".into(), Value::Object(ho));
    }
    unmanaged(
        &mut o,
        &[
            (
                "dockerVolumeConfiguration",
                v.docker_volume_configuration.is_some(),
            ),
            (
                "efsVolumeConfiguration",
                v.efs_volume_configuration.is_some(),
            ),
            (
                "fsxWindowsFileServerVolumeConfiguration",
                v.fsx_windows_file_server_volume_configuration.is_some(),
            ),
            ("configuredAtLaunch", v.configured_at_launch == Some(true)),
        ],
    );
    Value::Object(o)
}

fn secrets_json(s: &[Secret]) -> Value {
    Value::Array(
        s.iter()
            .map(|s| serde_json::json!({ "name": s.name, "valueFrom": s.value_from }))
            .collect(),
    )
}

fn string_map_json(m: &HashMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

fn strings<'a>(items: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>) -> Value {
    Value::Array(items.map(|s| Value::from(s.as_ref())).collect())
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.to_string(), Value::from(v));
    }
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

fn unmanaged(m: &mut Map<String, Value>, fields: &[(&str, bool)]) {
    for (key, set) in fields {
        if *set {
            m.insert((*key).to_string(), Value::from(UNMANAGED));
        }
    }
}

fn has_items<T>(v: Option<&[T]>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}
