//! Where workloads run: one wing per platform, each a folder that holds everything that
//! platform needs (live reads, apply, rollout, status and the autoscaler's hands).
//!
//! - `ecs`: ECS Fargate services, task definitions, ECR and CloudWatch Logs.
//! - `docker`: the same workloads as containers on the local Docker Engine.
//!
//! What every platform shares lives here: the autoscaler's hands, [`Scale`] (desired counts)
//! and [`Publish`] (its metrics), with [`ScaleError`]; [`RolloutError`] and [`Wait`]. The
//! commands a platform answers, its hands among them, are the `deploy::Platform` trait, which
//! each wing implements. Adding a platform is one new folder here and one match arm where the
//! environment picks its platform (`app`).

pub mod docker;
pub mod ecs;
pub mod logs;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::aws::cloudwatch::Metric;
use crate::aws::AwsError;

/// A service's replica counts as the platform reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// The count asked for: ECS's `desiredCount`, or the docker platform's containers of the
    /// consumer's current revision.
    pub desired: u32,
    /// The replicas up: ECS's `runningCount` (tasks in RUNNING, which includes tasks whose
    /// process is still starting), or the running containers. The autoscaler's member count
    /// when the broker cannot say (docs/autoscaler.md, "Members").
    pub running: u32,
}

impl Counts {
    /// A service with no replica at all.
    pub const NONE: Counts = Counts {
        desired: 0,
        running: 0,
    };
}

/// Reads and sets desired counts.
pub trait Scale: Sync {
    fn counts(
        &self,
        service: &str,
    ) -> impl Future<Output = std::result::Result<Counts, ScaleError>> + Send;

    /// The counts of several services at once (every tick reads them all). A service the
    /// platform does not have is left out; any other failure fails the whole read. By
    /// default one [`Scale::counts`] each.
    fn counts_many(
        &self,
        services: &[String],
    ) -> impl Future<Output = std::result::Result<BTreeMap<String, Counts>, ScaleError>> + Send
    {
        async move {
            let mut out = BTreeMap::new();
            for s in services {
                match self.counts(s).await {
                    Ok(c) => {
                        out.insert(s.clone(), c);
                    }
                    Err(ScaleError::NoService { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
    }

    fn set(
        &self,
        service: &str,
        count: u32,
    ) -> impl Future<Output = std::result::Result<(), ScaleError>> + Send;
}

/// Publishes the autoscaler's metrics where the platform keeps them: CloudWatch on ECS;
/// nowhere on the docker platform, whose figures are only on the daemon's `/metrics`.
pub trait Publish {
    fn publish(&self, metrics: Vec<Metric>) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// A desired count that could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// An AWS call failed (ECS); [`ScaleError::is_throttling`] reads its error code.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The platform's own failure, such as the Docker Engine's.
    #[error(transparent)]
    Platform(Box<dyn std::error::Error + Send + Sync>),
    /// New replicas that did not become healthy.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// No such service (ECS).
    #[error("no service {service} in cluster {cluster}")]
    NoService { service: String, cluster: String },
    /// Nothing deployed to scale up from (the docker platform, with no container left).
    #[error("{service} has no containers to scale; run `shoal deploy --env {env}` first")]
    NotDeployed { service: String, env: String },
    /// A count the platform's API cannot carry.
    #[error(transparent)]
    Count(#[from] std::num::TryFromIntError),
}

impl ScaleError {
    /// Whether AWS refused the call for its rate.
    pub fn is_throttling(&self) -> bool {
        matches!(self, ScaleError::Aws(e) if e.is_throttling())
    }
}

/// A rollout that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("service {service}: {reason}{}", crate::error::last_lines("ECS's last service events:", "- ", .events))]
    Failed {
        service: String,
        reason: String,
        events: Vec<String>,
    },
    #[error("service {service}: the rollout did not complete within {seconds} s; last state: {state}{}", crate::error::last_lines("ECS's last service events:", "- ", .events))]
    TimedOut {
        service: String,
        seconds: u64,
        state: String,
        events: Vec<String>,
    },
    #[error("service {service}: {source}")]
    Aws {
        service: String,
        #[source]
        source: AwsError,
    },
    #[error("service {service} is gone (deleted while shoal waited for its rollout)")]
    Gone { service: String },
    /// The docker platform: a new container failed its health check or exited.
    #[error("service {service}: container {container}: {reason}{}", crate::error::last_lines("the container's last log lines:", "| ", .logs))]
    Container {
        service: String,
        container: String,
        reason: String,
        logs: Vec<String>,
    },
}

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Wait {
    /// This timeout, looking every ten seconds (or sooner, for a shorter timeout).
    pub fn with_timeout(timeout: Duration) -> Wait {
        Wait {
            timeout,
            poll: Duration::from_secs(10).min(timeout),
        }
    }
}
