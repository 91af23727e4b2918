//! The CloudWatch alarms of scaled consumers (`[alarms]` in `consumer.toml`), as plan
//! resources. Pure: desired specs come from the manifests; live ones from one paginated
//! DescribeAlarms by the environment's prefix, read in `live`.
//!
//! Every alarm is named `shoal/<project>/<env>/<consumer>/<alarm>`, so that the prefix
//! `shoal/<project>/<env>/` finds every alarm of one environment and nothing else (names
//! cannot hold `/`). Four alarms per consumer:
//!
//! - `lag`: `ConsumerLagSeconds` (published by the autoscaler) above `max_lag_seconds` for
//!   `lag_minutes`;
//! - `no-lag-data`: no `ConsumerLag` data point for `no_data_minutes`, meaning the autoscaler
//!   is down (missing data is breaching);
//! - `below-desired`: ECS Container Insights' `DesiredTaskCount - RunningTaskCount` above 0
//!   for `below_desired_minutes` (the cluster needs Container Insights on);
//! - `dlq`: the dead-letter topic's end offset (`DlqEndOffset`, published by the autoscaler)
//!   grew within a minute.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::cloudwatch::{AlarmMetric, AlarmQuery, AlarmSpec, NAMESPACE};
use crate::discover::Fleet;
use crate::manifest::{Alarms, Consumer, Environment, Scaling};
use crate::plan::{Kind, Resource};

/// The prefix of every alarm of one environment of the project.
pub fn prefix(project: &str, env: &Environment) -> String {
    format!("shoal/{project}/{}/", env.name)
}

/// The full name of one of a consumer's alarms.
pub fn name(project: &str, env: &Environment, consumer: &str, alarm: &str) -> String {
    format!("{}{consumer}/{alarm}", prefix(project, env))
}

/// The consumer and the alarm a full alarm name under `prefix` names.
pub fn parse<'a>(prefix: &str, full: &'a str) -> Option<(&'a str, &'a str)> {
    full.strip_prefix(prefix)?.split_once('/')
}

const PERIOD: i32 = 60;

fn shoal_metric(project: &str, consumer: &str, metric: &str, stat: &str) -> AlarmMetric {
    AlarmMetric {
        namespace: NAMESPACE.to_string(),
        name: metric.to_string(),
        dimensions: BTreeMap::from([
            ("Project".to_string(), project.to_string()),
            ("Service".to_string(), consumer.to_string()),
        ]),
        stat: stat.to_string(),
        period: PERIOD,
    }
}

fn query(id: &str, metric: Option<AlarmMetric>, expression: Option<&str>, ret: bool) -> AlarmQuery {
    AlarmQuery {
        id: id.to_string(),
        metric,
        expression: expression.map(str::to_string),
        return_data: ret,
    }
}

