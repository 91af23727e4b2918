//! CloudWatch metrics: the autoscaler publishes `ConsumerLag`, `ConsumerLagSeconds` and
//! `DesiredCount` per service, batched into as few PutMetricData calls as the API allows.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;

use super::AwsError;

/// The namespace of shoal's metrics.
pub const NAMESPACE: &str = "Shoal";

/// PutMetricData takes at most this many data points per call.
pub const BATCH: usize = 1000;

/// One data point for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub project: String,
    pub service: String,
    pub value: f64,
    pub unit: Unit,
}

/// The units shoal's metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Metric {
    fn datum(&self) -> MetricDatum {
        MetricDatum::builder()
            .metric_name(self.name)
            .dimensions(
                Dimension::builder()
                    .name("Project")
                    .value(&self.project)
                    .build(),
            )
            .dimensions(
                Dimension::builder()
                    .name("Service")
                    .value(&self.service)
                    .build(),
            )
            .value(self.value)
            .unit(match self.unit {
                Unit::Count => StandardUnit::Count,
                Unit::Seconds => StandardUnit::Seconds,
            })
            .build()
    }
}

/// Publishes the metrics, [`BATCH`] per call. Returns the number of calls made.
pub async fn publish(client: &Client, metrics: &[Metric]) -> Result<usize, AwsError> {
    let mut calls = 0;
    for batch in metrics.chunks(BATCH) {
        client
            .put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(batch.iter().map(Metric::datum).collect()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CloudWatch", "PutMetricData", e))?;
        calls += 1;
    }
    Ok(calls)
}

/// Creates or replaces a dashboard.
pub async fn put_dashboard(client: &Client, name: &str, body: &str) -> Result<(), AwsError> {
    let answer = client
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CloudWatch", "PutDashboard", e))?;
    let problems: Vec<String> = answer
        .dashboard_validation_messages()
        .iter()
        .filter_map(|m| m.message().map(str::to_string))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AwsError::Other {
            service: "CloudWatch",
            operation: "PutDashboard",
            problem: problems.join("; "),
        })
    }
}
