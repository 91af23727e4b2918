//! The ECS platform's commands: `plan` and `deploy` with live state, `status`, and the
//! ECS-only `rollback` and `dashboard`. Each returns a value; `app` renders it.

use super::{rollout, Clients, EcsHands};
use crate::deploy::{AlarmStatus, Ctx, DeployError, DeployOptions, Deployed, Platform, StatusRow};
use crate::plan::Plan;
use crate::platform::logs::{LogQuery, LogSink};
use crate::platform::{ecs, Wait};

/// The ECS platform's commands on a resolved context.
pub struct Ecs<'a>(pub &'a Ctx<'a>);

impl Platform for Ecs<'_> {
    fn place(&self) -> String {
        format!("ecs, cluster {}", self.0.env.cluster)
    }

    async fn plan(&self) -> Result<Plan, DeployError> {
        let ctx = self.0;
        let clients = Clients::from_config(ctx.session.aws().await);
        let (the_plan, _, _) = super::plan(&clients, &ctx.inputs().await?).await?;
        Ok(the_plan)
    }

    async fn deploy(
        &self,
        options: &DeployOptions,
        planned: &mut dyn FnMut(&Plan),
    ) -> Result<Deployed, DeployError> {
        let ctx = self.0;
        let clients = Clients::from_config(ctx.session.aws().await);
        let inputs = ctx.inputs().await?;
        let (the_plan, desired, live) = super::plan(&clients, &inputs).await?;
        planned(&the_plan);
        let result = super::apply(&clients, &inputs, &the_plan, &desired, &live, options).await;
        let (mut summary, failure) = match result {
            Ok(s) => (s, None),
            Err((s, e)) => (s, Some(e)),
        };
        summary.aws_calls = crate::aws::calls();
        Ok(Deployed {
            plan: the_plan,
            summary,
            failure,
        })
    }

    async fn status(&self) -> Result<Vec<StatusRow>, DeployError> {
        let ctx = self.0;
        let clients = Clients::from_config(ctx.session.aws().await);
        let prefix = super::alarms::prefix(ctx.project, ctx.env);
        let (services, alarms) = tokio::try_join!(
            ecs::project_services(&clients.ecs, &ctx.env.cluster, ctx.project),
            crate::aws::cloudwatch::describe_alarms(&clients.cloudwatch, &prefix),
        )?;
        let mut by_consumer: std::collections::BTreeMap<&str, Vec<AlarmStatus>> =
            std::collections::BTreeMap::new();
        for a in &alarms {
            if let Some((consumer, alarm)) = super::alarms::parse(&prefix, &a.name) {
                by_consumer.entry(consumer).or_default().push(AlarmStatus {
                    alarm: alarm.to_string(),
                    state: a.state.state.clone(),
                    reason: a.state.reason.clone(),
                });
            }
        }
        let mut rows = Vec::new();
        for s in &services {
            let td = s.task_definition().unwrap_or_default();
            let image = super::taskdef::describe(&clients.ecs, td)
                .await?
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
            rows.push(StatusRow {
                consumer: s.service_name().unwrap_or_default().to_string(),
                desired: s.desired_count().max(0) as u32,
                running: s.running_count().max(0) as u32,
                pending: Some(s.pending_count().max(0) as u32),
                revision: rollout::revision(td).to_string(),
                image_tag: crate::image::tag_of(&image).unwrap_or("-").to_string(),
                rollout: primary
                    .and_then(|d| d.rollout_state())
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "-".to_string()),
                last_event: rollout::last_events(s, 1).pop(),
                ports: Vec::new(),
                containers: Vec::new(),
                alarms: by_consumer
                    .remove(s.service_name().unwrap_or_default())
                    .unwrap_or_default(),
            });
        }
        rows.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        Ok(rows)
    }

    async fn down(&self) -> Result<Vec<String>, DeployError> {
        let env = &self.0.env.name;
        Err(DeployError::Unsupported {
            what: format!(
                "`shoal down` removes the containers of a docker environment; {env} is on ecs: remove the consumer folders and run `shoal deploy --env {env} --prune`"
            ),
        })
    }

    /// CloudWatch Logs: the consumer's log group.
    async fn logs(&self, query: &LogQuery, sink: &mut LogSink<'_>) -> Result<(), DeployError> {
        let ctx = self.0;
        let client = crate::aws::logs(ctx.session.aws().await);
        super::logs::read_with(&client, ctx.env, query, sink)
            .await
            .map_err(|e| match e {
                super::logs::EcsLogsError::Aws(e) => DeployError::Aws(e),
                other => DeployError::Platform(Box::new(other)),
            })
    }

    type Hands = EcsHands;

    /// The cluster's services, and CloudWatch for the metrics.
    async fn hands(&self) -> Result<EcsHands, DeployError> {
        let ctx = self.0;
        Ok(EcsHands::new(ctx.session.aws().await, &ctx.env.cluster))
    }

    /// One DescribeServices per ten services.
    async fn counts(
        &self,
        services: &[String],
    ) -> Result<std::collections::BTreeMap<String, crate::platform::Counts>, DeployError> {
        let hands = self.hands().await?;
        crate::platform::Scale::counts_many(&hands, services)
            .await
            .map_err(|e| DeployError::Platform(Box::new(e)))
    }
}

