//! ECS services: read them in batches, create and update them, wait for their rollouts, and
//! scale down and delete the ones whose consumer folder is gone.

use std::time::Instant;

use aws_sdk_ecs::types::{LaunchType, PropagateTags, Service, ServiceField, Tag};
use aws_sdk_ecs::Client;
use tracing::{debug, info};

use super::rollout::{self, Progress};
use super::spec::ServiceSpec;
use crate::aws::AwsError;
use crate::platform::{RolloutError, Wait};

/// DescribeServices takes at most this many services per call.
pub const DESCRIBE_BATCH: usize = 10;

/// The tag that marks a service as shoal's, with the project as its value.
pub const PROJECT_TAG: &str = "shoal:project";
/// The tag that names the consumer a service runs.
pub const CONSUMER_TAG: &str = "shoal:consumer";

/// Describes services by name, ten per call, with their tags. Services that do not exist
/// (or are INACTIVE, i.e. deleted) are left out.
pub async fn describe(
    client: &Client,
    cluster: &str,
    names: &[String],
) -> Result<Vec<Service>, AwsError> {
    let mut out = Vec::new();
    for batch in names.chunks(DESCRIBE_BATCH) {
        let answer = client
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ECS", "DescribeServices", e))?;
        out.extend(
            answer
                .services()
                .iter()
                .filter(|s| s.status() != Some("INACTIVE"))
                .cloned(),
        );
    }
    Ok(out)
}

/// Every active service of the cluster that carries this project's tag.
pub async fn project_services(
    client: &Client,
    cluster: &str,
    project: &str,
) -> Result<Vec<Service>, AwsError> {
    let mut arns = Vec::new();
    let mut pages = client
        .list_services()
        .cluster(cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("ECS", "ListServices", e))?;
        arns.extend(page.service_arns().iter().cloned());
    }
    let services = describe(client, cluster, &arns).await?;
    Ok(services
        .into_iter()
        .filter(|s| tag(s, PROJECT_TAG) == Some(project))
        .collect())
}

/// The value of one tag of a service.
pub fn tag<'s>(service: &'s Service, key: &str) -> Option<&'s str> {
    service
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

/// Creates the service `spec` describes, running `task_definition` (an ARN or
/// `family:revision`), tagged with the project, the consumer and `extra_tags`.
pub async fn create(
    client: &Client,
    spec: &ServiceSpec,
    project: &str,
    consumer: &str,
    task_definition: &str,
    extra_tags: &[(&str, String)],
) -> Result<Service, AwsError> {
    let desired_count = spec.desired_count;
    info!(
        service = consumer,
        task_definition, desired_count, "creating service"
    );
    let tags = [(PROJECT_TAG, project), (CONSUMER_TAG, consumer)]
        .into_iter()
        .chain(extra_tags.iter().map(|(k, v)| (*k, v.as_str())))
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let answer = client
        .create_service()
        .cluster(&spec.cluster)
        .service_name(consumer)
        .task_definition(task_definition)
        .desired_count(desired_count)
        .launch_type(LaunchType::from(spec.launch_type.as_str()))
        .network_configuration(spec.network().map_err(|e| invalid("CreateService", e))?)
        .set_deployment_configuration(spec.deployment())
        .set_tags(Some(tags))
        .propagate_tags(PropagateTags::Service)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ECS", "CreateService", e))?;
    answer
        .service
        .ok_or_else(|| AwsError::missing("ECS", "CreateService", "service"))
}

/// Points a service at a task definition and (when given) a desired count, with the network
/// and deployment settings of `spec`.
pub async fn update(
    client: &Client,
    spec: &ServiceSpec,
    name: &str,
    task_definition: &str,
    desired_count: Option<i32>,
) -> Result<Service, AwsError> {
    info!(
        service = name,
        task_definition,
        ?desired_count,
        "updating service"
    );
    let answer = client
        .update_service()
        .cluster(&spec.cluster)
        .service(name)
        .task_definition(task_definition)
        .set_desired_count(desired_count)
        .network_configuration(spec.network().map_err(|e| invalid("UpdateService", e))?)
        .set_deployment_configuration(spec.deployment())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ECS", "UpdateService", e))?;
    answer
        .service
        .ok_or_else(|| AwsError::missing("ECS", "UpdateService", "service"))
}

/// A request the SDK would not build, named by its operation.
fn invalid(operation: &'static str, e: aws_sdk_ecs::error::BuildError) -> AwsError {
    AwsError::Other {
        service: "ECS",
        operation,
        problem: e.to_string(),
    }
}

/// Sets only the desired count (the autoscaler's one call).
pub async fn set_desired_count(
    client: &Client,
    cluster: &str,
    name: &str,
    desired_count: i32,
) -> Result<(), AwsError> {
    client
        .update_service()
        .cluster(cluster)
        .service(name)
        .desired_count(desired_count)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ECS", "UpdateService", e))?;
    Ok(())
}

/// Scales a service to zero, then deletes it.
pub async fn delete(client: &Client, cluster: &str, name: &str) -> Result<(), AwsError> {
    info!(service = name, "scaling to 0 and deleting");
    set_desired_count(client, cluster, name, 0).await?;
    client
        .delete_service()
        .cluster(cluster)
        .service(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ECS", "DeleteService", e))?;
    Ok(())
}

/// Waits until the deployment of `task_definition` completes. A rollback, a failed
/// deployment or the timeout is an error naming the service, the reason and ECS's last events.
pub async fn wait_rollout(
    client: &Client,
    cluster: &str,
    name: &str,
    task_definition: &str,
    wait: Wait,
) -> Result<(), RolloutError> {
    let start = Instant::now();
    loop {
        let services = describe(client, cluster, &[name.to_string()])
            .await
            .map_err(|source| RolloutError::Aws {
                service: name.to_string(),
                source,
            })?;
        let Some(service) = services.first() else {
            return Err(RolloutError::Gone {
                service: name.to_string(),
            });
        };
        match rollout::assess(service, task_definition) {
            Progress::Done => {
                info!(
                    service = name,
                    task_definition,
                    seconds = start.elapsed().as_secs_f64(),
                    "rollout completed"
                );
                return Ok(());
            }
            Progress::Failed(reason) => {
                return Err(RolloutError::Failed {
                    service: name.to_string(),
                    reason,
                    events: rollout::last_events(service, 5),
                })
            }
            Progress::Pending(state) => {
                debug!(service = name, %state, "rollout in progress");
                if start.elapsed() >= wait.timeout {
                    return Err(RolloutError::TimedOut {
                        service: name.to_string(),
                        seconds: wait.timeout.as_secs(),
                        state,
                        events: rollout::last_events(service, 5),
                    });
                }
            }
        }
        tokio::time::sleep(wait.poll).await;
    }
}
