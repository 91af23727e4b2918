//! Kafka: topics as code (`shoal topics plan|apply|delete`) through rdkafka's admin client.
//!
//! [`admin`] talks to the brokers (metadata, DescribeConfigs, CreateTopics, CreatePartitions,
//! DeleteTopics, and IncrementalAlterConfigs through [`ffi`], since rdkafka has no binding for
//! it); [`topics`] turns the fleet's `[[topic]]` declarations and the live topics into a
//! [`crate::plan::Plan`] and the steps that apply it.
//!
//! Reaching Kafka ([`Connection`], made once per command by `deploy::Session`): an
//! environment's `bootstrap` list is used as given (plaintext, no AWS call). An
//! `msk_cluster_arn` is resolved first ([`resolve_with`]): the cluster
//! must be ACTIVE, and its broker string for the configured `auth` is used
//! ([`crate::aws::msk`]). [`Resolved::client_config`] then sets `security.protocol` and
//! `sasl.mechanism`: IAM is SASL_SSL with OAUTHBEARER tokens made by [`auth::ShoalContext`]
//! from the environment's AWS credential chain (the admin client gets them from [`ffi`], as
//! rdkafka's never asks); TLS is SSL; SCRAM is SASL_SSL with
//! SCRAM-SHA-512 and the credentials of a Secrets Manager secret.

pub mod admin;
pub mod auth;
pub mod ffi;
pub mod lag;
pub mod topics;

use rdkafka::config::ClientConfig;

use crate::aws::msk::{MskError, ScramCredentials};
use crate::manifest::{Environment, KafkaAccess, KafkaAuth};

pub use auth::ShoalContext;

/// Why a topic command failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("environment {env} has no Kafka configured")]
    NotConfigured { env: String },
    /// A synchronous helper was asked for an MSK environment, whose brokers need AWS calls.
    #[error("environment {env}: the brokers of MSK cluster {cluster_arn} must be resolved first (deploy::Session::kafka)")]
    MskUnresolved { env: String, cluster_arn: String },
    #[error("environment {env}: {source}")]
    Msk {
        env: String,
        #[source]
        source: MskError,
    },
    #[error("cannot create a Kafka client for {bootstrap}: {message}")]
    Client { bootstrap: String, message: String },
    /// No MSK IAM token for an admin client of these brokers.
    #[error("{bootstrap}: {source}")]
    Token {
        bootstrap: String,
        #[source]
        source: auth::TokenError,
    },
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
    /// A blocking read (rdkafka's calls block) that did not finish on its thread.
    #[error(transparent)]
    Blocking(#[from] tokio::task::JoinError),
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

/// The broker list of an environment with a fixed `bootstrap` list, as librdkafka's
/// `bootstrap.servers`. An MSK environment needs [`resolve`] (AWS calls) instead.
pub fn bootstrap(env: &Environment) -> Result<String, KafkaError> {
    match &env.kafka {
        KafkaAccess::Bootstrap(list) => Ok(list.join(",")),
        KafkaAccess::Msk { cluster_arn, .. } => Err(KafkaError::MskUnresolved {
            env: env.name.clone(),
            cluster_arn: cluster_arn.clone(),
        }),
        KafkaAccess::None => Err(KafkaError::NotConfigured {
            env: env.name.clone(),
        }),
    }
}

/// Where an environment's brokers are and how to authenticate to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    pub auth: KafkaAuth,
    /// The AWS region (IAM tokens are signed for it).
    pub region: String,
    /// With [`KafkaAuth::Scram`]: the username and password.
    pub scram: Option<ScramCredentials>,
}

impl Resolved {
    /// A fixed broker list, no authentication.
    pub fn plaintext(bootstrap: String) -> Resolved {
        Resolved {
            bootstrap,
            auth: KafkaAuth::Plaintext,
            region: String::new(),
            scram: None,
        }
    }

