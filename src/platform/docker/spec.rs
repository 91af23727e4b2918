//! What makes a container what it is: its spec, revision hash and health check.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::manifest::credential::mask_value;
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
    /// The spec of a consumer, read from the same rendered task definition ECS registers
    /// (its first container): the image, the command, the environment (`PORT` is set per
    /// replica), the secrets' names (their values come from the local secrets file) and the
    /// API's port. Only the health path comes from the manifest, as the task definition's
    /// health check is a command.
    pub fn new(
        consumer: &Consumer,
        task_definition: &Value,
        secrets: &Secrets,
        replicas: u32,
    ) -> Result<Spec, DockerError> {
        let container = &task_definition["containerDefinitions"][0];
        let missing = |field: &str| DockerError::TaskDefinition {
            consumer: consumer.name.clone(),
            field: field.to_string(),
        };
        let image = container["image"]
            .as_str()
            .ok_or_else(|| missing("containerDefinitions[0].image"))?
            .to_string();
        let command: Option<Vec<String>> = container["command"].as_array().map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        });
        let pairs = |list: &str, value: &str| -> BTreeMap<String, String> {
            container[list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str()?.to_string(),
                        p[value].as_str()?.to_string(),
                    ))
                })
                .collect()
        };
        let mut environment = pairs("environment", "value");
        let secret_names: Vec<String> = pairs("secrets", "valueFrom").into_keys().collect();
        let api = match (
            &consumer.api,
            container["portMappings"][0]["containerPort"].as_u64(),
        ) {
            (Some(a), Some(port)) => Some(ApiCheck {
                port: u16::try_from(port).map_err(|_| missing("a valid containerPort"))?,
                health_path: a.health_path.clone(),
            }),
            (Some(_), None) => return Err(missing("portMappings[0].containerPort")),
            (None, _) => None,
        };
        environment.remove("PORT");
        let mut secret_digests = BTreeMap::new();
        for key in &secret_names {
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
        // The spec is stored in a container label, so a credential among the plain values
        // is kept as a digest there: a changed password still changes the revision.
        let digest = |secret: &str| format!("sha256:{}", crate::render::short_hash(secret));
        let mut plain = BTreeMap::new();
        for (k, v) in &environment {
            if !secret_names.contains(k) {
                plain.insert(k.clone(), mask_value(k, v, &digest).into_owned());
            }
        }
        let mut spec = json!({
            "image": image,
            "environment": plain,
            "network": "project",
            "hosts": { HOST_NAME: "host-gateway" },
            "restart": "unless-stopped",
        });
        if let Some(command) = &command {
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
            command,
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
