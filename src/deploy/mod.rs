//! The deploy pipeline both platforms share: the resolved settings a command works on
//! ([`Ctx`], [`Inputs`]), the step runner ([`step!`]), the images and topics steps, and the
//! report (the step summary, JSON, the GitHub job summary). Each platform's wing
//! (`platform/ecs`, `platform/docker`) plans and applies its own resources with these:
//!
//! ```text
//! manifests → desired ─┐
//! live state ──────────┴─► plan ─► (platform resources) ─► images ─► topics
//!   ─► (platform workloads) ─► wait for every rollout ─► prune (with --prune) ─► report
//! ```
//!
//! Every step is idempotent, so a deploy that was interrupted converges when it runs again.

/// Runs one apply step (`$body` gives `Result<(detail, value), DeployError>`), timing it,
/// logging it and recording it in `$summary`; on failure it returns `Err((summary, error))`
/// from the enclosing function. Both platforms' `apply` use it.
macro_rules! step {
    ($summary:ident, $name:expr, $body:expr) => {{
        let started = std::time::Instant::now();
        let result: std::result::Result<(String, _), $crate::deploy::DeployError> = $body;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok((detail, value)) => {
                tracing::info!(step = $name, seconds, %detail, "done");
                $summary
                    .steps
                    .push($crate::deploy::Step::ok($name, detail, seconds));
                value
            }
            Err(e) => {
                $summary
                    .steps
                    .push($crate::deploy::Step::failed($name, e.to_string(), seconds));
                return Err(($summary, e));
            }
        }
    }};
}
pub(crate) use step;

mod settings;
mod summary;

use std::future::Future;

use futures_util::future::join_all;

pub use settings::{Ctx, Session};
pub use summary::{Step, Summary};

use crate::aws::AwsError;
use crate::discover::context::ContextHash;
use crate::discover::Fleet;
use crate::image::{self, Destination, Engine, ImageJob, Pipeline, Progress};
use crate::manifest::{Consumer, Environment};
use crate::plan::Plan;
use crate::platform::logs::{LogQuery, LogSink};
use crate::platform::{Counts, Publish, RolloutError, Scale, Wait};
use crate::render::{RenderError, Renderer, Target};
use std::collections::BTreeMap;

/// How `deploy` runs, whatever the platform.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions {
    /// Delete the workloads of removed consumer folders.
    pub prune: bool,
    /// Images built (and pushed) at once.
    pub jobs: usize,
    /// How long to wait for each rollout, and how often to look.
    pub wait: Wait,
}

/// What a deploy did: the plan it applied, its steps, and what failed, if anything (the
/// steps that ran are reported either way).
#[derive(Debug)]
pub struct Deployed {
    pub plan: Plan,
    pub summary: Summary,
    pub failure: Option<DeployError>,
}

/// One workload in `shoal status`, the same shape on every platform.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    pub consumer: String,
    pub desired: u32,
    pub running: u32,
    /// Starting, where the platform tells (ECS's pending count).
    pub pending: Option<u32>,
    pub revision: String,
    pub image_tag: String,
    /// The rollout's state: ECS's `rolloutState`, or on docker steady, degraded or rolling.
    pub rollout: String,
    /// The platform's last event about the workload, where it keeps one (ECS).
    pub last_event: Option<String>,
    /// Host ports of the running replicas (docker APIs).
    pub ports: Vec<u16>,
    /// The replicas themselves, where the platform lists them (docker containers).
    pub containers: Vec<serde_json::Value>,
    /// The consumer's alarms (`[alarms]`) and their states: CloudWatch's on ECS, evaluated
    /// from the platform's and the broker's own reads on docker.
    pub alarms: Vec<AlarmStatus>,
}

/// One alarm of a consumer as `status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlarmStatus {
    /// `lag`, `no-lag-data`, `below-desired` or `dlq`.
    pub alarm: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
}

