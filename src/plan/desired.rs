//! The desired resources of a fleet in one environment.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Kind, Resource};
use crate::discover::Fleet;
use crate::manifest::{Consumer, Environment};
use crate::render::{family, RenderError, Renderer, Target};

/// What the desired state is computed from.
pub struct DesiredInputs<'a> {
    pub target: Target<'a>,
    pub fleet: &'a Fleet,
    pub renderer: &'a Renderer,
    /// The image tag (content hash) of each consumer.
    pub tags: &'a BTreeMap<String, String>,
    /// The platform's spec of a consumer's service (for ECS, `platform::ecs::ServiceSpec`).
    pub service: &'a dyn Fn(&Consumer) -> serde_json::Value,
    /// The platform's own resources a consumer needs before its task definition, in the
    /// order they are applied (for ECS its ECR repository and log group,
    /// `platform::ecs::prerequisites`).
    pub prerequisites: &'a dyn Fn(&Consumer) -> Vec<Resource>,
}

/// The repository of a consumer's images, in ECR or any registry: `<project>/<consumer>`.
pub fn repository(project: &str, consumer: &str) -> String {
    format!("{project}/{consumer}")
}

/// The full image reference of a consumer at a tag.
pub fn image_uri(env: &Environment, project: &str, consumer: &str, tag: &str) -> String {
    format!(
        "{}/{}:{tag}",
        env.registry_host(),
        repository(project, consumer)
    )
}

/// Every resource the fleet needs: shared topics first, then each consumer's resources in
/// the order they are applied.
pub fn desired(inputs: &DesiredInputs<'_>) -> Result<Vec<Resource>, RenderError> {
    let env = inputs.target.env;
    let project = inputs.target.project;
    let mut out = Vec::new();
    let mut topics = BTreeMap::new();
    for c in &inputs.fleet.consumers {
        for t in &c.topics {
            topics.entry(t.name.clone()).or_insert_with(|| Resource {
                kind: Kind::Topic,
                name: t.name.clone(),
                consumer: None,
                spec: json!({
                    "partitions": t.partitions,
                    "replicationFactor": t.replication,
                    "config": t.config,
                }),
            });
        }
    }
    out.extend(topics.into_values());
    for c in &inputs.fleet.consumers {
        let tag = inputs.tags.get(&c.name).map(String::as_str).unwrap_or("");
        let image = image_uri(env, project, &c.name, tag);
        let owned = |kind: Kind, name: String, spec| Resource {
            kind,
            name,
            consumer: Some(c.name.clone()),
            spec,
        };
        out.extend((inputs.prerequisites)(c));
        let task = inputs.renderer.render(&inputs.target, c, &image)?;
        out.push(owned(Kind::TaskDefinition, family(project, &c.name), task));
        out.push(owned(Kind::Service, c.name.clone(), (inputs.service)(c)));
        if let (Some(s), Some(k)) = (c.scaling, &c.kafka) {
            out.push(owned(
                Kind::Scaling,
                c.name.clone(),
                json!({
                    "min": s.min,
                    "max": s.max,
                    "maxLagSeconds": s.max_lag_seconds,
                    "group": k.group,
                    "topics": k.topics,
                }),
            ));
        }
    }
    Ok(out)
}
