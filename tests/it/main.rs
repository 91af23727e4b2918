//! shoal's integration tests: one binary, one module per area. Tests that talk to the local
//! stack (moto, the registry, tansu, PostgreSQL) read its addresses from `.stack/env`,
//! written by `scripts/stack up`.

mod alarms;
mod architecture;
mod autoscale;
mod autoscale_ticks;
mod autoscaler_workload;
mod base_images;
mod cli;
mod context_hash;
mod deploy;
mod deploy_workflow;
mod docker_platform;
mod ecr_settings;
mod ecs_register;
mod exposure_api;
mod exposure_consumer;
mod exposure_pipeline;
mod fuzz;
mod iam_policy;
mod image;
mod lag;
mod logs;
mod manifest;
mod metrics;
mod msk;
mod parity;
mod plan;
mod prod_env;
mod python_workloads;
mod redaction;
mod render;
mod rollout_replay;
mod scaffold;
mod scale;
mod support;
mod topics;
mod workflows;
mod workload_iam;
mod workload_images;
mod workloads;
mod zero_config;
