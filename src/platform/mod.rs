//! Where workloads run. `ecs` holds the ECS service calls and `rollout` the reading of a
//! rollout's state; `docker` runs the same workloads as containers on the local Docker
//! Engine. [`Platform`] is what a command needs from either: a deploy is the same pipeline on
//! both (discover → build → push → topics → apply → wait) and differs only in where the
//! workloads end up, how live state is read and how a rollout is watched.

pub mod docker;
pub mod ecs;
pub mod rollout;

use std::time::Duration;

use crate::error::Result;

/// How `deploy` runs, whatever the platform.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions {
    /// Delete the workloads of removed consumer folders.
    pub prune: bool,
    /// Images built (and pushed) at once.
    pub jobs: usize,
    /// How long to wait for each rollout.
    pub timeout: Duration,
}

/// The commands that depend on where workloads run. Each returns the exit code.
pub trait Platform {
    /// The platform's name as `shoal.toml` spells it.
    fn name(&self) -> &'static str;
    /// Reads live state, prints what a deploy would do.
    fn plan(&self) -> Result<i32>;
    /// Plans, prints, applies and waits for every rollout.
    fn deploy(&self, options: &DeployOptions) -> Result<i32>;
    /// A row per workload: desired and running counts, revision, rollout state.
    fn status(&self) -> Result<i32>;
    /// Removes every workload of the project in the environment.
    fn down(&self) -> Result<i32>;
}
