//! Task definitions, rendered from `templates/task-definition.json.j2`. Pure: the same
//! manifest, environment and image give the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::manifest::{Consumer, Environment};

/// Where the template lives in a project, relative to its root.
pub const TEMPLATE_PATH: &str = "templates/task-definition.json.j2";

/// The template built into the binary, used when a project has none of its own.
pub const EMBEDDED_TEMPLATE: &str = include_str!("../templates/task-definition.json.j2");

/// A template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{origin}: {message}")]
    Template { origin: String, message: String },
    #[error(
        "{origin}: the rendered task definition of {consumer} is not JSON: {message}\n{excerpt}"
    )]
    NotJson {
        origin: String,
        consumer: String,
        message: String,
        excerpt: String,
    },
    #[error("{origin}: the rendered task definition of {consumer} {message}")]
    Shape {
        origin: String,
        consumer: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The task-definition template in use.
#[derive(Debug, Clone)]
pub struct Renderer {
    source: String,
    origin: String,
}

/// What every rendering needs besides the consumer: the project and environment names, and
/// the broker list when it is known without asking AWS.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub project: &'a str,
    pub env: &'a Environment,
    pub bootstrap: Option<String>,
}

#[derive(Serialize)]
struct NameValue<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct NameValueFrom<'a> {
    name: &'a str,
    #[serde(rename = "valueFrom")]
    value_from: &'a str,
}

#[derive(Serialize)]
struct Tag<'a> {
    key: &'a str,
    value: &'a str,
}

