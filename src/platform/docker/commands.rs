//! `plan`, `deploy`, `status` and `down` on the docker platform: the deploy pipeline of
//! the ECS platform (plan → images → topics → apply → wait → prune, with the same plan
//! output, step summary, JSON and GitHub job summary), with containers on the local Docker
//! Engine where ECS has task definitions and services.
//!
//! Images are built on the local engine and not pushed: the containers run on the engine
//! that built them, so a registry would only add a round trip. An image whose content-hash
//! tag the engine already has is not built again.
//!
//! A changed consumer is replaced by a rolling replacement: the new revision's containers
//! start next to the old ones (APIs on new ports), and only when every one of them is healthy
//! are the old ones stopped and removed. When a new container exits, restarts or is not
//! healthy in time, the new containers are removed, the old ones keep serving, and the
//! deploy fails with exit code 5 and the container's last log lines.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tracing::{info, warn};

use super::{
    self as engine, Container, DockerError, DockerScale, LiveSet, Ports, Secrets, Spec, Started,
    Template,
};
use crate::deploy::{
    kept_count, step, Ctx, DeployError, DeployOptions, Deployed, Inputs, Platform, StatusRow,
    Summary,
};
use crate::image::{self, Destination};
use crate::plan::{self, Kind, Live, Plan, Resource};
use crate::platform::logs::{LogQuery, LogSink};
use crate::platform::RolloutError;
use crate::render::Target;

/// The docker platform's commands on a resolved context.
pub struct Docker<'a>(pub &'a Ctx<'a>);

impl From<DockerError> for DeployError {
    fn from(e: DockerError) -> DeployError {
        DeployError::Platform(Box::new(e))
    }
}

/// Everything a docker deploy is computed from and applies.
struct State {
    project: String,
    env: String,
    plan: Plan,
    specs: Vec<Spec>,
    sets: BTreeMap<String, LiveSet>,
    containers: Vec<Container>,
    topics: Option<crate::kafka::topics::TopicPlan>,
}

