//! The Engine API connection, the labels every container carries, and what the docker
//! platform can fail with.

use std::time::Duration;

use bollard::Docker;

pub const LABEL_PROJECT: &str = "shoal.project";
pub const LABEL_ENV: &str = "shoal.env";
pub const LABEL_CONSUMER: &str = "shoal.consumer";
pub const LABEL_REVISION: &str = "shoal.revision";
pub const LABEL_SPEC: &str = "shoal.spec";
pub const LABEL_REPLICA: &str = "shoal.replica";
pub const LABEL_PORT: &str = "shoal.port";
/// A worker replica's `PORT` in its container, and the first host port tried for it.
pub const WORKER_PORT_BASE: u16 = 9100;
/// The name under which containers reach this machine (the local stack's services).
pub const HOST_NAME: &str = "host.docker.internal";

/// How long a worker must run without a restart before its rollout counts as done.
pub const SETTLE: Duration = Duration::from_secs(3);

/// How often a rollout looks at its containers.
pub(super) const POLL: Duration = Duration::from_millis(300);

/// Log lines shown when a container fails its rollout.
pub(super) const LOG_TAIL: &str = "20";

/// What the docker platform can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker Engine at {addr}: {}; is Docker running? DOCKER_HOST={}",
        crate::error::innermost(source.as_ref()),
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "(unset)".into())
    )]
    Engine {
        addr: String,
        source: std::sync::Arc<bollard::errors::Error>,
    },
    #[error("Docker Engine: {operation}: {detail}")]
    Api { operation: String, detail: String },
    #[error(
        "{consumer} declares the secret {key}, which {file} does not set; add `{key} = \"...\"` \
         (for every consumer) or a [{consumer}] table with it to that file (keep it out of git)"
    )]
    MissingSecret {
        consumer: String,
        key: String,
        file: String,
    },
    #[error("{file}: {detail}")]
    SecretsFile { file: String, detail: String },
    /// The rendered task definition lacks what a container needs (a project template that
    /// leaves out a field the built-in one has).
    #[error("{consumer}: the rendered task definition has no {field}; the container is made from containerDefinitions[0] (see templates/task-definition.json.j2)")]
    TaskDefinition { consumer: String, field: String },
    #[error("{0}")]
    Other(String),
}

pub(super) fn api(
    operation: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let operation = operation.into();
    move |e| DockerError::Api {
        operation,
        detail: crate::error::innermost(&e),
    }
}

/// Connects to the engine named by `DOCKER_HOST`, else the local socket.
pub async fn connect() -> Result<Docker, DockerError> {
    let engine = crate::image::Engine::from_env();
    engine
        .connect()
        .await
        .cloned()
        .map_err(|source| DockerError::Engine {
            addr: engine.host().to_string(),
            source,
        })
}
