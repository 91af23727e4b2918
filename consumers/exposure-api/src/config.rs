//! Settings from the environment, as ECS passes them. Raw variables in, resolved settings out;
//! every problem names its variable.

use std::collections::BTreeMap;
use std::time::Duration;

/// What a Kafka message costs beyond its key and value, counted generously (a record batch's
/// header and one record's framing): an event is refused when key + value + this passes
/// `message.max.bytes`.
pub const MESSAGE_OVERHEAD_BYTES: usize = 512;

/// `MAX_BATCH` when unset, or `SHED_QUEUE_MESSAGES` when that is lower.
pub const MAX_BATCH_DEFAULT: usize = 1000;

/// The resolved settings of one process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka_bootstrap: String,
    /// `DATABASE_URL` (with libpq's `sslmode`) and `DATABASE_CA_FILE`; reads need it.
    pub database: Option<warehouse_tls::Database>,
    pub port: u16,
    pub topic: String,
    pub produce_timeout: Duration,
    /// `MAX_BODY_BYTES`; default: the producer's `message.max.bytes`.
    pub max_body_bytes: usize,
    /// `MAX_BATCH`: at most `shed_queue_messages`.
    pub max_batch: usize,
    /// The producer's `message.max.bytes` (`RDKAFKA_MESSAGE_MAX_BYTES`, librdkafka's default
    /// 1000000): an event whose message would be larger is answered 413.
    pub message_max_bytes: usize,
    /// `MAX_CONCURRENCY`: requests to the `/exposure*` routes handled at once; more get 503.
    pub max_concurrency: usize,
    /// `REQUEST_TIMEOUT_MS`: a request to the `/exposure*` routes not answered by then gets 503.
    pub request_timeout: Duration,
    /// `SHED_QUEUE_MESSAGES`: the producer queue's high-water mark; writes that would take it
    /// past this many messages get 503 at once.
    pub shed_queue_messages: usize,
    pub api_keys: Vec<String>,
    pub jwt_secret: Option<String>,
    /// `AUTH=none`: writes need no credentials (reads still do).
    pub auth_none: bool,
    /// librdkafka properties from `RDKAFKA_<NAME>` variables: (variable, property, value).
    pub rdkafka: Vec<(String, String, String)>,
    /// `KAFKA_AUTH=iam`: MSK IAM, with the region tokens are signed for.
    pub iam: Option<msk_iam::IamSettings>,
}

/// A setting that cannot be used: the variable and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub var: String,
    pub problem: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

