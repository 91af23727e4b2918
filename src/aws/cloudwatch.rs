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

/// One CloudWatch metric alarm as shoal writes it: every alarm is a list of metric queries
/// (one metric, or metrics and a math expression), so one shape covers all of them. The same
/// struct is built from a manifest and read back from DescribeAlarms, and the plan compares
/// the two as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSpec {
    pub description: String,
    pub queries: Vec<AlarmQuery>,
    /// `GreaterThanThreshold`, `LessThanThreshold`, ...
    pub comparison: String,
    pub threshold: f64,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    /// `breaching`, `notBreaching`, `ignore` or `missing`.
    pub treat_missing_data: String,
    /// SNS topics told on ALARM and on OK.
    pub actions: Vec<String>,
}

/// One query of an alarm: a metric with a statistic, or an expression over other queries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmQuery {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<AlarmMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// The query whose value is compared with the threshold.
    pub return_data: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmMetric {
    pub namespace: String,
    pub name: String,
    pub dimensions: std::collections::BTreeMap<String, String>,
    pub stat: String,
    pub period: i32,
}

/// An alarm's state, as DescribeAlarms gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlarmState {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
}

/// What DescribeAlarms said about one alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAlarm {
    pub name: String,
    pub spec: AlarmSpec,
    pub state: AlarmState,
}

/// DeleteAlarms takes at most this many names per call.
pub const DELETE_BATCH: usize = 100;

impl AlarmSpec {
    fn from_sdk(a: &aws_sdk_cloudwatch::types::MetricAlarm) -> AlarmSpec {
        let mut queries: Vec<AlarmQuery> = a
            .metrics()
            .iter()
            .map(|q| AlarmQuery {
                id: q.id().unwrap_or_default().to_string(),
                metric: q.metric_stat().map(|s| {
                    let m = s.metric();
                    AlarmMetric {
                        namespace: m.and_then(|m| m.namespace()).unwrap_or_default().into(),
                        name: m.and_then(|m| m.metric_name()).unwrap_or_default().into(),
                        dimensions: m
                            .map(|m| m.dimensions())
                            .unwrap_or_default()
                            .iter()
                            .map(|d| {
                                (
                                    d.name().unwrap_or_default().to_string(),
                                    d.value().unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                        stat: s.stat().unwrap_or_default().to_string(),
                        period: s.period().or(q.period()).unwrap_or_default(),
                    }
                }),
                expression: q.expression().map(str::to_string),
                return_data: q.return_data().unwrap_or(true),
            })
            .collect();
        queries.sort_by(|x, y| x.id.cmp(&y.id));
        let mut actions: Vec<String> = a.alarm_actions().to_vec();
        actions.sort();
        AlarmSpec {
            description: a.alarm_description().unwrap_or_default().to_string(),
            queries,
            comparison: a
                .comparison_operator()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            threshold: a.threshold().unwrap_or_default(),
            evaluation_periods: a.evaluation_periods().unwrap_or_default(),
            datapoints_to_alarm: a
                .datapoints_to_alarm()
                .or(a.evaluation_periods())
                .unwrap_or_default(),
            treat_missing_data: a.treat_missing_data().unwrap_or("missing").to_string(),
            actions,
        }
    }

    fn queries_sdk(&self) -> Vec<aws_sdk_cloudwatch::types::MetricDataQuery> {
        use aws_sdk_cloudwatch::types::{Metric as SdkMetric, MetricDataQuery, MetricStat};
        self.queries
            .iter()
            .map(|q| {
                let mut b = MetricDataQuery::builder()
                    .id(&q.id)
                    .return_data(q.return_data);
                if let Some(e) = &q.expression {
                    b = b.expression(e);
                }
                if let Some(m) = &q.metric {
                    let mut metric = SdkMetric::builder()
                        .namespace(&m.namespace)
                        .metric_name(&m.name);
                    for (k, v) in &m.dimensions {
                        metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
                    }
                    b = b.metric_stat(
                        MetricStat::builder()
                            .metric(metric.build())
                            .stat(&m.stat)
                            .period(m.period)
                            .build(),
                    );
                }
                b.build()
            })
            .collect()
    }
}

/// Every metric alarm whose name starts with `prefix`, with its spec and state: one paginated
/// DescribeAlarms.
pub async fn describe_alarms(client: &Client, prefix: &str) -> Result<Vec<LiveAlarm>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client
        .describe_alarms()
        .alarm_name_prefix(prefix)
        .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("CloudWatch", "DescribeAlarms", e))?;
        for a in page.metric_alarms() {
            let Some(name) = a.alarm_name() else { continue };
            out.push(LiveAlarm {
                name: name.to_string(),
                spec: AlarmSpec::from_sdk(a),
                state: AlarmState {
                    state: a
                        .state_value()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "INSUFFICIENT_DATA".to_string()),
                    reason: a.state_reason().unwrap_or_default().to_string(),
                },
            });
        }
    }
    Ok(out)
}

/// Creates or replaces one alarm (PutMetricAlarm).
pub async fn put_alarm(client: &Client, name: &str, spec: &AlarmSpec) -> Result<(), AwsError> {
    use aws_sdk_cloudwatch::types::ComparisonOperator;
    client
        .put_metric_alarm()
        .alarm_name(name)
        .alarm_description(&spec.description)
        .set_metrics(Some(spec.queries_sdk()))
        .comparison_operator(ComparisonOperator::from(spec.comparison.as_str()))
        .threshold(spec.threshold)
        .evaluation_periods(spec.evaluation_periods)
        .datapoints_to_alarm(spec.datapoints_to_alarm)
        .treat_missing_data(&spec.treat_missing_data)
        .actions_enabled(true)
        .set_alarm_actions(Some(spec.actions.clone()))
        .set_ok_actions(Some(spec.actions.clone()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CloudWatch", "PutMetricAlarm", e))?;
    Ok(())
}

/// Deletes alarms by name, [`DELETE_BATCH`] per DeleteAlarms call.
pub async fn delete_alarms(client: &Client, names: &[String]) -> Result<(), AwsError> {
    for batch in names.chunks(DELETE_BATCH) {
        client
            .delete_alarms()
            .set_alarm_names(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CloudWatch", "DeleteAlarms", e))?;
    }
    Ok(())
}
