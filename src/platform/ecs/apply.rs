//! `plan` and `deploy` on ECS: read what exists, compute the plan, then apply it step by
//! step. Every step is idempotent, so a deploy that was interrupted converges when it runs
//! again.
//!
//! ```text
//! read live (ECR, Logs, task definitions, services) ─┐
//! manifests → desired (rendered, normalised) ────────┴─► plan ─► repositories ─► log groups
//!   ─► images (build + push what is missing) ─► topics ─► task definitions (register what
//!   changed) ─► services (create / update) ─► wait for every rollout ─► alarms (put what
//!   changed) ─► prune (with --prune: services, then alarms)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tracing::info;

use super::live::{self, LiveState};
use super::taskdef;
use crate::aws;
use crate::deploy::{
    apply_topics, image_jobs, kept_count, nothing_built, plan_topics, run_image_jobs, step,
    wait_all, DeployError, DeployOptions, Inputs, Summary,
};
use crate::discover::Fleet;
use crate::image::{self, Destination};
use crate::manifest::{Consumer, Environment};
use crate::plan::{self, Kind, Plan, Resource};
use crate::platform::ecs;
use crate::render::{family, RenderError};

/// The clients of one environment, made once.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Clients {
    pub fn from_config(cfg: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws::ecs(cfg),
            ecr: aws::ecr(cfg),
            logs: aws::logs(cfg),
            cloudwatch: aws::cloudwatch(cfg),
        }
    }
}

/// The desired resources of an ECS deploy before live state is known: task definitions
/// normalised (so they compare with what ECS returns), topics left to `shoal topics`.
pub fn desired(inputs: &Inputs<'_>) -> Result<Vec<Resource>, RenderError> {
    let tags = inputs.tags();
    let service = |c: &crate::manifest::Consumer| {
        super::ServiceSpec::desired(inputs.env, inputs.project, c).to_json()
    };
    let prerequisites =
        |c: &crate::manifest::Consumer| prerequisites(inputs.env, inputs.project, c);
    let all = plan::desired(&plan::DesiredInputs {
        target: inputs.target(),
        fleet: inputs.fleet,
        renderer: inputs.renderer,
        tags: &tags,
        service: &service,
        prerequisites: &prerequisites,
    })?;
    let mut out: Vec<Resource> = all
        .into_iter()
        .filter(|r| r.kind != Kind::Topic)
        .map(|mut r| {
            if r.kind == Kind::TaskDefinition {
                r.spec = taskdef::normalize(&r.spec);
            }
            r
        })
        .collect();
    out.extend(super::alarms::desired(
        inputs.project,
        inputs.env,
        inputs.fleet,
    ));
    Ok(out)
}

/// What a consumer needs on ECS before its task definition: its ECR repository (scan on
/// push, IMMUTABLE tags, the lifecycle policy) and its log group (the environment's
/// retention).
pub fn prerequisites(env: &Environment, project: &str, c: &Consumer) -> Vec<Resource> {
    let owned = |kind: Kind, name: String, spec| Resource {
        kind,
        name,
        consumer: Some(c.name.clone()),
        spec,
    };
    vec![
        owned(
            Kind::EcrRepository,
            plan::repository(project, &c.name),
            super::repositories::repository_spec(env.keep_images),
        ),
        owned(
            Kind::LogGroup,
            env.log_group(&c.name),
            serde_json::json!({"retentionInDays": env.log_retention_days}),
        ),
    ]
}

/// Makes desired services comparable with live ones: each keeps the desired count the
/// autoscaler (or a person) set, within the manifest's bounds; and where the live answer
/// has no deployment configuration (moto gives none), it is not compared.
pub fn keep_live_counts(desired: &mut [Resource], fleet: &Fleet, live: &LiveState) {
    for r in desired.iter_mut().filter(|r| r.kind == Kind::Service) {
        let (Some(c), Some(svc)) = (fleet.get(&r.name), live.services.get(&r.name)) else {
            continue;
        };
        r.spec["desiredCount"] = Value::from(kept_count(c, svc.desired_count()));
        if svc.deployment_configuration().is_none() {
            if let Some(o) = r.spec.as_object_mut() {
                o.remove("deploymentConfiguration");
            }
        }
    }
}