impl Docker<'_> {
    /// The desired spec of every consumer: counts kept from live within the scaling bounds.
    fn specs(
        &self,
        inputs: &Inputs<'_>,
        sets: &BTreeMap<String, LiveSet>,
    ) -> Result<Vec<Spec>, DeployError> {
        let ctx = self.0;
        let secrets = Secrets::load(&engine::secrets_path(ctx.root, &ctx.env.name), ctx.root)?;
        let target = Target {
            project: ctx.project,
            env: ctx.env,
            bootstrap: inputs.bootstrap.clone(),
        };
        let mut out = Vec::new();
        for c in &ctx.fleet.consumers {
            let tag = ctx.hashes.get(&c.name).map(|h| h.tag()).unwrap_or_default();
            let image = plan::image_uri(ctx.env, ctx.project, &c.name, tag);
            let replicas = match sets.get(&c.name) {
                Some(set) => kept_count(c, set.desired() as i32) as u32,
                None => c.initial_count(),
            };
            let task_definition = ctx.renderer.render(&target, c, &image)?;
            out.push(Spec::new(c, &task_definition, &secrets, replicas)?);
        }
        Ok(out)
    }

    /// The project's containers to count and scale, with nothing to start from zero.
    async fn scale(&self) -> Result<DockerScale, DeployError> {
        let ctx = self.0;
        Ok(DockerScale::new(
            engine::connect().await?,
            ctx.env,
            ctx.project,
        ))
    }

    /// What the autoscaler starts a consumer's first container from when it has none left
    /// (scaling up from zero): the container a deploy of this tree would make, for every
    /// consumer with `[scaling]`. Its image is the tree's content-hash tag, so it is the
    /// deployed one as long as the tree has not changed since the deploy.
    pub async fn templates(&self) -> Result<BTreeMap<String, Template>, DeployError> {
        let ctx = self.0;
        let inputs = ctx.inputs().await?;
        Ok(self
            .specs(&inputs, &BTreeMap::new())?
            .iter()
            .filter(|s| {
                ctx.fleet
                    .get(&s.consumer)
                    .is_some_and(|c| c.scaling.is_some())
            })
            .map(|s| {
                (
                    s.consumer.clone(),
                    Template::from_spec(ctx.project, &ctx.env.name, s),
                )
            })
            .collect())
    }

    async fn state(&self, docker: &bollard::Docker) -> Result<(State, Inputs<'_>), DeployError> {
        let ctx = self.0;
        let inputs = ctx.inputs().await?;
        let containers = engine::list(docker, ctx.project, &ctx.env.name).await?;
        let sets = engine::live_sets(&containers);
        let specs = self.specs(&inputs, &sets)?;
        let desired: Vec<Resource> = specs
            .iter()
            .map(|s| Resource {
                kind: Kind::Service,
                name: s.consumer.clone(),
                consumer: Some(s.consumer.clone()),
                spec: s.plan_spec(),
            })
            .collect();
        let mut live = Live::default();
        for set in sets.values() {
            let mut spec = set.plan_spec();
            if !set.others.is_empty() {
                // Left over from an interrupted rollout: a deploy removes them.
                spec["leftoverContainers"] = Value::from(set.others.len());
            }
            live.insert(Resource {
                kind: Kind::Service,
                name: set.consumer.clone(),
                consumer: Some(set.consumer.clone()),
                spec,
            });
        }
        let mut the_plan = plan::diff(&desired, &live);
        let topics = crate::deploy::plan_topics(&inputs).await?;
        if let Some(tp) = &topics {
            tp.check()?;
            the_plan.create.extend(tp.plan.create.iter().cloned());
            the_plan.change.extend(tp.plan.change.iter().cloned());
            the_plan.unchanged += tp.plan.unchanged;
        }
        Ok((
            State {
                project: ctx.project.to_string(),
                env: ctx.env.name.clone(),
                plan: the_plan,
                specs,
                sets,
                containers,
                topics,
            },
            inputs,
        ))
    }
}

impl Platform for Docker<'_> {
    fn place(&self) -> String {
        format!(
            "docker, network {}",
            engine::network_name(self.0.project, &self.0.env.name)
        )
    }

    async fn plan(&self) -> Result<Plan, DeployError> {
        let docker = engine::connect().await?;
        let (state, _) = self.state(&docker).await?;
        Ok(state.plan)
    }

    async fn deploy(
        &self,
        options: &DeployOptions,
        planned: &mut dyn FnMut(&Plan),
    ) -> Result<Deployed, DeployError> {
        let docker = engine::connect().await?;
        let (state, inputs) = self.state(&docker).await?;
        planned(&state.plan);
        let (summary, failure) = match apply(&docker, &inputs, &state, options).await {
            Ok(s) => (s, None),
            Err((s, e)) => (s, Some(e)),
        };
        Ok(Deployed {
            plan: state.plan,
            summary,
            failure,
        })
    }

    async fn status(&self) -> Result<Vec<StatusRow>, DeployError> {
        let ctx = self.0;
        let docker = engine::connect().await?;
        let containers = engine::list(&docker, ctx.project, &ctx.env.name).await?;
        let mut rows = status_rows(&containers);
        super::alarms::evaluate(&ctx.session, ctx.fleet, &mut rows).await;
        Ok(rows)
    }

    async fn down(&self) -> Result<Vec<String>, DeployError> {
        let ctx = self.0;
        let docker = engine::connect().await?;
        Ok(engine::down(&docker, ctx.project, &ctx.env.name).await?)
    }

    /// The containers' logs through the Engine API.
    async fn logs(&self, query: &LogQuery, sink: &mut LogSink<'_>) -> Result<(), DeployError> {
        let ctx = self.0;
        Ok(super::logs::read(ctx.project, &ctx.env.name, query, sink).await?)
    }

    type Hands = DockerScale;

    /// The project's containers; a consumer with none left is started from the deploy's
    /// spec ([`Docker::templates`]). Metrics are not published: the docker platform has no
    /// CloudWatch, so the figures are only on the daemon's `/metrics`.
    async fn hands(&self) -> Result<DockerScale, DeployError> {
        let mut scale = self.scale().await?;
        scale.fallback = self.templates().await?;
        Ok(scale)
    }

    /// One container list.
    async fn counts(
        &self,
        services: &[String],
    ) -> Result<BTreeMap<String, crate::platform::Counts>, DeployError> {
        let scale = self.scale().await?;
        crate::platform::Scale::counts_many(&scale, services)
            .await
            .map_err(|e| DeployError::Platform(Box::new(e)))
    }
}

