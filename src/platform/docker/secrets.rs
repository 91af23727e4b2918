//! Secrets for the docker platform: a TOML file per environment, kept out of the images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

/// Where a project's secrets for the docker platform live: `<root>/.shoal/secrets.<env>.toml`.
pub fn secrets_path(root: &Path, env: &str) -> PathBuf {
    root.join(".shoal").join(format!("secrets.{env}.toml"))
}

/// The local secrets file: top-level `KEY = "value"` pairs for every consumer, and
/// `[consumer]` tables for one.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    pub file: String,
    pub(super) shared: BTreeMap<String, String>,
    pub(super) per_consumer: BTreeMap<String, BTreeMap<String, String>>,
}

impl Secrets {
    /// Reads the file; a missing file is an empty one (an error only when a secret is needed).
    pub fn load(path: &Path, root: &Path) -> Result<Secrets, DockerError> {
        let file = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Secrets {
                    file,
                    ..Secrets::default()
                })
            }
            Err(e) => {
                return Err(DockerError::SecretsFile {
                    file,
                    detail: e.to_string(),
                })
            }
        };
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| DockerError::SecretsFile {
                    file: file.clone(),
                    detail: e.to_string(),
                })?;
        let mut out = Secrets {
            file: file.clone(),
            ..Secrets::default()
        };
        for (k, v) in table {
            match v {
                toml::Value::String(s) => {
                    out.shared.insert(k, s);
                }
                toml::Value::Table(t) => {
                    let mut m = BTreeMap::new();
                    for (kk, vv) in t {
                        let toml::Value::String(s) = vv else {
                            return Err(DockerError::SecretsFile {
                                file,
                                detail: format!("{k}.{kk}: a secret must be a string"),
                            });
                        };
                        m.insert(kk, s);
                    }
                    out.per_consumer.insert(k, m);
                }
                _ => {
                    return Err(DockerError::SecretsFile {
                        file,
                        detail: format!("{k}: a secret must be a string (or a [consumer] table)"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The value of `key` for `consumer`.
    pub fn get(&self, consumer: &str, key: &str) -> Option<&str> {
        self.per_consumer
            .get(consumer)
            .and_then(|m| m.get(key))
            .or_else(|| self.shared.get(key))
            .map(String::as_str)
    }
}
