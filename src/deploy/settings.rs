//! The resolved settings a platform's commands work on, and the environment's connections,
//! made once per command.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

use super::Inputs;
use crate::discover::context::ContextHash;
use crate::discover::Fleet;
use crate::kafka::{Connection, KafkaError, Resolved};
use crate::manifest::{Environment, KafkaAccess};
use crate::render::Renderer;

/// What a platform's commands work on: the project, the environment, the fleet and its
/// content hashes, resolved once by `app`, and the environment's [`Session`].
pub struct Ctx<'a> {
    pub root: &'a std::path::Path,
    pub project: &'a str,
    pub env: &'a Environment,
    pub fleet: &'a Fleet,
    pub hashes: &'a BTreeMap<String, ContextHash>,
    pub renderer: &'a Renderer,
    pub session: Session<'a>,
}

impl Ctx<'_> {
    /// The plan's inputs, with the workloads' brokers looked up (MSK: two AWS calls, once).
    pub async fn inputs(&self) -> Result<Inputs<'_>, super::DeployError> {
        Ok(Inputs {
            root: self.root,
            project: self.project,
            env: self.env,
            fleet: self.fleet,
            renderer: self.renderer,
            hashes: self.hashes,
            bootstrap: self.session.workload_bootstrap().await?,
            session: &self.session,
        })
    }
}

/// One command's connections to an environment, each made the first time a step needs it
/// and then shared: the AWS configuration (region, profile, endpoint and credential chain,
/// [`crate::aws::sdk_config`]) and the Kafka connection settings. An MSK environment's
/// brokers are resolved once (DescribeClusterV2, GetBootstrapBrokers and, for SCRAM,
/// GetSecretValue), however many steps reach Kafka: the workloads' bootstrap, the topic plan
/// and the topic changes of a deploy, or the lag reader and the scaler of the autoscaler.
pub struct Session<'a> {
    env: &'a Environment,
    aws: OnceCell<SdkConfig>,
    kafka: OnceCell<Connection>,
}

impl<'a> Session<'a> {
    /// Nothing is loaded until a step asks.
    pub fn new(env: &'a Environment) -> Session<'a> {
        Session {
            env,
            aws: OnceCell::new(),
            kafka: OnceCell::new(),
        }
    }

    /// A session on an AWS configuration made by the caller (a test's static credentials,
    /// say), instead of the one [`crate::aws::sdk_config`] loads.
    pub fn with_aws(env: &'a Environment, cfg: SdkConfig) -> Session<'a> {
        Session {
            env,
            aws: OnceCell::new_with(Some(cfg)),
            kafka: OnceCell::new(),
        }
    }

    /// The environment's AWS configuration, loaded on first use.
    pub async fn aws(&self) -> &SdkConfig {
        self.aws
            .get_or_init(|| crate::aws::sdk_config(self.env))
            .await
    }

    /// How a Kafka client reaches the environment's brokers: a `bootstrap` list as given
    /// (plaintext, no AWS call), or an MSK cluster's brokers for its auth mode, resolved on
    /// first use with [`Session::aws`].
    pub async fn kafka(&self) -> Result<&Connection, KafkaError> {
        self.kafka
            .get_or_try_init(|| async {
                if !matches!(self.env.kafka, KafkaAccess::Msk { .. }) {
                    let resolved = Resolved::plaintext(crate::kafka::bootstrap(self.env)?);
                    return Ok(Connection::new(resolved, None));
                }
                let cfg = self.aws().await;
                let resolved = crate::kafka::resolve_with(self.env, cfg).await?;
                Ok(Connection::new(resolved, Some(cfg)))
            })
            .await
    }

    /// The brokers workloads connect to, as `KAFKA_BOOTSTRAP`: none without Kafka, the
    /// `bootstrap` list as given, or an MSK cluster's broker string for its auth mode.
    pub async fn workload_bootstrap(&self) -> Result<Option<String>, KafkaError> {
        match &self.env.kafka {
            KafkaAccess::None => Ok(None),
            _ => Ok(Some(self.kafka().await?.bootstrap().to_string())),
        }
    }
}