/// The tag on a service that records what shoal deployed to it: the hash of the normalised
/// task definition and the revision registered for it, `<hash>@<family>:<revision>`. When
/// it still matches, the plan needs no DescribeTaskDefinition for that service.
pub const SPEC_TAG: &str = "shoal:spec";

/// The value of the `shoal:spec` tag for a task definition hash and its ARN.
pub fn spec_tag(hash: &str, task_definition_arn: &str) -> String {
    format!("{hash}@{}", super::rollout::revision(task_definition_arn))
}

/// Reads live state and computes the plan.
pub async fn plan(
    clients: &Clients,
    inputs: &Inputs<'_>,
) -> Result<(Plan, Vec<Resource>, LiveState), DeployError> {
    let mut desired = desired(inputs)?;
    let known: BTreeMap<String, &Value> = desired
        .iter()
        .filter(|r| r.kind == Kind::TaskDefinition)
        .map(|r| (r.name.clone(), &r.spec))
        .collect();
    let mut live = live::read(clients, inputs.env, inputs.project, inputs.fleet, &known).await?;
    keep_live_counts(&mut desired, inputs.fleet, &live);
    let mut plan = plan::diff(&desired, &live.resources);
    live.topics = plan_topics(inputs).await?;
    if let Some(tp) = &live.topics {
        tp.check()?;
        // Creates and changes only: on a broker that other projects share, every topic this
        // fleet does not declare would show as unmanaged; `shoal topics plan` lists them.
        plan.create.extend(tp.plan.create.iter().cloned());
        plan.change.extend(tp.plan.change.iter().cloned());
        plan.unchanged += tp.plan.unchanged;
    }
    Ok((plan, desired, live))
}

/// Puts right the settings of the repositories the plan changes (scan on push, tag
/// immutability, the lifecycle policy), as its fields name them. Returns
/// `<repository> (<settings>)` for each.
async fn converge_repositories(
    clients: &Clients,
    the_plan: &Plan,
    keep_images: u32,
) -> Result<Vec<String>, DeployError> {
    let mut fixed = Vec::new();
    for item in the_plan
        .change
        .iter()
        .filter(|i| i.kind == Kind::EcrRepository)
    {
        let drifted = |prefix: &str| item.fields.iter().any(|f| f.path.starts_with(prefix));
        let drift = super::repositories::Drift {
            scan_on_push: drifted("imageScanningConfiguration"),
            immutable: drifted("imageTagMutability"),
            lifecycle: drifted("lifecyclePolicy"),
        };
        let put =
            super::repositories::converge(&clients.ecr, &item.name, drift, keep_images).await?;
        fixed.push(format!("{} ({})", item.name, put.join(", ")));
    }
    Ok(fixed)
}

