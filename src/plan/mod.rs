//! The plan: what a deploy would create, change and delete, computed as data before anything
//! is touched (as vector's `config/diff.rs` and cargo-dist's `plan` do).
//!
//! Each resource is a kind, a name and a JSON spec. Desired specs come from the manifests;
//! live specs from the platform, normalised the same way, so the diff is a comparison of
//! `serde_json::Value`s with a field-level diff for what changed.

mod desired;
mod print;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use desired::{desired, image_uri, repository, DesiredInputs};
pub use print::{print_text, to_json};

/// The kinds of resource a deploy manages, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    EcrRepository,
    LogGroup,
    Topic,
    TaskDefinition,
    Service,
    Scaling,
    Alarm,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EcrRepository => "ecr-repository",
            Kind::LogGroup => "log-group",
            Kind::Topic => "topic",
            Kind::TaskDefinition => "task-definition",
            Kind::Service => "service",
            Kind::Scaling => "scaling",
            Kind::Alarm => "alarm",
        }
    }

    /// Whether a live resource of this kind that nothing declares is deleted (with
    /// `--prune`) or only reported as unmanaged. Topics hold data: never deleted by omission.
    pub fn deletable(self) -> bool {
        !matches!(self, Kind::Topic | Kind::EcrRepository | Kind::LogGroup)
    }
}

/// One resource, desired or live.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
    /// The consumer it belongs to; `None` for shared resources such as topics.
    pub consumer: Option<String>,
    pub spec: Value,
}

/// What exists now. Empty until the platform's live reads fill it.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub resources: BTreeMap<(Kind, String), Resource>,
}

impl Live {
    pub fn insert(&mut self, r: Resource) {
        self.resources.insert((r.kind, r.name.clone()), r);
    }
}

/// One field that differs. `before` is absent on create, `after` on delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One planned action on one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub fields: Vec<FieldDiff>,
}

/// Desired against live.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub create: Vec<Item>,
    pub change: Vec<Item>,
    pub delete: Vec<Item>,
    /// Live resources nothing declares that are never deleted by omission (topics).
    pub unmanaged: Vec<Item>,
    /// Resources that already match.
    pub unchanged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.change.is_empty() && self.delete.is_empty()
    }

    /// The plan as it may be shown or stored: every credential among the values redacted
    /// (see [`crate::manifest::credential`]). A field is named by its path's last segment,
    /// e.g. `API_KEYS` in `containerDefinitions[api].environment[API_KEYS]`.
    pub fn redacted(&self) -> Plan {
        let items = |list: &[Item]| -> Vec<Item> {
            list.iter()
                .map(|i| Item {
                    fields: i
                        .fields
                        .iter()
                        .map(|f| FieldDiff {
                            path: f.path.clone(),
                            before: f.before.as_ref().map(|v| redact_field(&f.path, v)),
                            after: f.after.as_ref().map(|v| redact_field(&f.path, v)),
                        })
                        .collect(),
                    ..i.clone()
                })
                .collect()
        };
        Plan {
            create: items(&self.create),
            change: items(&self.change),
            delete: items(&self.delete),
            unmanaged: items(&self.unmanaged),
            unchanged: self.unchanged,
        }
    }
}

/// One field's value, redacted by the name its path ends in.
fn redact_field(path: &str, value: &Value) -> Value {
    use crate::manifest::credential;
    match value {
        Value::String(s) => {
            let name = match path.strip_suffix(']') {
                Some(p) => p.rsplit('[').next().unwrap_or(p),
                None => path.rsplit('.').next().unwrap_or(path),
            };
            Value::String(credential::redact_value(name, s).into_owned())
        }
        other => {
            let mut v = other.clone();
            credential::redact_json(&mut v);
            v
        }
    }
}