/// The commands that depend on where workloads run. They return values; `app` renders
/// them as text or JSON, the same shapes for every platform.
pub trait Platform {
    /// Where the workloads go, for headings: `ecs, cluster …` or `docker, network …`.
    fn place(&self) -> String;

    /// Reads live state and computes the plan.
    fn plan(&self) -> impl Future<Output = Result<Plan, DeployError>>;

    /// Plans, hands the plan to `planned` before anything changes (so it can be shown),
    /// applies it and waits for every rollout.
    fn deploy(
        &self,
        options: &DeployOptions,
        planned: &mut dyn FnMut(&Plan),
    ) -> impl Future<Output = Result<Deployed, DeployError>>;

    /// A row per workload.
    fn status(&self) -> impl Future<Output = Result<Vec<StatusRow>, DeployError>>;

    /// Removes every workload of the project in the environment; returns what was removed.
    fn down(&self) -> impl Future<Output = Result<Vec<String>, DeployError>>;

    /// Reads a consumer's log lines and hands them to `sink` in time order, every replica's
    /// interleaved; following, it returns only when a read fails.
    fn logs(
        &self,
        query: &LogQuery,
        sink: &mut LogSink<'_>,
    ) -> impl Future<Output = Result<(), DeployError>>;

    /// The autoscaler's hands on this platform: what sets the counts, and where its metrics
    /// go.
    type Hands: Scale + Publish + Send + Sync;

    /// The hands for the environment's workloads, ready to scale any of them (from zero too).
    fn hands(&self) -> impl Future<Output = Result<Self::Hands, DeployError>>;

    /// The desired and running counts of these services (`shoal lag`'s member fallback): a
    /// read that needs less than [`Platform::hands`] (on docker, no rendered templates, so a
    /// missing secret does not hide the counts). A service the platform lacks is left out.
    fn counts(
        &self,
        services: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, Counts>, DeployError>>;
}

/// What a deploy can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{} image(s) failed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Images(Vec<image::ImageError>),
    #[error("{} rollout(s) failed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Rollouts(Vec<RolloutError>),
    #[error("topics: {0}")]
    Topics(#[from] crate::kafka::KafkaError),
    /// A platform's own failure (the Docker Engine's, say), with its cause.
    #[error(transparent)]
    Platform(Box<dyn std::error::Error + Send + Sync>),
    /// The command does not apply to this environment's platform.
    #[error("{what}")]
    Unsupported { what: String },
    #[error("no service {service:?} in cluster {cluster}; `shoal status --env {env}` lists them")]
    NoSuchService {
        service: String,
        cluster: String,
        env: String,
    },
    #[error("{service} runs {revision}, and there is no earlier active revision to return to")]
    NoEarlierRevision { service: String, revision: String },
    #[error("{consumer}: {source}")]
    Service {
        consumer: String,
        #[source]
        source: AwsError,
    },
}

/// Everything the plan is computed from.
pub struct Inputs<'a> {
    /// The project root (for the git revision label of images).
    pub root: &'a std::path::Path,
    pub project: &'a str,
    pub env: &'a Environment,
    pub fleet: &'a Fleet,
    pub renderer: &'a Renderer,
    pub hashes: &'a BTreeMap<String, ContextHash>,
    /// The brokers the workloads are given as `KAFKA_BOOTSTRAP`: the environment's list, or
    /// an MSK cluster's brokers for its auth mode, as [`Session::workload_bootstrap`] finds
    /// them.
    pub bootstrap: Option<String>,
    /// The environment's connections, shared by every step.
    pub session: &'a Session<'a>,
}

impl Inputs<'_> {
    pub fn target(&self) -> Target<'_> {
        Target {
            project: self.project,
            env: self.env,
            bootstrap: self.bootstrap.clone(),
        }
    }

    pub fn tags(&self) -> BTreeMap<String, String> {
        self.hashes
            .iter()
            .map(|(k, h)| (k.clone(), h.tag().to_string()))
            .collect()
    }
}

