//! The autoscaler's hands on ECS: reads and sets services' desired counts.

use std::collections::BTreeMap;

use tracing::warn;

use crate::platform::Scale;

/// Desired counts on ECS.
#[derive(Debug, Clone)]
pub struct EcsServices {
    pub client: aws_sdk_ecs::Client,
    pub cluster: String,
}

impl Scale for EcsServices {
    async fn current(&self, service: &str) -> Result<u32, String> {
        let found = super::describe(&self.client, &self.cluster, &[service.to_string()])
            .await
            .map_err(|e| e.to_string())?;
        found
            .first()
            .map(|s| s.desired_count().max(0) as u32)
            .ok_or_else(|| format!("no service {service} in cluster {}", self.cluster))
    }

    /// One DescribeServices per ten services.
    async fn current_many(&self, services: &[String]) -> BTreeMap<String, u32> {
        match super::describe(&self.client, &self.cluster, services).await {
            Ok(found) => found
                .iter()
                .filter_map(|s| {
                    Some((
                        s.service_name()?.to_string(),
                        s.desired_count().max(0) as u32,
                    ))
                })
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot read the desired counts");
                BTreeMap::new()
            }
        }
    }

    async fn set(&self, service: &str, count: u32) -> Result<(), String> {
        let count = i32::try_from(count).map_err(|e| e.to_string())?;
        super::set_desired_count(&self.client, &self.cluster, service, count)
            .await
            .map_err(|e| e.to_string())
    }
}
