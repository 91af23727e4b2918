//! The autoscaler's hands on ECS: reads and sets services' desired counts.

use std::collections::BTreeMap;

use tracing::warn;

use crate::platform::{Scale, ScaleError};

/// Desired counts on ECS.
#[derive(Debug, Clone)]
pub struct EcsServices {
    pub client: aws_sdk_ecs::Client,
    pub cluster: String,
}

impl Scale for EcsServices {
    async fn current(&self, service: &str) -> Result<u32, ScaleError> {
        let found = super::describe(&self.client, &self.cluster, &[service.to_string()]).await?;
        found
            .first()
            .map(|s| s.desired_count().max(0) as u32)
            .ok_or_else(|| ScaleError::NoService {
                service: service.to_string(),
                cluster: self.cluster.clone(),
            })
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

    async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
        let count = i32::try_from(count)?;
        super::set_desired_count(&self.client, &self.cluster, service, count).await?;
        Ok(())
    }
}