/// Applies a plan. Returns the summary of what was done, step by step.
pub async fn apply(
    clients: &Clients,
    inputs: &Inputs<'_>,
    the_plan: &Plan,
    desired: &[Resource],
    live: &LiveState,
    options: &DeployOptions,
) -> Result<Summary, (Summary, DeployError)> {
    let mut summary = Summary::default();
    let env = inputs.env;
    let changed: BTreeSet<(Kind, &str)> = the_plan
        .create
        .iter()
        .chain(&the_plan.change)
        .map(|i| (i.kind, i.name.as_str()))
        .collect();

    step!(summary, "repositories", {
        let wanted: Vec<String> = the_plan
            .create
            .iter()
            .filter(|i| i.kind == Kind::EcrRepository)
            .map(|i| i.name.clone())
            .collect();
        let created = if wanted.is_empty() {
            Ok(0)
        } else {
            super::repositories::ensure_repositories(&clients.ecr, &wanted, env.keep_images)
                .await
                .map(|e| e.created.len())
                .map_err(DeployError::from)
        };
        match created {
            Ok(created) => converge_repositories(clients, the_plan, env.keep_images)
                .await
                .map(|fixed| {
                    let mut detail = format!("{created} created");
                    if !fixed.is_empty() {
                        detail.push_str(&format!("; put right: {}", fixed.join(", ")));
                    }
                    (detail, ())
                }),
            Err(e) => Err(e),
        }
    });

    step!(summary, "log groups", {
        let mut made = 0;
        let mut result = Ok(());
        for r in desired.iter().filter(|r| r.kind == Kind::LogGroup) {
            if !changed.contains(&(Kind::LogGroup, r.name.as_str())) {
                continue;
            }
            made += 1;
            let current = live.log_groups.get(&r.name).copied();
            if let Err(e) = super::log_groups::ensure(
                &clients.logs,
                &r.name,
                env.log_retention_days as i32,
                current,
            )
            .await
            {
                result = Err(DeployError::from(e));
                break;
            }
        }
        result.map(|()| (format!("{made} created or changed"), ()))
    });

    let images = step!(
        summary,
        "images",
        build_images(clients, inputs, &changed, options).await
    );
    summary.record_images(&images);

    step!(
        summary,
        "topics",
        apply_topics(inputs.session, live.topics.as_ref()).await
    );

    let arns = step!(summary, "task definitions", {
        register_changed(clients, inputs, &changed, live).await
    });

    let rollouts = step!(summary, "services", {
        apply_services(clients, inputs, desired, &changed, live, &arns).await
    });

    step!(summary, "rollouts", {
        wait_all(rollouts.iter().map(|(service, arn)| {
            ecs::wait_rollout(&clients.ecs, &env.cluster, service, arn, options.wait)
        }))
        .await
    });

    step!(summary, "alarms", {
        put_alarms(clients, the_plan, desired).await
    });

    step!(summary, "prune", {
        let mut deleted = Vec::new();
        let mut result = Ok(());
        let alarms: Vec<String> = the_plan
            .delete
            .iter()
            .filter(|i| i.kind == Kind::Alarm)
            .map(|i| i.name.clone())
            .collect();
        if options.prune && !alarms.is_empty() {
            match aws::cloudwatch::delete_alarms(&clients.cloudwatch, &alarms).await {
                Ok(()) => deleted.extend(alarms),
                Err(e) => result = Err(DeployError::from(e)),
            }
        }
        for item in the_plan.delete.iter().filter(|i| i.kind == Kind::Service) {
            if result.is_err() {
                break;
            }
            if !options.prune {
                continue;
            }
            match ecs::delete(&clients.ecs, &env.cluster, &item.name).await {
                Ok(()) => deleted.push(item.name.clone()),
                Err(source) => {
                    result = Err(DeployError::Service {
                        consumer: item.name.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        let kept = the_plan.delete.len() - deleted.len();
        result.map(|()| {
            let detail = match (deleted.len(), kept) {
                (0, 0) => "nothing to delete".to_string(),
                (d, 0) => format!("{d} deleted"),
                (d, k) => format!("{d} deleted, {k} kept (pass --prune to delete)"),
            };
            (detail, ())
        })
    });
    summary.services = rollouts.into_iter().map(|(s, _)| s).collect();
    Ok(summary)
}

/// Puts the alarms the plan creates or changes (PutMetricAlarm replaces an alarm whole).
async fn put_alarms(
    clients: &Clients,
    the_plan: &Plan,
    desired: &[Resource],
) -> Result<(String, ()), DeployError> {
    let wanted: BTreeMap<&str, &Value> = desired
        .iter()
        .filter(|r| r.kind == Kind::Alarm)
        .map(|r| (r.name.as_str(), &r.spec))
        .collect();
    let mut put = 0;
    for item in the_plan
        .create
        .iter()
        .chain(&the_plan.change)
        .filter(|i| i.kind == Kind::Alarm)
    {
        let Some(spec) = wanted
            .get(item.name.as_str())
            .and_then(|v| super::alarms::from_json(v))
        else {
            continue;
        };
        aws::cloudwatch::put_alarm(&clients.cloudwatch, &item.name, &spec).await?;
        put += 1;
    }
    Ok((format!("{put} created or changed"), ()))
}

/// Builds and pushes every image that the registry lacks.
async fn build_images(
    clients: &Clients,
    inputs: &Inputs<'_>,
    changed: &BTreeSet<(Kind, &str)>,
    options: &DeployOptions,
) -> Result<(String, image::Report), DeployError> {
    let env = inputs.env;
    // An image is only new when its task definition is: the tag is in the definition, and
    // a definition is registered only after its image was pushed.
    let jobs = image_jobs(inputs, |c| {
        changed.contains(&(
            Kind::TaskDefinition,
            family(inputs.project, &c.name).as_str(),
        ))
    });
    if jobs.is_empty() {
        return Ok(nothing_built());
    }
    let destination = Destination::for_environment(env, clients.ecr.clone()).await?;
    run_image_jobs(inputs, jobs, destination, options.jobs, "built and pushed").await
}

/// Registers the task definitions that changed; returns every consumer's task definition ARN
/// to run (new or live).
async fn register_changed(
    clients: &Clients,
    inputs: &Inputs<'_>,
    changed: &BTreeSet<(Kind, &str)>,
    live: &LiveState,
) -> Result<(String, BTreeMap<String, String>), DeployError> {
    let tags = inputs.tags();
    let target = inputs.target();
    let mut arns = BTreeMap::new();
    let mut registered = 0;
    for c in &inputs.fleet.consumers {
        let fam = family(inputs.project, &c.name);
        if changed.contains(&(Kind::TaskDefinition, fam.as_str())) {
            let tag = tags.get(&c.name).map(String::as_str).unwrap_or_default();
            let image = plan::image_uri(inputs.env, inputs.project, &c.name, tag);
            let rendered = inputs.renderer.render(&target, c, &image)?;
            let r = taskdef::register(&clients.ecs, &rendered).await?;
            info!(consumer = %c.name, revision = r.revision, "registered task definition");
            registered += 1;
            arns.insert(c.name.clone(), r.arn);
        } else if let Some(arn) = live.task_definition_arns.get(&fam) {
            arns.insert(c.name.clone(), arn.clone());
        }
    }
    Ok((format!("{registered} registered"), arns))
}

/// Creates missing services and updates changed ones; returns `(service, task definition)`
/// for every rollout to wait for.
async fn apply_services(
    clients: &Clients,
    inputs: &Inputs<'_>,
    desired: &[Resource],
    changed: &BTreeSet<(Kind, &str)>,
    live: &LiveState,
    arns: &BTreeMap<String, String>,
) -> Result<(String, Vec<(String, String)>), DeployError> {
    let env = inputs.env;
    let of_kind = |kind: Kind| -> BTreeMap<&str, &Value> {
        desired
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| (r.name.as_str(), &r.spec))
            .collect()
    };
    let desired_scaling = of_kind(Kind::Scaling);
    let desired_td = of_kind(Kind::TaskDefinition);
    let mut rollouts = Vec::new();
    let (mut created, mut updated) = (0, 0);
    for c in &inputs.fleet.consumers {
        let Some(arn) = arns.get(&c.name) else {
            continue;
        };
        let err = |source| DeployError::Service {
            consumer: c.name.clone(),
            source,
        };
        let fam = family(inputs.project, &c.name);
        let td_changed = changed.contains(&(Kind::TaskDefinition, fam.as_str()));
        let svc_changed = changed.contains(&(Kind::Service, c.name.as_str()));
        let spec = desired_td
            .get(fam.as_str())
            .map(|v| spec_tag(&crate::render::spec_hash(v), arn))
            .unwrap_or_default();
        let service = ecs::ServiceSpec::desired(env, inputs.project, c);
        let scaling = desired_scaling.get(c.name.as_str()).map(|v| v.to_string());
        match live.services.get(&c.name) {
            None => {
                let mut tags = vec![(SPEC_TAG, spec)];
                tags.extend(scaling.map(|s| (live::SCALING_TAG, s)));
                ecs::create(&clients.ecs, &service, inputs.project, &c.name, arn, &tags)
                    .await
                    .map_err(err)?;
                created += 1;
                rollouts.push((c.name.clone(), arn.clone()));
            }
            Some(svc) => {
                if td_changed || svc_changed {
                    let count = kept_count(c, svc.desired_count());
                    let new_count = (count != svc.desired_count()).then_some(count);
                    ecs::update(&clients.ecs, &service, &c.name, arn, new_count)
                        .await
                        .map_err(err)?;
                    updated += 1;
                    rollouts.push((c.name.clone(), arn.clone()));
                }
                let service_arn = svc.service_arn().unwrap_or_default();
                if ecs::tag(svc, SPEC_TAG) != Some(spec.as_str()) {
                    live::tag_service(&clients.ecs, service_arn, SPEC_TAG, spec)
                        .await
                        .map_err(err)?;
                }
                if let Some(s) = scaling {
                    if changed.contains(&(Kind::Scaling, c.name.as_str())) {
                        live::tag_service(&clients.ecs, service_arn, live::SCALING_TAG, s)
                            .await
                            .map_err(err)?;
                    }
                }
            }
        }
    }
    Ok((format!("{created} created, {updated} updated"), rollouts))
}
