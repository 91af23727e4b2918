//! Images: build each consumer's image through the Docker Engine API (bollard), tagged with
//! its build context's content hash, and push it with ECR's credentials. A tag already in the
//! registry is neither built nor pushed.
//!
//! ```text
//! ImageJob (consumer, build, tag) ──present?──► Skipped
//!                                  └─ no ─► tar context ─► build ─► push ─► Pushed
//! ```
//!
//! [`Pipeline::build_and_push_all`] runs up to `jobs` consumers at once and returns every
//! consumer's outcome, every error included: one failing build does not stop the others.
//! Images that share a build context build one after another, so that the later ones reuse
//! the earlier ones' layers (`turns.rs`).
//!
//! Where "present?" is asked depends on the [`Destination`]:
//! - the account's ECR registry: BatchGetImage, one call per repository;
//! - a `registry` override (an ECR-compatible registry that receives the pushes while ECR stays
//!   the source of credentials): `HEAD /v2/<repo>/manifests/<tag>` on the registry;
//! - no registry (the local Docker platform): the engine's own image list, and nothing is
//!   pushed.
//!
//! ECR repositories must exist before a push to real ECR; the ECS platform's deploy makes
//! them first (`platform/ecs/repositories.rs`). A registry override creates
//! repositories on first push.

mod build;
mod progress;
mod push;
pub mod registry;
pub mod tar;
mod turns;

use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt;

pub use build::Engine;
pub use progress::Progress;
pub use registry::{RegistryApi, RegistryError};

use crate::aws::ecr::{self, RegistryAuth};
use crate::aws::AwsError;
use crate::discover::context::{ContextError, ContextHash};
use crate::manifest::{Build, Consumer, Environment};
use crate::plan::image_uri;

/// One consumer's image: what to build and where it goes.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub consumer: String,
    pub build: Build,
    /// The full content hash (a label on the image).
    pub digest: String,
    /// The tag: the content hash's short form.
    pub tag: String,
    /// The repository, `<project>/<consumer>`.
    pub repository: String,
    /// The image name without the tag: `<registry host>/<repository>`.
    pub name: String,
}

impl ImageJob {
    /// The image of `consumer` in `env`, at the tag of its context hash.
    pub fn new(
        env: &Environment,
        project: &str,
        consumer: &Consumer,
        hash: &ContextHash,
    ) -> ImageJob {
        let tag = hash.tag().to_string();
        let reference = image_uri(env, project, &consumer.name, &tag);
        let name = reference
            .strip_suffix(&format!(":{tag}"))
            .unwrap_or(&reference)
            .to_string();
        // `image_uri` is `<registry host>/<repository>:<tag>`: the repository is what follows
        // the host (the plan's `repository()`, read back rather than spelled twice).
        let host = env.registry_host();
        let repository = name
            .strip_prefix(&format!("{host}/"))
            .unwrap_or(&name)
            .to_string();
        ImageJob {
            consumer: consumer.name.clone(),
            build: consumer.build.clone(),
            digest: hash.digest.clone(),
            tag,
            repository,
            name,
        }
    }

    /// `<registry host>/<repository>:<tag>`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// Where images go, and how to tell whether one is already there.
#[derive(Debug, Clone)]
pub enum Destination {
    /// The account's ECR registry at `host`; presence from BatchGetImage.
    Ecr {
        client: aws_sdk_ecr::Client,
        host: String,
        auth: RegistryAuth,
    },
    /// An ECR-compatible registry at `host` (the environment's `registry` override), with
    /// ECR's credentials; presence from the registry's HTTP API v2.
    Registry {
        api: RegistryApi,
        host: String,
        auth: RegistryAuth,
    },
    /// The local engine only: nothing is pushed.
    Local,
}

impl Destination {
    /// The destination of an ECS environment: GetAuthorizationToken through `client`, then the
    /// override registry when the environment names one, else ECR itself.
    pub async fn for_environment(
        env: &Environment,
        client: aws_sdk_ecr::Client,
    ) -> Result<Destination, AwsError> {
        let auth = ecr::authorization(&client).await?;
        let host = env.registry_host();
        if env.registry.is_some() {
            let api = RegistryApi::new().map_err(|e| AwsError::Other {
                service: "ECR",
                operation: "GetAuthorizationToken",
                problem: format!("cannot load the system's TLS roots: {e}"),
            })?;
            Ok(Destination::Registry { api, host, auth })
        } else {
            Ok(Destination::Ecr { client, host, auth })
        }
    }

    fn host(&self) -> Option<&str> {
        match self {
            Destination::Ecr { host, .. } | Destination::Registry { host, .. } => Some(host),
            Destination::Local => None,
        }
    }
}

/// What happened to one consumer's image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The tag was already there: neither built nor pushed.
    Skipped { tag: String },
    /// Built on the local engine (no registry to push to).
    Built { tag: String, build_seconds: f64 },
    /// Built and pushed.
    Pushed {
        tag: String,
        build_seconds: f64,
        push_seconds: f64,
    },
}