fn err(var: &str, problem: impl Into<String>) -> SettingError {
    SettingError {
        var: var.to_string(),
        problem: problem.into(),
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingError> {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Settings::from_vars(&vars)
    }

    /// Resolves settings from these variables (no I/O).
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Settings, SettingError> {
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let kafka_bootstrap = get("KAFKA_BOOTSTRAP")
            .ok_or_else(|| err("KAFKA_BOOTSTRAP", "is required (host:port[,host:port...])"))?
            .to_string();
        let database = match get("DATABASE_URL") {
            None => None,
            Some(url) => Some(
                warehouse_tls::Database::parse(url, get("DATABASE_CA_FILE"))
                    .map_err(|e| err("DATABASE_URL", e))?,
            ),
        };
        let port = number::<u16>(get("PORT"), "PORT", 8080)?;
        let topic = get("EXPOSURES_TOPIC").unwrap_or("exposures").to_string();
        let produce_timeout_ms =
            number::<u64>(get("PRODUCE_TIMEOUT_MS"), "PRODUCE_TIMEOUT_MS", 5000)?;
        if produce_timeout_ms == 0 || produce_timeout_ms > 900_000 {
            return Err(err("PRODUCE_TIMEOUT_MS", "must be between 1 and 900000"));
        }
        let shed_queue_messages =
            number::<usize>(get("SHED_QUEUE_MESSAGES"), "SHED_QUEUE_MESSAGES", 10_000)?;
        if shed_queue_messages == 0 {
            return Err(err("SHED_QUEUE_MESSAGES", "must be at least 1"));
        }
        // A batch is shed when the queue would pass SHED_QUEUE_MESSAGES with it, even an empty
        // queue: a larger batch would be answered 503 on every try.
        let max_batch = number::<usize>(
            get("MAX_BATCH"),
            "MAX_BATCH",
            MAX_BATCH_DEFAULT.min(shed_queue_messages),
        )?;
        if max_batch == 0 {
            return Err(err("MAX_BATCH", "must be at least 1"));
        }
        if max_batch > shed_queue_messages {
            return Err(err(
                "MAX_BATCH",
                format!(
                    "is {max_batch}, more than SHED_QUEUE_MESSAGES ({shed_queue_messages}): a \
                     batch that large would be answered 503 on every try; lower MAX_BATCH or \
                     raise SHED_QUEUE_MESSAGES"
                ),
            ));
        }
        let api_keys: Vec<String> = get("API_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if get("API_KEYS").is_some() && api_keys.is_empty() {
            return Err(err("API_KEYS", "has no key (comma-separated list)"));
        }
        let jwt_secret = get("JWT_SECRET").map(String::from);
        let auth_none = match get("AUTH") {
            None => false,
            Some("none") => true,
            Some(other) => {
                return Err(err(
                    "AUTH",
                    format!(
                        "{other:?} is not a mode: `none` (writes without credentials) or unset"
                    ),
                ))
            }
        };
        if api_keys.is_empty() && jwt_secret.is_none() && !auth_none {
            return Err(err(
                "API_KEYS",
                "neither API_KEYS nor JWT_SECRET is set: set one (comma-separated keys, or the \
                 HS256 secret), or AUTH=none to take writes without credentials",
            ));
        }
        let rdkafka = vars
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("RDKAFKA_")?;
                Some((k.clone(), name.to_lowercase().replace('_', "."), v.clone()))
            })
            .collect::<Vec<_>>();
        if let Some((var, _, _)) = rdkafka.iter().find(|(_, p, _)| p.is_empty()) {
            return Err(err(var, "names no librdkafka property"));
        }
        let message_max_bytes = match rdkafka.iter().find(|(_, p, _)| p == "message.max.bytes") {
            None => 1_000_000,
            Some((var, _, v)) => match v.trim().parse::<usize>() {
                Ok(n) if n >= MESSAGE_OVERHEAD_BYTES * 2 => n,
                _ => {
                    return Err(err(
                        var,
                        format!(
                            "must be a number of bytes, at least {}",
                            MESSAGE_OVERHEAD_BYTES * 2
                        ),
                    ))
                }
            },
        };
        let max_body_bytes =
            number::<usize>(get("MAX_BODY_BYTES"), "MAX_BODY_BYTES", message_max_bytes)?;
        if max_body_bytes == 0 {
            return Err(err("MAX_BODY_BYTES", "must be at least 1"));
        }
        let max_concurrency = number::<usize>(get("MAX_CONCURRENCY"), "MAX_CONCURRENCY", 512)?;
        if max_concurrency == 0 {
            return Err(err("MAX_CONCURRENCY", "must be at least 1"));
        }
        let request_timeout_ms = number::<u64>(
            get("REQUEST_TIMEOUT_MS"),
            "REQUEST_TIMEOUT_MS",
            produce_timeout_ms + 2000,
        )?;
        if request_timeout_ms == 0 {
            return Err(err("REQUEST_TIMEOUT_MS", "must be at least 1"));
        }
        let iam = msk_iam::IamSettings::from_vars(|k| vars.get(k).map(String::as_str))
            .map_err(|p| err(&p.var, p.problem))?;
        Ok(Settings {
            kafka_bootstrap,
            database,
            port,
            topic,
            produce_timeout: Duration::from_millis(produce_timeout_ms),
            max_body_bytes,
            max_batch,
            message_max_bytes,
            max_concurrency,
            request_timeout: Duration::from_millis(request_timeout_ms),
            shed_queue_messages,
            api_keys,
            jwt_secret,
            auth_none,
            rdkafka,
            iam,
        })
    }

    /// Whether writes must authenticate (reads always must).
    pub fn auth_required(&self) -> bool {
        !self.auth_none
    }
}

