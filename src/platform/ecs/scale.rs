//! The autoscaler's hands on ECS: reads and sets services' desired counts, and publishes
//! its metrics to CloudWatch.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Service;

use crate::aws::cloudwatch::Metric;
use crate::aws::AwsError;
use crate::platform::{Counts, Publish, Scale, ScaleError};

/// The autoscaler's hands on ECS: the cluster's services and CloudWatch.
#[derive(Debug, Clone)]
pub struct EcsHands {
    pub services: EcsServices,
    pub metrics: CloudWatchMetrics,
}

impl EcsHands {
    pub fn new(cfg: &aws_config::SdkConfig, cluster: &str) -> EcsHands {
        EcsHands {
            services: EcsServices {
                client: crate::aws::ecs(cfg),
                cluster: cluster.to_string(),
            },
            metrics: CloudWatchMetrics(crate::aws::cloudwatch(cfg)),
        }
    }
}

impl Scale for EcsHands {
    async fn counts(&self, service: &str) -> Result<Counts, ScaleError> {
        self.services.counts(service).await
    }

    async fn counts_many(
        &self,
        services: &[String],
    ) -> Result<BTreeMap<String, Counts>, ScaleError> {
        self.services.counts_many(services).await
    }

    async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
        self.services.set(service, count).await
    }
}

impl Publish for EcsHands {
    async fn publish(&self, metrics: Vec<Metric>) -> Result<(), AwsError> {
        self.metrics.publish(metrics).await
    }
}

/// Metrics to CloudWatch (PutMetricData).
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics(pub aws_sdk_cloudwatch::Client);

impl Publish for CloudWatchMetrics {
    async fn publish(&self, metrics: Vec<Metric>) -> Result<(), AwsError> {
        crate::aws::cloudwatch::publish(&self.0, &metrics)
            .await
            .map(|_| ())
    }
}

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