fn status_rows(containers: &[Container]) -> Vec<StatusRow> {
    engine::live_sets(containers)
        .into_values()
        .map(|set| {
            let image = set
                .spec
                .as_ref()
                .and_then(|s| s["image"].as_str())
                .unwrap_or_default()
                .to_string();
            let rollout = if !set.others.is_empty() {
                "rolling"
            } else if set.running() < set.desired() {
                "degraded"
            } else {
                "steady"
            };
            StatusRow {
                consumer: set.consumer.clone(),
                desired: set.desired(),
                running: set.running(),
                pending: None,
                revision: set.revision.clone(),
                image_tag: crate::image::tag_of(&image).unwrap_or("-").to_string(),
                rollout: rollout.to_string(),
                last_event: None,
                ports: set
                    .current
                    .iter()
                    .filter(|c| c.running())
                    .filter_map(|c| c.port)
                    .collect(),
                containers: set
                    .current
                    .iter()
                    .chain(&set.others)
                    .map(|c| serde_json::to_value(c).unwrap_or_default())
                    .collect(),
                alarms: Vec::new(),
            }
        })
        .collect()
}

/// A rollout in progress: the containers started for one consumer's new revision.
struct Rolling<'s> {
    spec: &'s Spec,
    started: Vec<Started>,
    /// The containers to remove once the new ones are healthy.
    old: Vec<Container>,
}

async fn apply(
    docker: &bollard::Docker,
    inputs: &Inputs<'_>,
    state: &State,
    options: &DeployOptions,
) -> std::result::Result<Summary, (Summary, DeployError)> {
    let mut summary = Summary::default();
    let the_plan = &state.plan;
    let changed: BTreeSet<&str> = the_plan
        .create
        .iter()
        .chain(&the_plan.change)
        .filter(|i| i.kind == Kind::Service)
        .map(|i| i.name.as_str())
        .collect();

    let report = step!(
        summary,
        "images",
        build_images(inputs, &changed, options).await
    );
    summary.record_images(&report);

    step!(
        summary,
        "topics",
        crate::deploy::apply_topics(inputs.session, state.topics.as_ref()).await
    );

    let rolling = step!(summary, "containers", {
        start_changed(docker, state, &changed, options).await
    });

    let rolled: Vec<String> = rolling.iter().map(|r| r.spec.consumer.clone()).collect();
    step!(summary, "rollouts", {
        let waits = rolling.iter().map(|r| async move {
            let waited = engine::wait_healthy(
                docker,
                &r.spec.consumer,
                &r.started,
                r.spec.api.as_ref(),
                options.wait.timeout,
            )
            .await;
            finish(docker, r, waited).await
        });
        crate::deploy::wait_all(waits).await
    });

    step!(summary, "prune", {
        let gone: Vec<&str> = the_plan
            .delete
            .iter()
            .filter(|i| i.kind == Kind::Service)
            .map(|i| i.name.as_str())
            .collect();
        let mut result = Ok(());
        let mut deleted = 0;
        if options.prune {
            for name in &gone {
                for c in state.containers.iter().filter(|c| c.consumer == *name) {
                    if let Err(e) = engine::remove(docker, &c.id).await {
                        result = Err(DeployError::from(e));
                    }
                }
                deleted += 1;
            }
        }
        let kept = gone.len() - deleted;
        result.map(|()| {
            let detail = match (deleted, kept) {
                (0, 0) => "nothing to delete".to_string(),
                (d, 0) => format!("{d} deleted"),
                (d, k) => format!("{d} deleted, {k} kept (pass --prune to delete)"),
            };
            (detail, ())
        })
    });
    summary.services = rolled;
    Ok(summary)
}

