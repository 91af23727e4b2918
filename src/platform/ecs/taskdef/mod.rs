//! ECS task definitions: shoal's rendered JSON (the shape of ECS's RegisterTaskDefinition
//! request, camelCase) to and from the SDK's types, and [`normalize`], the form in which a
//! rendered definition and the active revision are compared.
//!
//! The conversion covers the fields Fargate workloads commonly use (see `TASK_KEYS`,
//! `CONTAINER_KEYS`). Anything else in the JSON is an error that names the key: a field that
//! shoal silently dropped would be a deploy that does not do what the template says.
//!
//! - `to_sdk`: rendered JSON → the SDK's request types ([`from_json`]), every problem at once;
//! - `from_sdk`: a described task definition → JSON ([`to_json`]);
//! - `normalize`: the comparable form of either ([`normalize`]).

mod from_sdk;
mod normalize;
mod to_sdk;

use aws_sdk_ecs::types::TaskDefinitionField;
use serde_json::Value;

pub use from_sdk::{to_json, UNMANAGED};
pub use normalize::normalize;
pub use to_sdk::{from_json, ConvertError, Problem, ProblemKind};

use crate::aws::AwsError;

const ECS: &str = "ECS";

/// A registered revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub arn: String,
    pub family: String,
    pub revision: i32,
}

/// Registers a rendered task definition as a new revision of its family. The JSON is
/// converted first, so a definition shoal cannot convert fails before any call.
pub async fn register(client: &aws_sdk_ecs::Client, td: &Value) -> Result<Registered, AwsError> {
    const OP: &str = "RegisterTaskDefinition";
    let (def, tags) = from_json(td).map_err(|e| AwsError::Request(Box::new(e)))?;
    let out = client
        .register_task_definition()
        .set_family(def.family)
        .set_task_role_arn(def.task_role_arn)
        .set_execution_role_arn(def.execution_role_arn)
        .set_network_mode(def.network_mode)
        .set_requires_compatibilities(def.requires_compatibilities)
        .set_cpu(def.cpu)
        .set_memory(def.memory)
        .set_runtime_platform(def.runtime_platform)
        .set_ephemeral_storage(def.ephemeral_storage)
        .set_volumes(def.volumes)
        .set_container_definitions(def.container_definitions)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(ECS, OP, e))?;
    let td = out
        .task_definition
        .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinition"))?;
    Ok(Registered {
        arn: td
            .task_definition_arn
            .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinitionArn"))?,
        family: td
            .family
            .ok_or_else(|| AwsError::missing(ECS, OP, "family"))?,
        revision: td.revision,
    })
}

/// The active revision of a family (or the revision an ARN or `family:revision` names), in
/// the JSON shape of [`to_json`], with its tags; `None` when there is no such task definition.
pub async fn describe(
    client: &aws_sdk_ecs::Client,
    family_or_arn: &str,
) -> Result<Option<Value>, AwsError> {
    const OP: &str = "DescribeTaskDefinition";
    let result = client
        .describe_task_definition()
        .task_definition(family_or_arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    match result {
        Ok(out) => {
            let td = out
                .task_definition
                .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinition"))?;
            Ok(Some(to_json(&td, out.tags.as_deref().unwrap_or_default())))
        }
        // ECS (and moto) answer an unknown family or revision with a ClientException
        // "Unable to describe task definition." rather than a dedicated code.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_client_exception()
                    && s.meta()
                        .message()
                        .is_some_and(|m| m.starts_with("Unable to describe task definition"))
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsError::from_sdk(ECS, OP, e)),
    }
}

#[cfg(test)]
mod tests;
