//! Kafka: topics as code (`shoal topics plan|apply|delete`) through rdkafka's admin client.
//!
//! [`admin`] talks to the brokers (metadata, DescribeConfigs, CreateTopics, CreatePartitions,
//! DeleteTopics, and IncrementalAlterConfigs through [`wire`], since rdkafka has no binding for
//! it); [`topics`] turns the fleet's `[[topic]]` declarations and the live topics into a
//! [`crate::plan::Plan`] and the steps that apply it.
//!
//! Reaching Kafka: an environment's `bootstrap` list is used as given (plaintext). Resolving an
//! `msk_cluster_arn` (DescribeClusterV2, GetBootstrapBrokers) and the IAM/TLS/SCRAM auth modes
//! are not implemented yet and fail with [`KafkaError::MskNotImplemented`].

pub mod admin;
pub mod lag;
pub mod topics;
pub mod wire;

use rdkafka::config::ClientConfig;

use crate::manifest::{Environment, KafkaAccess};

/// Why a topic command failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("environment {env} has no Kafka configured")]
    NotConfigured { env: String },
    #[error("msk_cluster_arn resolution is not implemented yet (environment {env}, cluster {cluster_arn}); give the brokers as kafka = {{ bootstrap = [\"host:port\"] }} for now")]
    MskNotImplemented { env: String, cluster_arn: String },
    #[error("cannot create a Kafka client for {bootstrap}: {message}")]
    Client { bootstrap: String, message: String },
    #[error("{op} against {bootstrap} failed: {message}")]
    Broker {
        op: &'static str,
        bootstrap: String,
        message: String,
    },
    /// Declared changes Kafka cannot make, every one of them.
    #[error("{}", refusals(.0))]
    Refused(Vec<topics::Refusal>),
    /// Some apply steps failed; `done` lists the ones that succeeded.
    #[error("{}", apply_failed(.done, .failed))]
    Apply {
        done: Vec<String>,
        failed: Vec<String>,
    },
    #[error("refusing to delete topic {name} without --yes: deleting a topic deletes its data")]
    NeedsYes { name: String },
    #[error("topic {name} does not exist on {bootstrap}")]
    NoSuchTopic { name: String, bootstrap: String },
}

fn refusals(list: &[topics::Refusal]) -> String {
    let mut out = format!(
        "the plan asks for {} Kafka cannot make; nothing was changed:",
        if list.len() == 1 {
            "1 change".to_string()
        } else {
            format!("{} changes", list.len())
        }
    );
    for r in list {
        out.push_str(&format!("\n  - {r}"));
    }
    out
}

fn apply_failed(done: &[String], failed: &[String]) -> String {
    let mut out = format!(
        "{} of {} topic steps failed:",
        failed.len(),
        done.len() + failed.len()
    );
    for f in failed {
        out.push_str(&format!("\n  - {f}"));
    }
    if !done.is_empty() {
        out.push_str("\nthese steps succeeded:");
        for d in done {
            out.push_str(&format!("\n  - {d}"));
        }
    }
    out
}

impl From<KafkaError> for crate::Error {
    fn from(e: KafkaError) -> crate::Error {
        match e {
            KafkaError::NeedsYes { .. } => crate::Error::Usage(e.to_string()),
            other => crate::Error::Failed(other.to_string()),
        }
    }
}

/// The broker list of an environment, as librdkafka's `bootstrap.servers`.
pub fn bootstrap(env: &Environment) -> Result<String, KafkaError> {
    match &env.kafka {
        KafkaAccess::Bootstrap(list) => Ok(list.join(",")),
        KafkaAccess::Msk { cluster_arn, .. } => Err(KafkaError::MskNotImplemented {
            env: env.name.clone(),
            cluster_arn: cluster_arn.clone(),
        }),
        KafkaAccess::None => Err(KafkaError::NotConfigured {
            env: env.name.clone(),
        }),
    }
}

/// The client configuration for an environment's brokers.
pub fn client_config(env: &Environment) -> Result<ClientConfig, KafkaError> {
    let servers = bootstrap(env)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &servers)
        .set("client.id", "shoal")
        .set("socket.timeout.ms", "15000");
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{KafkaAuth, Project};

    fn env(kafka: KafkaAccess) -> Environment {
        let project = Project::parse(
            std::path::Path::new("."),
            "project = \"p\"\n[env.local]\nplatform = \"docker\"\n",
        )
        .expect("valid project");
        let mut env = project.environment_with("local", &|_| None).expect("env");
        env.kafka = kafka;
        env
    }

    #[test]
    fn bootstrap_list_is_joined() {
        let e = env(KafkaAccess::Bootstrap(vec![
            "a:9092".into(),
            "b:9092".into(),
        ]));
        let c = client_config(&e).expect("config");
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9092"));
    }

    #[test]
    fn msk_is_a_clear_error() {
        let e = env(KafkaAccess::Msk {
            cluster_arn: "arn:aws:kafka:us-east-1:123456789012:cluster/c/1".into(),
            auth: KafkaAuth::Iam,
        });
        let err = client_config(&e).expect_err("not implemented");
        assert!(matches!(err, KafkaError::MskNotImplemented { .. }));
        assert!(err
            .to_string()
            .contains("msk_cluster_arn resolution is not implemented yet"));
        let none = client_config(&env(KafkaAccess::None)).expect_err("none");
        assert!(none.to_string().contains("no Kafka configured"));
    }
}
