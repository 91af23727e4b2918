//! The ECS commands: `plan` with live state, `deploy`, `status` and `rollback`.

use serde_json::{json, Value};

use super::{rollout, Clients, Options};
use crate::cli::Output;
use crate::deploy::{print_status, report_deploy, Ctx};
use crate::error::{block_on, exit, Error, Result};
use crate::plan;
use crate::platform::ecs;
use crate::report;

/// The ECS platform's commands on a resolved context.
pub struct Ecs<'a>(pub &'a Ctx<'a>);

impl crate::platform::Platform for Ecs<'_> {
    fn plan(&self) -> Result<i32> {
        plan(self.0)
    }

    fn deploy(&self, options: &crate::platform::DeployOptions) -> Result<i32> {
        deploy(
            self.0,
            &Options {
                prune: options.prune,
                jobs: options.jobs,
                wait: crate::platform::Wait::with_timeout(options.timeout),
            },
        )
    }

    fn status(&self) -> Result<i32> {
        status(self.0)
    }

    fn down(&self) -> Result<i32> {
        Err(Error::Usage(format!(
            "`shoal down` removes the containers of a docker environment; {} is on ecs: remove the consumer folders and run `shoal deploy --env {} --prune`",
            self.0.env.name, self.0.env.name
        )))
    }
}

/// A plan's heading on ECS: what, and which cluster.
fn heading(ctx: &Ctx<'_>, verb: &str) -> String {
    ctx.heading_at(verb, &format!("ecs, cluster {}", ctx.env.cluster))
}

/// `shoal plan` on ECS: desired against live.
pub fn plan(ctx: &Ctx<'_>) -> Result<i32> {
    block_on(async {
        let clients = Clients::new(ctx.env).await;
        let (the_plan, _, _) = super::plan(&clients, &ctx.inputs().await?).await?;
        if ctx.output == Output::Json {
            let v = plan::to_json(&the_plan, ctx.project, &ctx.env.name);
            report::outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print_plan(ctx, &the_plan, "Plan");
        }
        Ok(exit::OK)
    })?
}

fn print_plan(ctx: &Ctx<'_>, the_plan: &plan::Plan, verb: &str) {
    if ctx.output == Output::Json {
        return;
    }
    report::out(&plan::print_text(the_plan, &heading(ctx, verb)));
}

/// `shoal deploy` on ECS: plan, print, apply, wait, summarise.
pub fn deploy(ctx: &Ctx<'_>, options: &Options) -> Result<i32> {
    block_on(async {
        let clients = Clients::new(ctx.env).await;
        let inputs = ctx.inputs().await?;
        let (the_plan, desired, live) = super::plan(&clients, &inputs).await?;
        print_plan(ctx, &the_plan, "Deploy");
        let result = super::apply(&clients, &inputs, &the_plan, &desired, &live, options).await;
        let (mut summary, failure) = match result {
            Ok(s) => (s, None),
            Err((s, e)) => (s, Some(e)),
        };
        summary.aws_calls = crate::aws::calls();
        report_deploy(ctx, &the_plan, &summary, failure)
    })?
}

/// One row of `shoal status`.
#[derive(Debug, serde::Serialize)]
struct Row {
    consumer: String,
    desired: i32,
    running: i32,
    pending: i32,
    revision: String,
    image_tag: String,
    rollout: String,
    last_event: String,
}

