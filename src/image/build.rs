//! The Docker Engine: where it is, connecting once, and building one image through its API.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::progress::Task;
use super::{ImageError, ImageJob};
use crate::discover::context::PLATFORM;

/// Where the engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How many lines of build output a failure shows.
const TAIL: usize = 20;

/// The Docker Engine images are built on. Connects on first use, once, and negotiates the API
/// version down to what the engine speaks.
#[derive(Debug)]
pub struct Engine {
    host: String,
    docker: OnceCell<Result<Docker, Arc<bollard::errors::Error>>>,
}

impl Engine {
    /// The engine named by `DOCKER_HOST`, else the local socket.
    pub fn from_env() -> Engine {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Engine::at(&host)
    }

    /// The engine at this address (`unix:///path`, `tcp://host:port`, `http://host:port`).
    pub fn at(host: &str) -> Engine {
        Engine {
            host: host.to_string(),
            docker: OnceCell::new(),
        }
    }

    /// The address, as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A connected client, or why there is none (the same answer for every caller).
    pub(crate) async fn connect(&self) -> Result<&Docker, Arc<bollard::errors::Error>> {
        let result = self
            .docker
            .get_or_init(|| async {
                let docker = Docker::connect_with_host(&self.host)?;
                Ok(docker.negotiate_version().await?)
            })
            .await;
        result.as_ref().map_err(Clone::clone)
    }

    /// The error for a consumer whose image needs this engine and cannot have it.
    pub(crate) fn unreachable(
        &self,
        consumer: &str,
        source: Arc<bollard::errors::Error>,
    ) -> ImageError {
        ImageError::Engine {
            consumer: consumer.to_string(),
            addr: self.host.clone(),
            source,
            docker_host: std::env::var("DOCKER_HOST").ok(),
        }
    }
}

/// Whether a bollard error means the engine could not be spoken to at all.
pub(crate) fn is_connection(err: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        err,
        E::HyperLegacyError { .. }
            | E::IOError { .. }
            | E::SocketNotFoundError(_)
            | E::RequestTimeoutError
    )
}

/// The labels every image carries.
pub(crate) fn labels(job: &ImageJob, revision: Option<&str>) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert("shoal.consumer".to_string(), job.consumer.clone());
    labels.insert("shoal.context-hash".to_string(), job.digest.clone());
    if let Some(rev) = revision {
        labels.insert(
            "org.opencontainers.image.revision".to_string(),
            rev.to_string(),
        );
    }
    labels
}

/// Builds one image, tagged with its full reference.
pub(crate) async fn build(
    docker: &Docker,
    engine: &Engine,
    job: &ImageJob,
    context: Vec<u8>,
    revision: Option<&str>,
    task: &Task,
) -> Result<(), ImageError> {
    let reference = job.reference();
    let args: HashMap<String, String> = job
        .build
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut options = BuildImageOptionsBuilder::new()
        .dockerfile(&job.build.dockerfile_in_context)
        .t(&reference)
        .buildargs(&args)
        .labels(&labels(job, revision))
        .platform(PLATFORM)
        .rm(true)
        .forcerm(true);
    if let Some(target) = &job.build.target {
        options = options.target(target);
    }
    let mut stream = docker.build_image(
        options.build(),
        None,
        Some(bollard::body_full(context.into())),
    );
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let remember = |tail: &mut VecDeque<String>, text: &str| {
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    remember(&mut tail, text);
                    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        if line.starts_with("Step ") {
                            task.step(line);
                        } else {
                            task.detail(line);
                        }
                    }
                }
                if let Some(status) = info.status.as_deref() {
                    task.detail(status);
                }
            }
            Err(e) if is_connection(&e) => return Err(engine.unreachable(&job.consumer, e.into())),
            Err(e) => {
                let detail = match e {
                    bollard::errors::Error::DockerStreamError { error } => error,
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(ImageError::Build {
                    consumer: job.consumer.clone(),
                    detail: detail.trim().to_string(),
                    output: tail.into_iter().collect(),
                });
            }
        }
    }
    Ok(())
}

/// Whether the engine already holds this image reference (the local platform's "present").
pub(crate) async fn has_image(
    docker: &Docker,
    reference: &str,
) -> Result<bool, bollard::errors::Error> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}