/// What `shoal rollback` did.
#[derive(Debug, serde::Serialize)]
pub struct RolledBack {
    pub consumer: String,
    pub from: String,
    pub to: String,
}

/// `shoal rollback CONSUMER`: the service goes back to the revision before its current one.
pub async fn rollback(
    ctx: &Ctx<'_>,
    consumer: &str,
    wait: Wait,
) -> Result<RolledBack, DeployError> {
    let clients = Clients::from_config(ctx.session.aws().await);
    let services = ecs::describe(&clients.ecs, &ctx.env.cluster, &[consumer.to_string()]).await?;
    let Some(service) = services.first() else {
        return Err(DeployError::NoSuchService {
            service: consumer.to_string(),
            cluster: ctx.env.cluster.clone(),
            env: ctx.env.name.clone(),
        });
    };
    let current = service.task_definition().unwrap_or_default().to_string();
    let previous = previous_revision(&clients.ecs, &current)
        .await?
        .ok_or_else(|| DeployError::NoEarlierRevision {
            service: consumer.to_string(),
            revision: rollout::revision(&current).to_string(),
        })?;
    // Only the revision changes: the service keeps the settings it runs with.
    let spec = ecs::ServiceSpec::live(&ctx.env.cluster, service);
    ecs::update(&clients.ecs, &spec, consumer, &previous, None).await?;
    ecs::wait_rollout(&clients.ecs, &ctx.env.cluster, consumer, &previous, wait)
        .await
        .map_err(|e| DeployError::Rollouts(vec![e]))?;
    Ok(RolledBack {
        consumer: consumer.to_string(),
        from: rollout::revision(&current).to_string(),
        to: rollout::revision(&previous).to_string(),
    })
}

/// The newest active revision of the same family below `current`.
async fn previous_revision(
    client: &aws_sdk_ecs::Client,
    current: &str,
) -> Result<Option<String>, crate::aws::AwsError> {
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

/// What `shoal dashboard` put.
#[derive(Debug, serde::Serialize)]
pub struct Dashboard {
    pub dashboard: String,
    pub widgets: usize,
}

/// `shoal dashboard`: PutDashboard with the body from [`super::dashboard`].
pub async fn put_dashboard(ctx: &Ctx<'_>) -> Result<Dashboard, DeployError> {
    let cfg = ctx.session.aws().await;
    let name = super::dashboard::name(ctx.project, ctx.env);
    let body = super::dashboard::body(ctx.project, ctx.env, ctx.fleet);
    crate::aws::cloudwatch::put_dashboard(&crate::aws::cloudwatch(cfg), &name, &body.to_string())
        .await?;
    Ok(Dashboard {
        dashboard: name,
        widgets: body["widgets"].as_array().map_or(0, Vec::len),
    })
}