impl Renderer {
    /// The project's own template when it has one, else the embedded one.
    pub fn for_project(root: &Path) -> Result<Renderer, RenderError> {
        let path = root.join(TEMPLATE_PATH);
        match std::fs::read_to_string(&path) {
            Ok(source) => Ok(Renderer {
                source,
                origin: TEMPLATE_PATH.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::embedded()),
            Err(source) => Err(RenderError::Io { path, source }),
        }
    }

    pub fn embedded() -> Renderer {
        Renderer {
            source: EMBEDDED_TEMPLATE.to_string(),
            origin: format!("{TEMPLATE_PATH} (built in)"),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders one consumer's task definition for `image`.
    pub fn render(
        &self,
        target: &Target<'_>,
        consumer: &Consumer,
        image: &str,
    ) -> Result<Value, RenderError> {
        let env = target.env;
        let environment = environment(target, consumer);
        let environment: Vec<NameValue<'_>> = environment
            .iter()
            .map(|(name, value)| NameValue { name, value })
            .collect();
        let secrets = secrets(target, consumer);
        let secrets: Vec<NameValueFrom<'_>> = secrets
            .iter()
            .map(|(name, value_from)| NameValueFrom { name, value_from })
            .collect();
        let health_check = consumer.api.as_ref().map(|api| {
            let command = api.health_command.clone().unwrap_or_else(|| {
                vec![
                    "CMD-SHELL".to_string(),
                    format!(
                        "curl -fsS http://localhost:{}{} || exit 1",
                        api.port, api.health_path
                    ),
                ]
            });
            serde_json::json!({
                "command": command,
                "interval": 10,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 15,
            })
        });
        let tags = [
            Tag {
                key: "shoal:project",
                value: target.project,
            },
            Tag {
                key: "shoal:consumer",
                value: &consumer.name,
            },
        ];
        let ctx = minijinja::context! {
            project => target.project,
            env => env,
            consumer => consumer,
            task_role_arn => consumer.task_role_arn(env),
            family => family(target.project, &consumer.name),
            container_name => consumer.name,
            image => image,
            log_group => env.log_group(&consumer.name),
            environment => environment,
            secrets => secrets,
            health_check => health_check,
            tags => tags,
        };
        let mut jinja = minijinja::Environment::new();
        jinja.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let text = jinja
            .render_named_str(&self.origin, &self.source, ctx)
            .map_err(|e| RenderError::Template {
                origin: self.origin.clone(),
                message: describe_template_error(&e),
            })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| RenderError::NotJson {
            origin: self.origin.clone(),
            consumer: consumer.name.clone(),
            message: e.to_string(),
            excerpt: excerpt(&text, e.line()),
        })?;
        let shape = |message: &str| RenderError::Shape {
            origin: self.origin.clone(),
            consumer: consumer.name.clone(),
            message: message.to_string(),
        };
        let containers = value
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .ok_or_else(|| shape("has no containerDefinitions list"))?;
        if containers.is_empty() {
            return Err(shape("has an empty containerDefinitions list"));
        }
        if value.get("family").and_then(Value::as_str).is_none() {
            return Err(shape("has no family"));
        }
        Ok(value)
    }
}

/// The ECS task family (and local container name prefix) of a consumer.
pub fn family(project: &str, consumer: &str) -> String {
    format!("{project}-{consumer}")
}

/// The environment variables a container gets, lowest precedence first: what shoal sets,
/// then the manifest's `[env]`, then the environment's `vars` (the environment knows where
/// things are, so it wins).
pub fn environment(target: &Target<'_>, consumer: &Consumer) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("SHOAL_PROJECT".to_string(), target.project.to_string());
    out.insert("SHOAL_ENV".to_string(), target.env.name.clone());
    out.insert("SHOAL_CONSUMER".to_string(), consumer.name.clone());
    if let Some(b) = &target.bootstrap {
        out.insert("KAFKA_BOOTSTRAP".to_string(), b.clone());
    }
    if let Some(k) = &consumer.kafka {
        out.insert("KAFKA_GROUP".to_string(), k.group.clone());
        out.insert("KAFKA_TOPICS".to_string(), k.topics.join(","));
    }
    if let Some(api) = &consumer.api {
        out.insert("PORT".to_string(), api.port.to_string());
    }
    out.extend(kafka_auth_environment(target.env));
    out.extend(consumer.env.clone());
    out.extend(target.env.vars.clone());
    for name in consumer.secrets.keys().chain(target.env.secrets.keys()) {
        out.remove(name);
    }
    out
}

/// How a workload reaches an MSK cluster's listener for the environment's auth mode, as
/// librdkafka settings: each `RDKAFKA_<NAME>` variable is the property `<name>` with `_` turned
/// into `.` (the convention of the workloads under consumers/ and of `shoal new`), plus
/// `KAFKA_AUTH` for code that needs to know. IAM needs the workload to sign OAUTHBEARER tokens
/// itself (librdkafka cannot), with the task role's credentials.
fn kafka_auth_environment(env: &crate::manifest::Environment) -> BTreeMap<String, String> {
    use crate::manifest::{KafkaAccess, KafkaAuth};
    let KafkaAccess::Msk { auth, .. } = &env.kafka else {
        return BTreeMap::new();
    };
    let settings: &[(&str, &str)] = match auth {
        KafkaAuth::Plaintext => &[("KAFKA_AUTH", "plaintext")],
        KafkaAuth::Tls => &[("KAFKA_AUTH", "tls"), ("RDKAFKA_SECURITY_PROTOCOL", "ssl")],
        KafkaAuth::Scram => &[
            ("KAFKA_AUTH", "scram"),
            ("RDKAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ],
        KafkaAuth::Iam => &[
            ("KAFKA_AUTH", "iam"),
            ("RDKAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("RDKAFKA_SASL_MECHANISM", "OAUTHBEARER"),
        ],
    };
    let mut out: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if matches!(auth, KafkaAuth::Iam) {
        out.insert("AWS_REGION".to_string(), env.region.clone());
    }
    out
}

/// The container's secrets: the manifest's `[secrets]`, then the environment's `secrets`
/// (which win, as its `vars` do), and with SCRAM on MSK the username and password from the
/// cluster's Secrets Manager secret (ECS reads its JSON keys).
pub fn secrets(target: &Target<'_>, consumer: &Consumer) -> BTreeMap<String, String> {
    use crate::manifest::{KafkaAccess, KafkaAuth};
    let mut out = BTreeMap::new();
    if let KafkaAccess::Msk {
        auth: KafkaAuth::Scram,
        scram_secret_arn: Some(arn),
        ..
    } = &target.env.kafka
    {
        out.insert(
            "RDKAFKA_SASL_USERNAME".to_string(),
            format!("{arn}:username::"),
        );
        out.insert(
            "RDKAFKA_SASL_PASSWORD".to_string(),
            format!("{arn}:password::"),
        );
    }
    out.extend(consumer.secrets.clone());
    out.extend(target.env.secrets.clone());
    out
}

/// Pretty JSON with sorted keys and a final newline: the stable text form of a rendering.
pub fn to_pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&canonical(value)).unwrap_or_default();
    s.push('\n');
    s
}

/// A short content hash: the first 8 bytes of SHA-256, as 16 hex digits. Both platforms name
/// what they deployed with it (a task definition's `shoal:spec` tag, a container's revision).
pub fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The [`short_hash`] of a JSON value in its [`canonical`] form, so key order never matters.
pub fn spec_hash(value: &Value) -> String {
    short_hash(&canonical(value).to_string())
}

/// The same JSON with every object's keys in sorted order, whatever order the template (or
/// serde_json's `preserve_order`, which a dependency may switch on) left them in.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn describe_template_error(e: &minijinja::Error) -> String {
    let mut msg = match e.line() {
        Some(line) => format!("line {line}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

fn excerpt(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = line.saturating_sub(3);
    let to = (line + 2).min(lines.len());
    (from..to)
        .map(|i| {
            let marker = if i + 1 == line { ">" } else { " " };
            format!("{marker}{:5} | {}", i + 1, lines[i])
        })
        .collect::<Vec<_>>()
        .join("\n")
}
