//! Settings from the environment: read every variable once, check it, and name the variable
//! in the error when it is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::breaker::Thresholds;
use crate::dialect::Dialect;

/// What the consumer runs with, resolved from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kafka_bootstrap: String,
    /// `DATABASE_URL` (with libpq's `sslmode`) and `DATABASE_CA_FILE`.
    pub database: warehouse_tls::Database,
    pub group: String,
    pub topic: String,
    pub dlq_topic: String,
    pub batch_size: usize,
    pub batch_max: Duration,
    pub dialect: Dialect,
    pub port: u16,
    /// `BREAKER_SHARE`, `BREAKER_MIN_REJECTED`, `BREAKER_WINDOW_SECS`.
    pub breaker: Thresholds,
    /// `RDKAFKA_<NAME>` variables as librdkafka properties (`<name>` lowercased, `_` → `.`).
    pub rdkafka: BTreeMap<String, String>,
    /// `KAFKA_AUTH=iam`: MSK IAM, with the region tokens are signed for.
    pub iam: Option<msk_iam::IamSettings>,
}

/// A setting that is missing or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        problem: problem.into(),
    }
}

impl Settings {
    /// Resolves the settings from `(name, value)` pairs, as `std::env::vars_os()` gives them.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<std::ffi::OsString>,
        V: Into<std::ffi::OsString>,
    {
        let mut env = BTreeMap::new();
        for (k, v) in vars {
            let (k, v) = (k.into(), v.into());
            // Variables that are not UTF-8 are only an error when they are ours.
            let Some(k) = k.to_str().map(str::to_string) else {
                continue;
            };
            match v.into_string() {
                Ok(v) => {
                    env.insert(k, v);
                }
                Err(_) if is_ours(&k) => return Err(err(&k, "is not valid UTF-8")),
                Err(_) => {}
            }
        }
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |k: &str| {
            get(k)
                .map(str::to_string)
                .ok_or_else(|| err(k, "is required"))
        };
        let or = |k: &str, d: &str| get(k).unwrap_or(d).to_string();

        let kafka_bootstrap = required("KAFKA_BOOTSTRAP")?;
        let database =
            warehouse_tls::Database::parse(&required("DATABASE_URL")?, get("DATABASE_CA_FILE"))
                .map_err(|e| err("DATABASE_URL", e))?;
        let batch_size: usize = number(get("BATCH_SIZE"), "BATCH_SIZE", 1000)?;
        if batch_size == 0 || batch_size > 100_000 {
            return Err(err("BATCH_SIZE", "must be between 1 and 100000"));
        }
        let batch_max_ms: u64 = number(get("BATCH_MAX_MS"), "BATCH_MAX_MS", 100)?;
        if batch_max_ms == 0 || batch_max_ms > 60_000 {
            return Err(err("BATCH_MAX_MS", "must be between 1 and 60000"));
        }
        let dialect = match get("WAREHOUSE_DIALECT").unwrap_or("postgres") {
            "postgres" | "postgresql" => Dialect::Postgres,
            "redshift" => Dialect::Redshift,
            other => {
                return Err(err(
                    "WAREHOUSE_DIALECT",
                    format!("{other:?} is not one of postgres, redshift"),
                ))
            }
        };
        let port: u16 = number(get("PORT"), "PORT", 9090)?;
        let defaults = Thresholds::default();
        let share: f64 = number(get("BREAKER_SHARE"), "BREAKER_SHARE", defaults.share)?;
        if !(share > 0.0 && share <= 1.0) {
            return Err(err(
                "BREAKER_SHARE",
                "must be a share of the rows, above 0 and at most 1 (e.g. 0.5)",
            ));
        }
        let min_rejected: u64 = number(
            get("BREAKER_MIN_REJECTED"),
            "BREAKER_MIN_REJECTED",
            defaults.min_rejected,
        )?;
        if min_rejected == 0 {
            return Err(err("BREAKER_MIN_REJECTED", "must be at least 1"));
        }
        let window_secs: u64 = number(
            get("BREAKER_WINDOW_SECS"),
            "BREAKER_WINDOW_SECS",
            defaults.window.as_secs(),
        )?;
        if window_secs == 0 || window_secs > 3600 {
            return Err(err("BREAKER_WINDOW_SECS", "must be between 1 and 3600"));
        }
        let breaker = Thresholds {
            share,
            min_rejected,
            window: Duration::from_secs(window_secs),
        };
        let rdkafka = env
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("RDKAFKA_")?;
                Some((name.to_ascii_lowercase().replace('_', "."), v.clone()))
            })
            .collect::<BTreeMap<_, _>>();
        if let Some(k) = rdkafka.keys().find(|k| k.is_empty()) {
            return Err(err(&format!("RDKAFKA_{k}"), "names no librdkafka property"));
        }
        let iam = msk_iam::IamSettings::from_vars(|k| env.get(k).map(String::as_str))
            .map_err(|p| err(&p.var, p.problem))?;
        Ok(Settings {
            kafka_bootstrap,
            database,
            group: or("KAFKA_GROUP", "exposure-consumer"),
            topic: or("EXPOSURES_TOPIC", "exposures"),
            dlq_topic: or("DLQ_TOPIC", "exposures.dlq"),
            batch_size,
            batch_max: Duration::from_millis(batch_max_ms),
            dialect,
            port,
            breaker,
            rdkafka,
            iam,
        })
    }
}