/// Builds the images of the changed consumers that the engine does not have yet.
async fn build_images(
    inputs: &Inputs<'_>,
    changed: &BTreeSet<&str>,
    options: &DeployOptions,
) -> std::result::Result<(String, image::Report), DeployError> {
    let jobs = crate::deploy::image_jobs(inputs, |c| changed.contains(c.name.as_str()));
    crate::deploy::run_image_jobs(
        inputs,
        jobs,
        Destination::Local,
        options.jobs,
        "built (not pushed: the local engine runs them)",
    )
    .await
}

/// For each changed consumer: a new revision starts its containers (waited for in the
/// rollouts step); a changed count on the same revision adds or removes containers.
async fn start_changed<'s>(
    docker: &bollard::Docker,
    state: &'s State,
    changed: &BTreeSet<&str>,
    options: &DeployOptions,
) -> std::result::Result<(String, Vec<Rolling<'s>>), DeployError> {
    let mut ports = Ports::new(&state.containers);
    let mut rolling = Vec::new();
    let (mut rolled, mut scaled) = (0, 0);
    for spec in state
        .specs
        .iter()
        .filter(|s| changed.contains(s.consumer.as_str()))
    {
        let set = state.sets.get(&spec.consumer);
        let template = Template::from_spec(&state.project, &state.env, spec);
        match set {
            Some(set) if set.revision == spec.revision => {
                engine::scale_to(
                    docker,
                    set,
                    &template,
                    &state.containers,
                    spec.replicas,
                    options.wait.timeout,
                )
                .await
                .map_err(|e| DeployError::Rollouts(vec![e]))?;
                for c in &set.others {
                    engine::remove(docker, &c.id).await?;
                }
                scaled += 1;
            }
            _ => {
                let existing: Vec<Container> = state
                    .containers
                    .iter()
                    .filter(|c| c.consumer == spec.consumer && c.revision == spec.revision)
                    .cloned()
                    .collect();
                let mut started = Vec::new();
                for replica in engine::free_replicas(&existing, spec.replicas) {
                    match engine::start(docker, &template, replica, &mut ports).await {
                        Ok(s) => started.push(s),
                        Err(e) => {
                            for s in &started {
                                let _ = engine::remove(docker, &s.id).await;
                            }
                            return Err(e.into());
                        }
                    }
                }
                let old = state
                    .containers
                    .iter()
                    .filter(|c| c.consumer == spec.consumer)
                    .cloned()
                    .collect();
                rolled += 1;
                rolling.push(Rolling { spec, started, old });
            }
        }
    }
    Ok((
        format!("{rolled} new revision(s) started, {scaled} rescaled"),
        rolling,
    ))
}

/// Ends one rollout: healthy → the old containers go; failed → the new ones go.
async fn finish(
    docker: &bollard::Docker,
    r: &Rolling<'_>,
    waited: std::result::Result<(), RolloutError>,
) -> std::result::Result<(), RolloutError> {
    let to_remove: Vec<(&str, &str)> = match &waited {
        Ok(()) => r
            .old
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect(),
        Err(_) => r
            .started
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str()))
            .collect(),
    };
    for (id, name) in to_remove {
        if let Err(e) = engine::remove(docker, id).await {
            warn!(container = name, error = %e, "cannot remove");
        }
    }
    if waited.is_ok() {
        info!(consumer = %r.spec.consumer, revision = %r.spec.revision, "rollout completed");
    }
    waited
}
