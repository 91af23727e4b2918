//! shoal's integration tests: one binary, one module per area. Tests that talk to the local
//! stack (moto, the registry, tansu, PostgreSQL) read its addresses from `.stack/env`,
//! written by `scripts/stack up`.

mod autoscale;
mod cli;
mod context_hash;
mod deploy;
mod ecs_register;
mod fuzz;
mod image;
mod lag;
mod manifest;
mod metrics;
mod msk;
mod plan;
mod render;
mod rollout_replay;
mod scale;
mod support;
mod topics;
mod workflows;