/// `shoal status` on ECS: a row per service of the project.
pub fn status(ctx: &Ctx<'_>) -> Result<i32> {
    block_on(async {
        let clients = Clients::new(ctx.env).await;
        let services = ecs::project_services(&clients.ecs, &ctx.env.cluster, ctx.project)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let mut rows = Vec::new();
        for s in &services {
            let td = s.task_definition().unwrap_or_default();
            let image = super::taskdef::describe(&clients.ecs, td)
                .await
                .map_err(|e| Error::Failed(e.to_string()))?
                .and_then(|v| {
                    v["containerDefinitions"][0]["image"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let primary = s
                .deployments()
                .iter()
                .find(|d| d.status() == Some("PRIMARY"));
            rows.push(Row {
                consumer: s.service_name().unwrap_or_default().to_string(),
                desired: s.desired_count(),
                running: s.running_count(),
                pending: s.pending_count(),
                revision: rollout::revision(td).to_string(),
                image_tag: image
                    .rsplit_once(':')
                    .map(|(_, t)| t)
                    .unwrap_or("-")
                    .to_string(),
                rollout: primary
                    .and_then(|d| d.rollout_state())
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "-".to_string()),
                last_event: rollout::last_events(s, 1).pop().unwrap_or_default(),
            });
        }
        rows.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        print_status(
            ctx.output,
            json!({ "project": ctx.project, "environment": ctx.env.name }),
            &rows,
            &format!(
                "No services of project {} in cluster {}; run `shoal deploy --env {}`.",
                ctx.project, ctx.env.cluster, ctx.env.name
            ),
            &[
                "CONSUMER",
                "DESIRED/RUN/PEND",
                "REVISION",
                "IMAGE TAG",
                "ROLLOUT",
                "LAST EVENT",
            ],
            |r| {
                vec![
                    r.consumer.clone(),
                    format!("{}/{}/{}", r.desired, r.running, r.pending),
                    r.revision.clone(),
                    r.image_tag.clone(),
                    r.rollout.clone(),
                    r.last_event.clone(),
                ]
            },
        );
        Ok(exit::OK)
    })?
}

/// `shoal rollback CONSUMER`: the service goes back to the revision before its current one.
pub fn rollback(ctx: &Ctx<'_>, consumer: &str, wait: crate::platform::Wait) -> Result<i32> {
    block_on(async {
        let clients = Clients::new(ctx.env).await;
        let services = ecs::describe(&clients.ecs, &ctx.env.cluster, &[consumer.to_string()])
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let Some(service) = services.first() else {
            return Err(Error::Usage(format!(
                "no service {consumer:?} in cluster {}; `shoal status --env {}` lists them",
                ctx.env.cluster, ctx.env.name
            )));
        };
        let current = service.task_definition().unwrap_or_default().to_string();
        let previous = previous_revision(&clients.ecs, &current)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .ok_or_else(|| {
                Error::Failed(format!(
                    "{consumer} runs {}, and there is no earlier active revision to return to",
                    rollout::revision(&current)
                ))
            })?;
        ecs::update(&clients.ecs, ctx.env, consumer, &previous, None)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        ecs::wait_rollout(&clients.ecs, &ctx.env.cluster, consumer, &previous, wait)
            .await
            .map_err(|e| Error::Rollout(e.to_string()))?;
        let v: Value = json!({
            "consumer": consumer,
            "from": rollout::revision(&current),
            "to": rollout::revision(&previous),
        });
        if ctx.output == Output::Json {
            report::outln(&v.to_string());
        } else {
            report::outln(&format!(
                "{consumer}: rolled back from {} to {}",
                rollout::revision(&current),
                rollout::revision(&previous)
            ));
        }
        Ok(exit::OK)
    })?
}

/// The newest active revision of the same family below `current`.
async fn previous_revision(
    client: &aws_sdk_ecs::Client,
    current: &str,
) -> std::result::Result<Option<String>, crate::aws::AwsError> {
    let rev = rollout::revision(current);
    let Some((family, number)) = rev.rsplit_once(':') else {
        return Ok(None);
    };
    let number: i64 = number.parse().unwrap_or(0);
    let mut pages = client
        .list_task_definitions()
        .family_prefix(family)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| crate::aws::AwsError::from_sdk("ECS", "ListTaskDefinitions", e))?;
        for arn in page.task_definition_arns() {
            let Some((fam, n)) = rollout::revision(arn).rsplit_once(':') else {
                continue;
            };
            if fam == family && n.parse::<i64>().is_ok_and(|n| n < number) {
                return Ok(Some(arn.clone()));
            }
        }
    }
    Ok(None)
}

/// `shoal dashboard`: PutDashboard with the body from [`super::dashboard`].
pub fn put_dashboard(ctx: &Ctx<'_>) -> Result<i32> {
    block_on(async {
        let cfg = crate::aws::sdk_config(ctx.env).await;
        let name = super::dashboard::name(ctx.project, ctx.env);
        let body = super::dashboard::body(ctx.project, ctx.env, ctx.fleet);
        crate::aws::cloudwatch::put_dashboard(
            &crate::aws::cloudwatch(&cfg),
            &name,
            &body.to_string(),
        )
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
        let widgets = body["widgets"].as_array().map_or(0, Vec::len);
        if ctx.output == Output::Json {
            report::outln(&json!({"dashboard": name, "widgets": widgets}).to_string());
        } else {
            report::outln(&format!("dashboard {name}: {widgets} graphs"));
        }
        Ok(exit::OK)
    })?
}
