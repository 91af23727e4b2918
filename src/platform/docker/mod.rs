//! The docker platform: each consumer runs as containers on this machine's Docker Engine.
//! Everything docker-specific lives in this folder:
//!
//! - `commands`: `plan`, `deploy`, `status` and `down`, the same pipeline as ECS with
//!   containers where ECS has task definitions and services;
//! - `engine`: the Engine API connection, the labels, the errors;
//! - `secrets`: the secrets file of an environment;
//! - `spec`: a container's spec and revision, derived from the rendered workload;
//! - `containers`: listing, creating, starting and removing containers, ports, the network;
//! - `health`: health checks and a failed container's logs;
//! - `scale`: changing a consumer's replica count, and the autoscaler's hands;
//! - `logs`: `shoal logs`, the containers' lines through the Engine API;
//! - `alarms`: `status`'s alarm states, the conditions of `[alarms]` judged from the broker's
//!   and the containers' counts.
//!
//! Networking: each project and environment has a user-defined bridge network,
//! `shoal-<project>-<env>`, made on the first deploy and removed by `down`. The local stack's
//! services (tansu, PostgreSQL) run on this machine, not in containers, so a container reaches
//! them as `host.docker.internal` (mapped to the host's gateway address, as Docker Desktop
//! does): in every environment value given to a container, a loopback host (`127.0.0.1`,
//! `localhost`) is rewritten to that name. tansu advertises itself as
//! `host.docker.internal:9092`, a name `scripts/stack` maps to 127.0.0.1 on this machine, so
//! the broker's address is the same inside and outside the containers.
//!
//! Every replica listens on the same port inside its container (`PORT`: an API's manifest
//! port, a worker's 9100 for its health and metrics endpoints), published on 127.0.0.1 at a
//! host port of its own, from that port up (a port another deploy takes between the check and
//! the start is skipped). The host port is what `status` shows and what health checks use.
//!
//! Every container carries labels that make it findable and comparable:
//! `shoal.project`, `shoal.env`, `shoal.consumer`, `shoal.revision` (a hash of everything that
//! makes the container what it is, except the replica count), `shoal.spec` (that spec as
//! JSON, secrets as digests), `shoal.replica` and `shoal.port`. Names are
//! `shoal-<project>-<env>-<consumer>-<rev8>-<i>`.

mod alarms;
mod commands;
mod containers;
mod engine;
mod health;
pub mod logs;
mod scale;
mod secrets;
mod spec;
#[cfg(test)]
mod tests;

pub use commands::Docker;
pub use containers::*;
pub use engine::*;
pub use health::*;
pub use scale::*;
pub use secrets::*;
pub use spec::*;
