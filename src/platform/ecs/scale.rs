//! The autoscaler's hands on ECS: reads and sets services' desired counts.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Service;

use crate::platform::{Counts, Scale, ScaleError};

/// Desired counts on ECS.
#[derive(Debug, Clone)]
pub struct EcsServices {
    pub client: aws_sdk_ecs::Client,
    pub cluster: String,
}

impl Scale for EcsServices {
    async fn counts(&self, service: &str) -> Result<Counts, ScaleError> {
        let found = super::describe(&self.client, &self.cluster, &[service.to_string()]).await?;
        found
            .first()
            .map(counts_of)
            .ok_or_else(|| ScaleError::NoService {
                service: service.to_string(),
                cluster: self.cluster.clone(),
            })
    }

    /// One DescribeServices per ten services.
    async fn counts_many(
        &self,
        services: &[String],
    ) -> Result<BTreeMap<String, Counts>, ScaleError> {
        let found = super::describe(&self.client, &self.cluster, services).await?;
        Ok(found
            .iter()
            .filter_map(|s| Some((s.service_name()?.to_string(), counts_of(s))))
            .collect())
    }

    async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
        let count = i32::try_from(count)?;
        super::set_desired_count(&self.client, &self.cluster, service, count).await?;
        Ok(())
    }
}

/// A service's desired and running counts (ECS gives them as `i32`; below 0 reads as 0).
fn counts_of(s: &Service) -> Counts {
    Counts {
        desired: s.desired_count().max(0) as u32,
        running: s.running_count().max(0) as u32,
    }
}