fn number<T: std::str::FromStr>(v: Option<&str>, var: &str, default: T) -> Result<T, SettingError> {
    match v {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| err(var, format!("{v:?} is not a valid number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b:9092"), ("API_KEYS", "k")]))
            .unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.topic, "exposures");
        assert_eq!(s.produce_timeout, Duration::from_millis(5000));
        assert_eq!(s.max_body_bytes, 1_000_000, "message.max.bytes");
        assert_eq!(s.message_max_bytes, 1_000_000);
        assert_eq!(s.max_concurrency, 512);
        assert_eq!(s.request_timeout, Duration::from_millis(7000));
        assert_eq!(s.shed_queue_messages, 10_000);
        assert_eq!(s.max_batch, 1000);
        assert!(s.auth_required());
        assert!(s.database.is_none());
    }

    #[test]
    fn the_body_limit_follows_message_max_bytes() {
        let s = Settings::from_vars(&vars(&[
            ("KAFKA_BOOTSTRAP", "b"),
            ("API_KEYS", "k"),
            ("RDKAFKA_MESSAGE_MAX_BYTES", "20000"),
        ]))
        .unwrap();
        assert_eq!((s.message_max_bytes, s.max_body_bytes), (20_000, 20_000));
        let e = Settings::from_vars(&vars(&[
            ("KAFKA_BOOTSTRAP", "b"),
            ("API_KEYS", "k"),
            ("RDKAFKA_MESSAGE_MAX_BYTES", "lots"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "RDKAFKA_MESSAGE_MAX_BYTES");
    }

    #[test]
    fn auth_is_on_unless_auth_none() {
        let e = Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b")])).unwrap_err();
        assert_eq!(e.var, "API_KEYS");
        assert!(e.problem.contains("AUTH=none"), "{e}");
        let s = Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("AUTH", "none")])).unwrap();
        assert!(!s.auth_required());
        let s =
            Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("JWT_SECRET", "s")])).unwrap();
        assert!(s.auth_required());
        let e =
            Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("AUTH", "off")])).unwrap_err();
        assert_eq!(e.var, "AUTH");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Settings::from_vars(&vars(&[])).unwrap_err();
        assert_eq!(e.var, "KAFKA_BOOTSTRAP");
        let e =
            Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("PORT", "http")])).unwrap_err();
        assert_eq!(e.var, "PORT");
        let e =
            Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("API_KEYS", ",")])).unwrap_err();
        assert_eq!(e.var, "API_KEYS");
        let e = Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("MAX_BATCH", "0")]))
            .unwrap_err();
        assert_eq!(e.var, "MAX_BATCH");
        let e = Settings::from_vars(&vars(&[("KAFKA_BOOTSTRAP", "b"), ("DATABASE_URL", "x://")]))
            .unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
    }

    /// A batch larger than the queue's high-water mark would be shed on every try.
    #[test]
    fn max_batch_fits_under_shed_queue_messages() {
        let settings = |extra: &[(&str, &str)]| {
            let mut v = vars(&[("KAFKA_BOOTSTRAP", "b"), ("API_KEYS", "k")]);
            v.extend(vars(extra));
            Settings::from_vars(&v)
        };
        let e = settings(&[("MAX_BATCH", "101"), ("SHED_QUEUE_MESSAGES", "100")]).unwrap_err();
        assert_eq!(e.var, "MAX_BATCH");
        assert_eq!(
            e.problem,
            "is 101, more than SHED_QUEUE_MESSAGES (100): a batch that large would be answered \
             503 on every try; lower MAX_BATCH or raise SHED_QUEUE_MESSAGES"
        );
        let e = settings(&[("MAX_BATCH", "20000")]).unwrap_err();
        assert!(e.problem.contains("SHED_QUEUE_MESSAGES (10000)"), "{e}");
        let s = settings(&[("MAX_BATCH", "100"), ("SHED_QUEUE_MESSAGES", "100")]).unwrap();
        assert_eq!((s.max_batch, s.shed_queue_messages), (100, 100));
        // Unset, MAX_BATCH follows a lower high-water mark.
        let s = settings(&[("SHED_QUEUE_MESSAGES", "3")]).unwrap();
        assert_eq!(s.max_batch, 3);
        let s = settings(&[("SHED_QUEUE_MESSAGES", "20000")]).unwrap();
        assert_eq!(s.max_batch, MAX_BATCH_DEFAULT);
    }

    #[test]
    fn rdkafka_variables_become_properties() {
        let s = Settings::from_vars(&vars(&[
            ("KAFKA_BOOTSTRAP", "b"),
            ("RDKAFKA_SECURITY_PROTOCOL", "ssl"),
            ("RDKAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"),
            ("API_KEYS", "a, b,,"),
        ]))
        .unwrap();
        assert!(s.rdkafka.contains(&(
            "RDKAFKA_SECURITY_PROTOCOL".into(),
            "security.protocol".into(),
            "ssl".into()
        )));
        assert!(s
            .rdkafka
            .iter()
            .any(|(_, p, v)| p == "sasl.mechanisms" && v == "SCRAM-SHA-512"));
        assert_eq!(s.api_keys, vec!["a", "b"]);
        assert!(s.auth_required());
    }
}
