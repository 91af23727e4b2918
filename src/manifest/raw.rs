//! The manifests exactly as written: serde types with `deny_unknown_fields` and every field
//! optional, so that a missing key is reported by validation with a helpful message instead
//! of by serde, and so that one bad key does not hide the others.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::problem::{split_key, FileProblems, Segment};

/// `consumers/<name>/consumer.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerFile {
    pub kind: Option<String>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub command: Option<Vec<String>>,
    pub platforms: Option<Vec<String>>,
    pub task_role: Option<String>,
    pub build: Option<BuildSection>,
    pub env: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, String>>,
    pub required: Option<Vec<String>>,
    pub required_on: Option<BTreeMap<String, Vec<String>>>,
    pub allow_plain: Option<Vec<String>>,
    pub kafka: Option<KafkaSection>,
    pub topic: Option<Vec<TopicSection>>,
    pub scaling: Option<ScalingSection>,
    pub api: Option<ApiSection>,
    pub alarms: Option<AlarmsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub target: Option<String>,
    pub args: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub group: Option<String>,
    pub topics: Option<Vec<String>>,
    pub offset_reset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSection {
    pub name: Option<String>,
    pub partitions: Option<i64>,
    pub replication: Option<i64>,
    pub config: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSection {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub max_lag_seconds: Option<f64>,
    pub duty_cycle: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub port: Option<i64>,
    pub health_path: Option<String>,
    pub health_command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsSection {
    pub enabled: Option<bool>,
    pub lag_minutes: Option<i64>,
    pub below_desired_minutes: Option<i64>,
    pub no_data_minutes: Option<i64>,
    pub dlq: Option<bool>,
    pub dlq_topic: Option<String>,
}

/// `shoal.toml` at the project root.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    pub project: Option<String>,
    pub default_env: Option<String>,
    pub env: Option<BTreeMap<String, EnvSection>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    pub platform: Option<String>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub registry: Option<String>,
    pub cluster: Option<String>,
    pub subnets: Option<Vec<String>>,
    pub security_groups: Option<Vec<String>>,
    pub assign_public_ip: Option<bool>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub log_group_prefix: Option<String>,
    pub log_retention_days: Option<i64>,
    pub keep_images: Option<i64>,
    pub vars: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, String>>,
    pub allow_plain: Option<Vec<String>>,
    pub kafka: Option<EnvKafkaSection>,
    pub alarm_topic_arn: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvKafkaSection {
    pub bootstrap: Option<Vec<String>>,
    pub msk_cluster_arn: Option<String>,
    pub auth: Option<String>,
    /// The Secrets Manager secret (name starting `AmazonMSK_`) with the SCRAM credentials.
    pub scram_secret_arn: Option<String>,
}

/// Parses `text` as TOML and deserialises it into `T`, recording every problem in `fp`.
///
/// serde stops at the first bad key. To report all of them, each failure is recorded and the
/// offending key removed, then deserialisation runs again, until it succeeds. The result is
/// `None` when the text is not TOML at all; otherwise it is the value with bad keys left out.
pub fn parse<T: DeserializeOwned + Default>(text: &str, fp: &mut FileProblems) -> Option<T> {
    let mut value: toml::Value = match text.parse::<toml::Table>() {
        Ok(table) => toml::Value::Table(table),
        Err(e) => {
            fp.push_at(
                e.span().map(|s| s.start),
                format!("not valid TOML: {}", e.message()),
            );
            fp.help_last("fix the syntax at that line: each line is `key = value` or a [section]");
            return None;
        }
    };
    // Each round removes the key that failed. A path that fails twice (an array element
    // replaced by a placeholder of the wrong type) ends the loop, as does a round limit.
    let mut failed = std::collections::BTreeSet::new();
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(e) => {
                let mut path = path_of(e.path());
                let message = e.inner().to_string();
                let message = message.lines().next().unwrap_or_default().to_string();
                if let Some(unknown) = unknown_field(&message) {
                    let quoted = super::problem::quote_key(&unknown);
                    if path.is_empty() {
                        path = quoted;
                    } else if path != quoted && !path.ends_with(&format!(".{quoted}")) {
                        path.push('.');
                        path.push_str(&quoted);
                    }
                    fp.push(&path, "unknown key").help = Some(allowed_keys(&message));
                } else {
                    fp.push(&path, friendly_type_error(&message)).help = Some(
                        "check the value against the manifest reference in README.md".to_string(),
                    );
                }
                if path.is_empty()
                    || !failed.insert(path.clone())
                    || !remove_path(&mut value, &path)
                {
                    return Some(T::default());
                }
            }
        }
    }
    Some(T::default())
}

/// serde_path_to_error writes `topic[0].name`; keys holding dots are quoted for our paths.
fn path_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&super::problem::quote_key(key));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn allowed_keys(message: &str) -> String {
    match message.find("expected") {
        Some(i) => format!("{}; check the spelling", &message[i..]),
        None => "remove it or check the spelling".to_string(),
    }
}

fn friendly_type_error(message: &str) -> String {
    message
        .replace("invalid type: ", "wrong type: found ")
        .replace("expected u32", "expected a whole number")
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
}

/// Removes the value at a dotted path. Returns false when nothing was removed.
fn remove_path(value: &mut toml::Value, path: &str) -> bool {
    let segments = split_key(path);
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Segment::Key(k), toml::Value::Table(t)) => match t.get_mut(*k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Key(k), toml::Value::Table(t)) => t.remove(*k).is_some(),
        (Segment::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            // Replace rather than remove, so the indexes of later elements stay as reported.
            a[*i] = toml::Value::Table(toml::Table::new());
            true
        }
        _ => false,
    }
}