impl Outcome {
    pub fn tag(&self) -> &str {
        match self {
            Outcome::Skipped { tag } | Outcome::Built { tag, .. } | Outcome::Pushed { tag, .. } => {
                tag
            }
        }
    }
}

/// Why one consumer's image could not be made or pushed. Every variant names the consumer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{consumer}: cannot read the build context: {source}")]
    Context {
        consumer: String,
        source: ContextError,
    },
    #[error(
        "{consumer}: cannot reach the Docker Engine at {addr}: {}; is Docker running? \
         DOCKER_HOST={}",
        crate::error::innermost(source.as_ref()),
        docker_host.as_deref().unwrap_or("(unset)")
    )]
    Engine {
        consumer: String,
        addr: String,
        /// The engine's error, shared: one failed connection answers every consumer.
        source: std::sync::Arc<bollard::errors::Error>,
        docker_host: Option<String>,
    },
    #[error(
        "{consumer}: the image build failed: {detail}{}{}",
        crate::error::last_lines("last lines of the build:", "  ", output),
        pull_hint(detail)
    )]
    Build {
        consumer: String,
        detail: String,
        /// The last lines of the build's output, the failing step among them.
        output: Vec<String>,
    },
    #[error(
        "registry {registry} refused the credentials from ECR's GetAuthorizationToken for \
         consumer {consumer}: {detail}"
    )]
    Credentials {
        consumer: String,
        registry: String,
        detail: String,
    },
    #[error("{consumer}: the push to {registry} failed: {detail}")]
    Push {
        consumer: String,
        registry: String,
        detail: String,
    },
    #[error("{consumer}: cannot tell whether {registry} has the image: {source}")]
    Registry {
        consumer: String,
        registry: String,
        source: RegistryError,
    },
    #[error("{consumer}: {source}")]
    Aws { consumer: String, source: AwsError },
}

/// When a build failed because a base image had to be pulled: say what to do instead.
fn pull_hint(detail: &str) -> &'static str {
    let pulling = [
        "registry-1.docker.io",
        "pull access denied",
        "manifest unknown",
    ];
    if pulling.iter().any(|p| detail.contains(p)) {
        "\n  help: a FROM image is not on this machine and could not be pulled; build it locally first (scripts/stack builds stand-ins for debian:bookworm-slim and rust:1.95-bookworm) or use FROM scratch"
    } else {
        ""
    }
}

impl ImageError {
    /// The consumer the error is about.
    pub fn consumer(&self) -> &str {
        match self {
            ImageError::Context { consumer, .. }
            | ImageError::Engine { consumer, .. }
            | ImageError::Build { consumer, .. }
            | ImageError::Credentials { consumer, .. }
            | ImageError::Push { consumer, .. }
            | ImageError::Registry { consumer, .. }
            | ImageError::Aws { consumer, .. } => consumer,
        }
    }
}

/// Every consumer's result, sorted by consumer.
#[derive(Debug)]
pub struct Report {
    pub results: Vec<(String, Result<Outcome, ImageError>)>,
}

impl Report {
    pub fn outcomes(&self) -> impl Iterator<Item = (&str, &Outcome)> {
        self.results
            .iter()
            .filter_map(|(c, r)| r.as_ref().ok().map(|o| (c.as_str(), o)))
    }

    pub fn errors(&self) -> impl Iterator<Item = &ImageError> {
        self.results.iter().filter_map(|(_, r)| r.as_ref().err())
    }

    pub fn get(&self, consumer: &str) -> Option<&Result<Outcome, ImageError>> {
        self.results
            .iter()
            .find(|(c, _)| c == consumer)
            .map(|(_, r)| r)
    }

    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// Builds and pushes images.
#[derive(Debug)]
pub struct Pipeline {
    engine: Engine,
    destination: Destination,
    revision: Option<String>,
}

impl Pipeline {
    pub fn new(engine: Engine, destination: Destination) -> Pipeline {
        Pipeline {
            engine,
            destination,
            revision: None,
        }
    }

    /// Labels images with this git commit (`org.opencontainers.image.revision`).
    pub fn with_revision(mut self, revision: Option<String>) -> Pipeline {
        self.revision = revision;
        self
    }

    /// Builds and pushes every image whose tag is not there yet, up to `jobs` at once.
    pub async fn build_and_push_all(
        &self,
        items: Vec<ImageJob>,
        jobs: usize,
        progress: &Progress,
    ) -> Report {
        let turns = turns::Turns::new(&items);
        let turns = &turns;
        let mut results: Vec<(String, Result<Outcome, ImageError>)> =
            futures_util::stream::iter(items)
                .map(|job| async move {
                    let task = progress.task(&job.consumer);
                    let result = self.one(&job, &task, turns).await;
                    match &result {
                        Ok(o) => task.finish(true, &describe(o)),
                        Err(e) => task.finish(false, &first_line(e)),
                    }
                    (job.consumer, result)
                })
                .buffer_unordered(jobs.max(1))
                .collect()
                .await;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Report { results }
    }

