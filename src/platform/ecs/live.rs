//! What exists on the ECS platform, read in as few calls as the APIs allow: one paginated
//! DescribeRepositories and a GetLifecyclePolicy per repository of the project (so settings
//! that drifted show in the plan), one paginated DescribeLogGroups under the environment's prefix,
//! ListServices plus DescribeServices ten at a time, one DescribeTaskDefinition per family,
//! and one paginated DescribeAlarms by the environment's alarm prefix.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{Service, Tag};
use futures_util::future::try_join_all;
use serde_json::{json, Value};

use super::taskdef;
use super::Clients;
use crate::aws::{self, AwsError};
use crate::discover::Fleet;
use crate::manifest::Environment;
use crate::plan::{Kind, Live, Resource};
use crate::platform::ecs;
use crate::render::family;

/// The tag on a service that holds its scaling settings, as compact JSON.
pub const SCALING_TAG: &str = "shoal:scaling";

/// Live state: the plan's resources, and what applying needs besides.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub resources: Live,
    /// The project's services, by name (= consumer).
    pub services: BTreeMap<String, Service>,
    /// The active task definition ARN of each family that exists.
    pub task_definition_arns: BTreeMap<String, String>,
    /// Log groups under the environment's prefix, with their retention.
    pub log_groups: BTreeMap<String, Option<i32>>,
    /// The topics' plan and steps, when the fleet declares topics on a broker shoal reaches.
    pub topics: Option<crate::kafka::topics::TopicPlan>,
    /// The environment's alarms (under its prefix), by full name, with their states.
    pub alarms: BTreeMap<String, aws::cloudwatch::AlarmState>,
}

impl LiveState {
    fn task_definition(&mut self, family: &str, consumer: &str, arn: &str, spec: Value) {
        if !arn.is_empty() {
            self.task_definition_arns
                .insert(family.to_string(), arn.to_string());
        }
        self.resources.insert(Resource {
            kind: Kind::TaskDefinition,
            name: family.to_string(),
            consumer: Some(consumer.to_string()),
            spec,
        });
    }
}

/// A repository's live settings, in the shape of [`super::repositories::repository_spec`].
pub fn repository_spec(
    described: &super::repositories::Described,
    lifecycle: &super::repositories::Lifecycle,
) -> Value {
    json!({
        "imageScanningConfiguration": {"scanOnPush": described.scan_on_push},
        "imageTagMutability": if described.immutable { "IMMUTABLE" } else { "MUTABLE" },
        "lifecyclePolicy": lifecycle.to_json(),
    })
}