fn is_ours(k: &str) -> bool {
    k.starts_with("RDKAFKA_")
        || matches!(
            k,
            "KAFKA_BOOTSTRAP"
                | "KAFKA_AUTH"
                | "DATABASE_URL"
                | "DATABASE_CA_FILE"
                | "KAFKA_GROUP"
                | "EXPOSURES_TOPIC"
                | "DLQ_TOPIC"
                | "BATCH_SIZE"
                | "BATCH_MAX_MS"
                | "WAREHOUSE_DIALECT"
                | "PORT"
                | "BREAKER_SHARE"
                | "BREAKER_MIN_REJECTED"
                | "BREAKER_WINDOW_SECS"
        )
}

fn number<T: std::str::FromStr>(v: Option<&str>, var: &str, default: T) -> Result<T, ConfigError> {
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

    fn base() -> Vec<(String, String)> {
        vec![
            ("KAFKA_BOOTSTRAP".into(), "127.0.0.1:9092".into()),
            ("DATABASE_URL".into(), "postgres://u:p@127.0.0.1/db".into()),
        ]
    }

    fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut v = base();
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_vars(v)
    }

    #[test]
    fn defaults() {
        let s = with(&[]).unwrap();
        assert_eq!(s.group, "exposure-consumer");
        assert_eq!(s.topic, "exposures");
        assert_eq!(s.dlq_topic, "exposures.dlq");
        assert_eq!(s.batch_size, 1000);
        assert_eq!(s.batch_max, Duration::from_millis(100));
        assert_eq!(s.dialect, Dialect::Postgres);
        assert_eq!(s.port, 9090);
        assert!(s.rdkafka.is_empty());
        assert_eq!(s.breaker, Thresholds::default());
    }

    #[test]
    fn breaker_settings() {
        let s = with(&[
            ("BREAKER_SHARE", "0.25"),
            ("BREAKER_MIN_REJECTED", "3"),
            ("BREAKER_WINDOW_SECS", "10"),
        ])
        .unwrap();
        assert_eq!(
            s.breaker,
            Thresholds {
                share: 0.25,
                min_rejected: 3,
                window: Duration::from_secs(10)
            }
        );
        for (var, value) in [
            ("BREAKER_SHARE", "0"),
            ("BREAKER_SHARE", "1.5"),
            ("BREAKER_SHARE", "NaN"),
            ("BREAKER_SHARE", "half"),
            ("BREAKER_MIN_REJECTED", "0"),
            ("BREAKER_WINDOW_SECS", "0"),
        ] {
            let e = with(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{value}: {e}");
        }
    }

    #[test]
    fn rdkafka_passthrough() {
        let s = with(&[
            ("RDKAFKA_SECURITY_PROTOCOL", "ssl"),
            ("RDKAFKA_FETCH_MAX_BYTES", "1000"),
            ("WAREHOUSE_DIALECT", "redshift"),
        ])
        .unwrap();
        assert_eq!(s.rdkafka["security.protocol"], "ssl");
        assert_eq!(s.rdkafka["fetch.max.bytes"], "1000");
        assert_eq!(s.dialect, Dialect::Redshift);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Settings::from_vars(Vec::<(String, String)>::new()).unwrap_err();
        assert_eq!(e.to_string(), "KAFKA_BOOTSTRAP: is required");
        let e = with(&[("BATCH_SIZE", "lots")]).unwrap_err();
        assert_eq!(e.to_string(), "BATCH_SIZE: \"lots\" is not a valid number");
        let e = with(&[("BATCH_SIZE", "0")]).unwrap_err();
        assert_eq!(e.var, "BATCH_SIZE");
        let e = with(&[("PORT", "70000")]).unwrap_err();
        assert_eq!(e.var, "PORT");
        let e = with(&[("WAREHOUSE_DIALECT", "mysql")]).unwrap_err();
        assert_eq!(e.var, "WAREHOUSE_DIALECT");
        let e = with(&[("DATABASE_URL", "postgres://u@h:notaport/db")]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
        let e = with(&[("RDKAFKA_", "x")]).unwrap_err();
        assert_eq!(e.var, "RDKAFKA_");
    }
}
