//! What makes a container what it is: its spec, revision hash and health check.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::manifest::Consumer;

use super::*;

/// How one consumer's containers should be: everything but the replica count determines
/// the revision.
#[derive(Debug, Clone)]
pub struct Spec {
    pub consumer: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `NAME=value` lines as the container gets them ([`in_container`]), secrets included,
    /// `PORT` excluded (set when a replica starts).
    pub env: Vec<String>,
    pub api: Option<ApiCheck>,
    pub replicas: u32,
    /// The comparable spec (secrets as digests), without the replica count.
    pub spec: Value,
    /// The short hash of `spec`.
    pub revision: String,
}

/// How an API replica is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCheck {
    /// The port it listens on in its container; its host port is the first free one from
    /// here up.
    pub port: u16,
    pub health_path: String,
}

impl Spec {
    /// The spec of a consumer: `environment` is what ECS would get (manifest `[env]`,
    /// environment `vars`, `KAFKA_BOOTSTRAP`, ...), secrets come from the local file.
    pub fn new(
        consumer: &Consumer,
        image: String,
        mut environment: BTreeMap<String, String>,
        secrets: &Secrets,
        replicas: u32,
    ) -> Result<Spec, DockerError> {
        let api = consumer.api.as_ref().map(|a| ApiCheck {
            port: a.port,
            health_path: a.health_path.clone(),
        });
        environment.remove("PORT");
        let mut secret_digests = BTreeMap::new();
        for key in consumer.secrets.keys() {
            let value =
                secrets
                    .get(&consumer.name, key)
                    .ok_or_else(|| DockerError::MissingSecret {
                        consumer: consumer.name.clone(),
                        key: key.clone(),
                        file: secrets.file.clone(),
                    })?;
            secret_digests.insert(
                key.clone(),
                format!("sha256:{}", crate::render::short_hash(value)),
            );
            environment.insert(key.clone(), value.to_string());
        }
        for value in environment.values_mut() {
            *value = in_container(value);
        }
        let mut plain = BTreeMap::new();
        for (k, v) in &environment {
            if !consumer.secrets.contains_key(k) {
                plain.insert(k.clone(), v.clone());
            }
        }
        let mut spec = json!({
            "image": image,
            "environment": plain,
            "network": "project",
            "hosts": { HOST_NAME: "host-gateway" },
            "restart": "unless-stopped",
        });
        if let Some(command) = &consumer.command {
            spec["command"] = json!(command);
        }
        if !secret_digests.is_empty() {
            spec["secrets"] = json!(secret_digests);
        }
        if let Some(a) = &api {
            spec["api"] = json!({"port": a.port, "healthPath": a.health_path});
        }
        let revision = crate::render::spec_hash(&spec);
        Ok(Spec {
            consumer: consumer.name.clone(),
            image,
            command: consumer.command.clone(),
            env: environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            api,
            replicas,
            spec,
            revision,
        })
    }

    /// The spec as the plan compares it: with the replica count.
    pub fn plan_spec(&self) -> Value {
        let mut v = self.spec.clone();
        v["replicas"] = Value::from(self.replicas);
        v
    }
}