/// Reads the live state of the fleet's environment. `desired` holds each family's desired
/// (normalised) task definition: a service whose `shoal:spec` tag shows that shoal deployed
/// exactly that definition, at the revision the service still runs, needs no
/// DescribeTaskDefinition.
pub async fn read(
    clients: &Clients,
    env: &Environment,
    project: &str,
    fleet: &Fleet,
    desired: &BTreeMap<String, &Value>,
) -> Result<LiveState, AwsError> {
    let alarm_prefix = super::alarms::prefix(project, env);
    let (repos, log_groups, services, alarms) = tokio::try_join!(
        super::repositories::described(&clients.ecr),
        super::log_groups::groups(&clients.logs, &env.log_group_prefix),
        ecs::project_services(&clients.ecs, &env.cluster, project),
        aws::cloudwatch::describe_alarms(&clients.cloudwatch, &alarm_prefix),
    )?;
    let mut state = LiveState {
        log_groups,
        ..LiveState::default()
    };
    for a in alarms {
        let consumer = super::alarms::parse(&alarm_prefix, &a.name).map(|(c, _)| c.to_string());
        state.resources.insert(Resource {
            kind: Kind::Alarm,
            name: a.name.clone(),
            consumer,
            spec: super::alarms::to_json(&a.spec),
        });
        state.alarms.insert(a.name, a.state);
    }
    let prefix = format!("{project}/");
    let ours: Vec<(&String, &super::repositories::Described)> = repos
        .iter()
        .filter(|(r, _)| r.starts_with(&prefix))
        .collect();
    let policies = try_join_all(
        ours.iter()
            .map(|(name, _)| super::repositories::lifecycle(&clients.ecr, name)),
    )
    .await?;
    for ((name, described), lifecycle) in ours.into_iter().zip(policies) {
        let consumer = name.trim_start_matches(&prefix).to_string();
        state.resources.insert(Resource {
            kind: Kind::EcrRepository,
            name: name.clone(),
            consumer: Some(consumer),
            spec: repository_spec(described, &lifecycle),
        });
    }
    // Only the fleet's own groups: other projects may share the prefix, and a log group is
    // never deleted by a deploy anyway.
    for c in &fleet.consumers {
        let name = env.log_group(&c.name);
        let Some(retention) = state.log_groups.get(&name) else {
            continue;
        };
        let consumer = c.name.clone();
        state.resources.insert(Resource {
            kind: Kind::LogGroup,
            name: name.clone(),
            consumer: Some(consumer),
            spec: json!({ "retentionInDays": retention }),
        });
    }
    let by_name: BTreeMap<&str, &Service> = services
        .iter()
        .filter_map(|s| Some((s.service_name()?, s)))
        .collect();
    let mut unknown = Vec::new();
    for c in &fleet.consumers {
        let fam = family(project, &c.name);
        let recorded = by_name.get(c.name.as_str()).and_then(|svc| {
            let arn = svc.task_definition()?;
            let spec = desired.get(&fam)?;
            let want = super::spec_tag(&crate::render::spec_hash(spec), arn);
            (ecs::tag(svc, super::SPEC_TAG) == Some(want.as_str())).then_some((arn, *spec))
        });
        match recorded {
            Some((arn, spec)) => state.task_definition(&fam, &c.name, arn, spec.clone()),
            // The definition the service runs (after a rollback, not the family's newest),
            // or the family's newest when there is no service yet.
            None => {
                let running = by_name
                    .get(c.name.as_str())
                    .and_then(|svc| svc.task_definition())
                    .map(str::to_string);
                unknown.push((fam, c.name.clone(), running));
            }
        }
    }
    let described = try_join_all(unknown.iter().map(|(fam, _, running)| {
        taskdef::describe(&clients.ecs, running.as_deref().unwrap_or(fam))
    }))
    .await?;
    for ((fam, consumer, _), td) in unknown.into_iter().zip(described) {
        let Some(td) = td else { continue };
        let arn = td
            .get("taskDefinitionArn")
            .and_then(Value::as_str)
            .unwrap_or_default();
        state.task_definition(&fam, &consumer, arn, taskdef::normalize(&td));
    }
    for svc in services {
        let Some(name) = svc.service_name().map(str::to_string) else {
            continue;
        };
        state.resources.insert(Resource {
            kind: Kind::Service,
            name: name.clone(),
            consumer: Some(name.clone()),
            spec: ecs::ServiceSpec::live(&env.cluster, &svc).to_json(),
        });
        if let Some(spec) = ecs::tag(&svc, SCALING_TAG).and_then(|t| serde_json::from_str(t).ok()) {
            state.resources.insert(Resource {
                kind: Kind::Scaling,
                name: name.clone(),
                consumer: Some(name.clone()),
                spec,
            });
        }
        state.services.insert(name, svc);
    }
    Ok(state)
}

/// Sets one tag on a service.
pub async fn tag_service(
    client: &aws_sdk_ecs::Client,
    service_arn: &str,
    key: &str,
    value: String,
) -> Result<(), AwsError> {
    client
        .tag_resource()
        .resource_arn(service_arn)
        .tags(Tag::builder().key(key).value(value).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ECS", "TagResource", e))?;
    Ok(())
}