/// The desired count a deploy keeps: the live one, within the manifest's scaling bounds.
/// A deploy never resets a count that the autoscaler (or a person) set.
pub fn kept_count(consumer: &Consumer, live: i32) -> i32 {
    let live = live.max(0) as u32;
    let kept = match consumer.scaling {
        Some(s) => live.clamp(s.min, s.max),
        None => live,
    };
    kept as i32
}

/// The topic plan, when the fleet declares topics and the environment names its brokers.
pub async fn plan_topics(
    inputs: &Inputs<'_>,
) -> Result<Option<crate::kafka::topics::TopicPlan>, DeployError> {
    use crate::manifest::KafkaAccess;
    if crate::kafka::topics::declared(inputs.fleet).is_empty() {
        return Ok(None);
    }
    match &inputs.env.kafka {
        KafkaAccess::Bootstrap(_) | KafkaAccess::Msk { .. } => {
            let admin = crate::kafka::admin::Admin::with(inputs.session.kafka().await?)?;
            Ok(Some(
                crate::kafka::topics::plan_live(&admin, inputs.fleet).await?,
            ))
        }
        KafkaAccess::None => Ok(None),
    }
}

/// Waits for every rollout at once; the step fails with every rollout that did.
pub async fn wait_all<T>(
    waits: impl IntoIterator<Item = impl std::future::Future<Output = Result<T, RolloutError>>>,
) -> Result<(String, ()), DeployError> {
    let results = join_all(waits).await;
    let total = results.len();
    let failures: Vec<RolloutError> = results.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() {
        Ok((format!("{total} completed"), ()))
    } else {
        Err(DeployError::Rollouts(failures))
    }
}

/// The image jobs of the consumers `keep` picks (those with a content hash).
pub fn image_jobs(inputs: &Inputs<'_>, keep: impl Fn(&Consumer) -> bool) -> Vec<ImageJob> {
    inputs
        .fleet
        .consumers
        .iter()
        .filter(|c| keep(c))
        .filter_map(|c| {
            let h = inputs.hashes.get(&c.name)?;
            Some(ImageJob::new(inputs.env, inputs.project, c, h))
        })
        .collect()
}

pub fn nothing_built() -> (String, image::Report) {
    let report = image::Report {
        results: Vec::new(),
    };
    ("nothing to build".to_string(), report)
}

/// Builds (and, to a registry, pushes) these images, on either platform; the step's detail
/// says what a built image became (`built_means`) and how many were already there.
pub async fn run_image_jobs(
    inputs: &Inputs<'_>,
    jobs: Vec<ImageJob>,
    destination: Destination,
    parallel: usize,
    built_means: &str,
) -> Result<(String, image::Report), DeployError> {
    if jobs.is_empty() {
        return Ok(nothing_built());
    }
    let pipeline = Pipeline::new(Engine::from_env(), destination)
        .with_revision(image::git_revision(inputs.root));
    let report = pipeline
        .build_and_push_all(jobs, parallel, &Progress::auto())
        .await;
    let built = report
        .outcomes()
        .filter(|(_, o)| !matches!(o, image::Outcome::Skipped { .. }))
        .count();
    let skipped = report.outcomes().count() - built;
    if report.is_ok() {
        Ok((
            format!("{built} {built_means}, {skipped} already present"),
            report,
        ))
    } else {
        Err(DeployError::Images(
            report
                .results
                .into_iter()
                .filter_map(|(_, r)| r.err())
                .collect(),
        ))
    }
}

/// The topics step of both platforms: applies the topic plan's steps, if any.
pub async fn apply_topics(
    session: &Session<'_>,
    topics: Option<&crate::kafka::topics::TopicPlan>,
) -> Result<(String, ()), DeployError> {
    let Some(tp) = topics.filter(|tp| !tp.steps.is_empty()) else {
        return Ok(("nothing to change".to_string(), ()));
    };
    let admin = crate::kafka::admin::Admin::with(session.kafka().await?)?;
    let done = crate::kafka::topics::apply(&admin, &tp.steps).await?;
    Ok((format!("{} applied: {}", done.len(), done.join("; ")), ()))
}
