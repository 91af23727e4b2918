//! Where workloads run. `ecs` holds the ECS service calls and `rollout` the reading of a
//! rollout's state; the local Docker platform joins them behind one trait with the
//! local-platform work.

pub mod ecs;
pub mod rollout;