/// The alarms of one consumer, by short name (`lag`, `no-lag-data`, `below-desired`, `dlq`).
pub fn specs(
    project: &str,
    env: &Environment,
    c: &Consumer,
    scaling: Scaling,
    alarms: &Alarms,
) -> Vec<(&'static str, AlarmSpec)> {
    let actions: Vec<String> = env.alarm_topic_arn.iter().cloned().collect();
    let alarm = |description: String,
                 queries: Vec<AlarmQuery>,
                 comparison: &str,
                 threshold: f64,
                 minutes: u32,
                 missing: &str| AlarmSpec {
        description,
        queries,
        comparison: comparison.to_string(),
        threshold,
        evaluation_periods: minutes as i32,
        datapoints_to_alarm: minutes as i32,
        treat_missing_data: missing.to_string(),
        actions: actions.clone(),
    };
    let who = format!("shoal {project}/{}: {}", env.name, c.name);
    let mut out = Vec::new();
    if alarms.lag_minutes > 0 {
        out.push((
            "lag",
            alarm(
                format!(
                    "{who}: lag above max_lag_seconds = {} for {} minutes",
                    scaling.max_lag_seconds, alarms.lag_minutes
                ),
                vec![query(
                    "m1",
                    Some(shoal_metric(
                        project,
                        &c.name,
                        "ConsumerLagSeconds",
                        "Maximum",
                    )),
                    None,
                    true,
                )],
                "GreaterThanThreshold",
                scaling.max_lag_seconds,
                alarms.lag_minutes,
                "missing",
            ),
        ));
    }
    if alarms.no_data_minutes > 0 {
        out.push((
            "no-lag-data",
            alarm(
                format!(
                    "{who}: no lag published for {} minutes; is the autoscaler running?",
                    alarms.no_data_minutes
                ),
                vec![query(
                    "m1",
                    Some(shoal_metric(project, &c.name, "ConsumerLag", "SampleCount")),
                    None,
                    true,
                )],
                "LessThanThreshold",
                1.0,
                alarms.no_data_minutes,
                "breaching",
            ),
        ));
    }
    if alarms.below_desired_minutes > 0 {
        let insights = |metric: &str, stat: &str| AlarmMetric {
            namespace: "ECS/ContainerInsights".to_string(),
            name: metric.to_string(),
            dimensions: BTreeMap::from([
                ("ClusterName".to_string(), env.cluster.clone()),
                ("ServiceName".to_string(), c.name.clone()),
            ]),
            stat: stat.to_string(),
            period: PERIOD,
        };
        out.push((
            "below-desired",
            alarm(
                format!(
                    "{who}: fewer tasks running than desired for {} minutes",
                    alarms.below_desired_minutes
                ),
                vec![
                    query(
                        "desired",
                        Some(insights("DesiredTaskCount", "Maximum")),
                        None,
                        false,
                    ),
                    query("missing", None, Some("desired - running"), true),
                    query(
                        "running",
                        Some(insights("RunningTaskCount", "Minimum")),
                        None,
                        false,
                    ),
                ],
                "GreaterThanThreshold",
                0.0,
                alarms.below_desired_minutes,
                "missing",
            ),
        ));
    }
    if let Some(topic) = &alarms.dlq_topic {
        out.push((
            "dlq",
            alarm(
                format!("{who}: the dead-letter topic {topic} grew"),
                vec![
                    query("growth", None, Some("DIFF(m1)"), true),
                    query(
                        "m1",
                        Some(shoal_metric(project, &c.name, "DlqEndOffset", "Maximum")),
                        None,
                        false,
                    ),
                ],
                "GreaterThanThreshold",
                0.0,
                1,
                "notBreaching",
            ),
        ));
    }
    out
}

/// Every alarm the fleet wants in `env`, as plan resources.
pub fn desired(project: &str, env: &Environment, fleet: &Fleet) -> Vec<Resource> {
    let mut out = Vec::new();
    for c in &fleet.consumers {
        let (Some(scaling), Some(alarms)) = (c.scaling, &c.alarms) else {
            continue;
        };
        for (short, spec) in specs(project, env, c, scaling, alarms) {
            out.push(Resource {
                kind: Kind::Alarm,
                name: name(project, env, &c.name, short),
                consumer: Some(c.name.clone()),
                spec: to_json(&spec),
            });
        }
    }
    out
}

/// A spec as the plan compares it.
pub fn to_json(spec: &AlarmSpec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// A plan resource's spec back as an alarm.
pub fn from_json(spec: &Value) -> Option<AlarmSpec> {
    serde_json::from_value(spec.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_consumer_and_alarm() {
        let prefix = "shoal/p/sandbox/";
        assert_eq!(
            parse(prefix, "shoal/p/sandbox/orders/lag"),
            Some(("orders", "lag"))
        );
        assert_eq!(parse(prefix, "shoal/p/sandbox-2/orders/lag"), None);
        assert_eq!(parse(prefix, "other"), None);
    }
}