/// Compares desired resources with live ones.
pub fn diff(desired: &[Resource], live: &Live) -> Plan {
    let mut plan = Plan::default();
    let mut seen = std::collections::BTreeSet::new();
    for d in desired {
        let key = (d.kind, d.name.clone());
        seen.insert(key.clone());
        match live.resources.get(&key) {
            None => plan.create.push(Item {
                kind: d.kind,
                name: d.name.clone(),
                consumer: d.consumer.clone(),
                fields: field_diff(None, Some(&d.spec)),
            }),
            Some(l) => {
                let fields = field_diff(Some(&l.spec), Some(&d.spec));
                if fields.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.change.push(Item {
                        kind: d.kind,
                        name: d.name.clone(),
                        consumer: d.consumer.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for (key, l) in &live.resources {
        if seen.contains(key) {
            continue;
        }
        let item = Item {
            kind: l.kind,
            name: l.name.clone(),
            consumer: l.consumer.clone(),
            fields: Vec::new(),
        };
        if l.kind.deletable() {
            plan.delete.push(item);
        } else {
            plan.unmanaged.push(item);
        }
    }
    plan
}

/// Field-level differences between two specs, by flattened path.
pub fn field_diff(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldDiff> {
    let mut b = BTreeMap::new();
    let mut a = BTreeMap::new();
    if let Some(v) = before {
        flatten("", v, &mut b);
    }
    if let Some(v) = after {
        flatten("", v, &mut a);
    }
    let mut paths: Vec<&String> = b.keys().chain(a.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (b.get(p), a.get(p));
            (x != y).then(|| FieldDiff {
                path: p.clone(),
                before: x.cloned(),
                after: y.cloned(),
            })
        })
        .collect()
}

/// Flattens JSON to leaf paths. Array elements that are objects with a `name` (container
/// definitions, environment variables) are addressed by that name, so that inserting one
/// variable shows as one added line rather than every later index changing.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, child, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(is_scalar) => {
            out.insert(prefix.to_string(), v.clone());
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                let label = child
                    .get("name")
                    .or_else(|| child.get("key"))
                    .and_then(Value::as_str)
                    .map(|n| format!("{prefix}[{n}]"))
                    .unwrap_or_else(|| format!("{prefix}[{i}]"));
                // `{name, value}`, `{name, valueFrom}` and `{key, value}` pairs read best as one line.
                let pair = child.as_object().filter(|o| o.len() == 2).and_then(|o| {
                    let named = o.contains_key("name") || o.contains_key("key");
                    let value = o.get("value").or_else(|| o.get("valueFrom"));
                    value.filter(|_| named)
                });
                match pair {
                    Some(value) => {
                        out.insert(label, value.clone());
                    }
                    None => flatten(&label, child, out),
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(kind: Kind, name: &str, spec: Value) -> Resource {
        Resource {
            kind,
            name: name.into(),
            consumer: None,
            spec,
        }
    }

    #[test]
    fn create_change_delete_and_unmanaged() {
        let desired = vec![
            res(Kind::Service, "a", json!({"desiredCount": 1})),
            res(Kind::Service, "b", json!({"desiredCount": 2})),
            res(Kind::Topic, "t", json!({"partitions": 3})),
        ];
        let mut live = Live::default();
        live.insert(res(Kind::Service, "b", json!({"desiredCount": 1})));
        live.insert(res(Kind::Service, "gone", json!({})));
        live.insert(res(Kind::Topic, "t", json!({"partitions": 3})));
        live.insert(res(Kind::Topic, "other", json!({})));
        let plan = diff(&desired, &live);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.change[0].fields[0].path, "desiredCount");
        assert_eq!(plan.delete[0].name, "gone");
        assert_eq!(plan.unmanaged[0].name, "other");
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn redacted_hides_credentials_by_path_and_keeps_the_rest() {
        let before =
            json!({"environment": [{"name": "DATABASE_URL", "value": "postgres://u:old@h/db"}]});
        let after = json!({
            "environment": [
                {"name": "DATABASE_URL", "value": "postgres://u:new@h/db"},
                {"name": "API_KEYS", "value": "k1"},
                {"name": "RUST_LOG", "value": "info"}
            ],
            "spec": {"environment": {"JWT_SECRET": "s"}}
        });
        let mut live = Live::default();
        live.insert(res(Kind::TaskDefinition, "t", before));
        let plan = diff(&[res(Kind::TaskDefinition, "t", after)], &live).redacted();
        let shown: Vec<(String, Option<Value>, Option<Value>)> = plan.change[0]
            .fields
            .iter()
            .map(|f| (f.path.clone(), f.before.clone(), f.after.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("environment[API_KEYS]".into(), None, Some(json!("***"))),
                (
                    "environment[DATABASE_URL]".into(),
                    Some(json!("postgres://u:***@h/db")),
                    Some(json!("postgres://u:***@h/db"))
                ),
                ("environment[RUST_LOG]".into(), None, Some(json!("info"))),
                (
                    "spec.environment.JWT_SECRET".into(),
                    None,
                    Some(json!("***"))
                ),
            ]
        );
    }

    #[test]
    fn named_list_items_diff_by_name() {
        let before =
            json!({"environment": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]});
        let after = json!({"environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]});
        let d = field_diff(Some(&before), Some(&after));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "environment[B]");
        assert_eq!(d[0].after, Some(json!("2")));
    }
}