    /// The librdkafka configuration: brokers, `security.protocol`, `sasl.mechanism`.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "shoal")
            .set("socket.timeout.ms", "15000")
            // No KIP-714 client metrics: one GetTelemetrySubscriptions per connection, for
            // nothing shoal uses.
            .set("enable.metrics.push", "false");
        match self.auth {
            KafkaAuth::Plaintext => {
                config.set("security.protocol", "PLAINTEXT");
            }
            KafkaAuth::Tls => {
                config.set("security.protocol", "SSL");
            }
            KafkaAuth::Iam => {
                config
                    .set("security.protocol", "SASL_SSL")
                    .set("sasl.mechanism", "OAUTHBEARER");
            }
            KafkaAuth::Scram => {
                config
                    .set("security.protocol", "SASL_SSL")
                    .set("sasl.mechanism", "SCRAM-SHA-512");
                if let Some(c) = &self.scram {
                    config
                        .set("sasl.username", &c.username)
                        .set("sasl.password", &c.password);
                }
            }
        }
        config
    }
}

/// Resolves an environment's brokers: a `bootstrap` list as plaintext without any AWS call;
/// an MSK cluster through DescribeClusterV2 and GetBootstrapBrokers (and, for SCRAM,
/// GetSecretValue), with the environment's AWS configuration `cfg` (whose clients are made
/// by [`crate::aws::msk`] and [`crate::aws::secrets`]). `deploy::Session` does it once per
/// command.
pub async fn resolve_with(
    env: &Environment,
    cfg: &aws_config::SdkConfig,
) -> Result<Resolved, KafkaError> {
    let (cluster_arn, auth, secret) = match &env.kafka {
        KafkaAccess::Msk {
            cluster_arn,
            auth,
            scram_secret_arn,
        } => (cluster_arn, *auth, scram_secret_arn),
        _ => return Ok(Resolved::plaintext(bootstrap(env)?)),
    };
    let msk_err = |source: MskError| KafkaError::Msk {
        env: env.name.clone(),
        source,
    };
    let servers = crate::aws::msk::bootstrap(&crate::aws::msk(cfg), cluster_arn, auth)
        .await
        .map_err(msk_err)?;
    let scram = match (auth, secret) {
        (KafkaAuth::Scram, Some(arn)) => Some(
            crate::aws::msk::scram_credentials(&crate::aws::secrets(cfg), arn)
                .await
                .map_err(msk_err)?,
        ),
        (KafkaAuth::Scram, None) => {
            return Err(msk_err(MskError::ScramSecret {
                secret_arn: "(none)".into(),
                problem: "auth = \"scram\" needs kafka.scram_secret_arn in shoal.toml".into(),
            }))
        }
        _ => None,
    };
    Ok(Resolved {
        bootstrap: servers,
        auth,
        region: env.region.clone(),
        scram,
    })
}

/// What a Kafka client of an environment is made from.
#[derive(Clone)]
pub struct Connection {
    pub resolved: Resolved,
    pub config: ClientConfig,
    /// Serves OAUTHBEARER token refreshes (MSK IAM); inert for the other modes.
    pub context: ShoalContext,
}

impl Connection {
    /// A connection to a resolved cluster; `cfg` supplies the credentials for IAM tokens.
    pub fn new(resolved: Resolved, cfg: Option<&aws_config::SdkConfig>) -> Connection {
        let context = match (resolved.auth, cfg.and_then(|c| c.credentials_provider())) {
            (KafkaAuth::Iam, Some(creds)) => ShoalContext::iam(&resolved.region, creds),
            _ => ShoalContext::default(),
        };
        Connection {
            config: resolved.client_config(),
            resolved,
            context,
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.resolved.bootstrap
    }
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
        let c = Resolved::plaintext(bootstrap(&e).expect("a list")).client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9092"));
    }

    #[test]
    fn msk_needs_resolving() {
        let e = env(KafkaAccess::Msk {
            cluster_arn: "arn:aws:kafka:us-east-1:123456789012:cluster/c/1".into(),
            auth: KafkaAuth::Iam,
            scram_secret_arn: None,
        });
        let err = bootstrap(&e).expect_err("needs AWS");
        assert!(matches!(err, KafkaError::MskUnresolved { .. }));
        let none = bootstrap(&env(KafkaAccess::None)).expect_err("none");
        assert!(none.to_string().contains("no Kafka configured"));
    }
}