    async fn one(
        &self,
        job: &ImageJob,
        task: &progress::Task,
        turns: &turns::Turns,
    ) -> Result<Outcome, ImageError> {
        let tag = job.tag.clone();
        task.detail(&format!("looking for {}", job.reference()));
        if self.present(job).await? {
            return Ok(Outcome::Skipped { tag });
        }
        let docker = self
            .engine
            .connect()
            .await
            .map_err(|cause| self.engine.unreachable(&job.consumer, cause))?;
        let turn = turns
            .take(job, |building| {
                task.step(&format!(
                    "waiting for {building}'s build, from the same build context: its layers \
                     are this build's cache"
                ))
            })
            .await;
        let build = job.build.clone();
        let context = tokio::task::spawn_blocking(move || tar::context_tar(&build))
            .await
            .map_err(|e| ImageError::Context {
                consumer: job.consumer.clone(),
                source: ContextError::Io {
                    path: job.build.context.clone(),
                    source: std::io::Error::other(e.to_string()),
                },
            })?
            .map_err(|source| ImageError::Context {
                consumer: job.consumer.clone(),
                source,
            })?;
        task.step(&format!(
            "building {} ({} kB of context)",
            job.reference(),
            context.len() / 1024
        ));
        let started = Instant::now();
        build::build(
            docker,
            &self.engine,
            job,
            context,
            self.revision.as_deref(),
            task,
        )
        .await?;
        drop(turn);
        let build_seconds = started.elapsed().as_secs_f64();
        let (host, auth) = match &self.destination {
            Destination::Ecr { host, auth, .. } | Destination::Registry { host, auth, .. } => {
                (host, auth)
            }
            Destination::Local => return Ok(Outcome::Built { tag, build_seconds }),
        };
        task.step(&format!("pushing {}", job.reference()));
        let started = Instant::now();
        if !push::push(docker, &self.engine, job, host, auth, task).await? {
            return Ok(Outcome::Skipped { tag });
        }
        Ok(Outcome::Pushed {
            tag,
            build_seconds,
            push_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Whether the destination already holds the job's tag.
    async fn present(&self, job: &ImageJob) -> Result<bool, ImageError> {
        match &self.destination {
            Destination::Ecr { client, .. } => {
                ecr::existing_tags(client, &job.repository, std::slice::from_ref(&job.tag))
                    .await
                    .map(|found| found.contains(&job.tag))
                    .map_err(|source| ImageError::Aws {
                        consumer: job.consumer.clone(),
                        source,
                    })
            }
            Destination::Registry { api, host, auth } => api
                .manifest_exists(host, &job.repository, &job.tag, auth)
                .await
                .map_err(|source| match source {
                    RegistryError::Refused { status } => ImageError::Credentials {
                        consumer: job.consumer.clone(),
                        registry: host.clone(),
                        detail: format!(
                            "HTTP {status} from HEAD /v2/{}/manifests/{}",
                            job.repository, job.tag
                        ),
                    },
                    source => ImageError::Registry {
                        consumer: job.consumer.clone(),
                        registry: host.clone(),
                        source,
                    },
                }),
            Destination::Local => {
                let docker = self
                    .engine
                    .connect()
                    .await
                    .map_err(|cause| self.engine.unreachable(&job.consumer, cause))?;
                build::has_image(docker, &job.reference())
                    .await
                    .map_err(|e| self.engine.unreachable(&job.consumer, e.into()))
            }
        }
    }

    /// The registry host images are pushed to, if any.
    pub fn registry(&self) -> Option<&str> {
        self.destination.host()
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Skipped { tag } => format!("{tag} already in the registry: skipped"),
        Outcome::Built { tag, build_seconds } => format!("built {tag} in {build_seconds:.1} s"),
        Outcome::Pushed {
            tag,
            build_seconds,
            push_seconds,
        } => format!("built {tag} in {build_seconds:.1} s, pushed in {push_seconds:.1} s"),
    }
}

/// The first line of an error, without the consumer's name in front (the progress line shows
/// it already).
fn first_line(e: &ImageError) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix(&format!("{}: ", e.consumer()))
        .unwrap_or(first)
        .to_string()
}

/// The tag of an image reference (`host:port/repo:tag` → `tag`), when it has one; a port
/// in the registry host is not a tag.
pub fn tag_of(reference: &str) -> Option<&str> {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.rsplit_once(':').map(|(_, tag)| tag)
}

/// The git commit checked out in `root` (`git rev-parse HEAD`), when there is one.
pub fn git_revision(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && rev.len() >= 40 && rev.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(rev)
}
