//! The ECS platform: Fargate services and their task definitions, ECR repositories and
//! CloudWatch log groups. Everything ECS-specific lives in this folder:
//!
//! - `apply`: the plan (desired against live) and the deploy's steps;
//! - `live`: reading what exists;
//! - `spec`: a service's spec, one type for the desired, the live and the request;
//! - `service`: services (describe, create, update, delete) and the rollout wait;
//! - `rollout`: reading a deployment's state;
//! - `taskdef`: task definitions to and from the SDK's types, and their normal form;
//! - `repositories`: ECR repositories and their settings (scan on push, IMMUTABLE tags, the
//!   lifecycle policy); `log_groups`: CloudWatch log groups and their retention;
//! - `commands`: `plan`, `deploy`, `status`, `logs`, `rollback` and `dashboard` on ECS;
//! - `scale`: the autoscaler's hands on ECS: desired counts and CloudWatch metrics;
//! - `dashboard`: the CloudWatch dashboard of the autoscaler's metrics;
//! - `logs`: `shoal logs`, the consumer's lines from CloudWatch Logs;
//! - `alarms`: the consumers' CloudWatch alarms (`[alarms]`), as plan resources.

pub mod alarms;
mod apply;
mod commands;
pub mod dashboard;
mod live;
mod log_groups;
pub mod logs;
pub mod repositories;
pub mod rollout;
mod scale;
mod service;
mod spec;
pub mod taskdef;

pub use apply::{
    apply, desired, keep_live_counts, plan, prerequisites, spec_tag, Clients, SPEC_TAG,
};
pub use commands::{put_dashboard, rollback, Dashboard, Ecs, RolledBack};
pub use live::{read, LiveState};
pub use scale::{CloudWatchMetrics, EcsHands, EcsServices};
pub use service::{
    create, delete, describe, project_services, set_desired_count, tag, update, wait_rollout,
    CONSUMER_TAG, DESCRIBE_BATCH, PROJECT_TAG,
};
pub use spec::ServiceSpec;
