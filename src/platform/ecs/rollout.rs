//! Is a service's rollout done, still going, or failed? A pure reading of one DescribeServices
//! answer, so that every way a rollout ends can be tested on recorded answers.
//!
//! ECS reports a rollout on the deployment that carries the new task definition:
//! `rolloutState` goes IN_PROGRESS → COMPLETED, or FAILED. When the deployment circuit breaker
//! rolls back, ECS also starts a new PRIMARY deployment with the previous task definition and
//! points the service back at it. A deploy tool that only waits for "the primary deployment is
//! COMPLETED" then reports success for a rollback. shoal checks that the deployment it made is
//! the one that completed.

use aws_sdk_ecs::types::{DeploymentRolloutState, Service};

/// What one look at a service says about the rollout of `task_definition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The deployment of the wanted task definition completed and is the primary one.
    Done,
    /// Still going; the text says where it is.
    Pending(String),
    /// It will not complete: a failed deployment, or ECS rolled back to another revision.
    Failed(String),
}

/// Reads one DescribeServices answer for the rollout of `task_definition` (an ARN).
pub fn assess(service: &Service, task_definition: &str) -> Progress {
    let deployments = service.deployments();
    let ours = deployments
        .iter()
        .find(|d| d.task_definition() == Some(task_definition));
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let current = service.task_definition().unwrap_or_default();

    if let Some(d) = ours {
        if d.rollout_state() == Some(&DeploymentRolloutState::Failed) {
            return Progress::Failed(format!(
                "the deployment of {} failed: {}",
                revision(task_definition),
                d.rollout_state_reason().unwrap_or("ECS gave no reason")
            ));
        }
    }
    if current != task_definition {
        let reason = primary
            .and_then(|p| p.rollout_state_reason())
            .unwrap_or("the service runs another revision");
        return Progress::Failed(format!(
            "ECS rolled back to {} instead of running {}: {reason}",
            revision(current),
            revision(task_definition)
        ));
    }
    // moto keeps the first deployment's task definition when a service is updated, so when
    // no deployment names ours but the service does, the primary deployment speaks for it.
    let Some(d) = ours.or(primary) else {
        return Progress::Pending("ECS lists no deployment yet".to_string());
    };
    if d.status() != Some("PRIMARY") {
        return Progress::Pending(format!(
            "the deployment of {} is not primary yet ({})",
            revision(task_definition),
            d.status().unwrap_or("no status")
        ));
    }
    match d.rollout_state() {
        Some(DeploymentRolloutState::Completed) if deployments.len() == 1 => Progress::Done,
        Some(DeploymentRolloutState::Completed) => Progress::Pending(format!(
            "{} older deployment(s) still draining",
            deployments.len() - 1
        )),
        Some(DeploymentRolloutState::Failed) => Progress::Failed(format!(
            "the deployment failed: {}",
            d.rollout_state_reason().unwrap_or("ECS gave no reason")
        )),
        _ => Progress::Pending(format!(
            "{} of {} tasks running, {} pending",
            d.running_count(),
            d.desired_count(),
            d.pending_count()
        )),
    }
}

/// The last `n` service events, newest first, as ECS gives them.
pub fn last_events(service: &Service, n: usize) -> Vec<String> {
    service
        .events()
        .iter()
        .take(n)
        .filter_map(|e| e.message().map(str::to_string))
        .collect()
}

/// `family:revision` from a task definition ARN.
pub fn revision(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, r)| r)
}
