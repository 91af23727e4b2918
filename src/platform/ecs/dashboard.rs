//! The project's CloudWatch dashboard: per consumer, lag, lag seconds, and desired against
//! running counts. Pure: the body is JSON built from the fleet, so it can be snapshot-tested.

use serde_json::{json, Value};

use crate::aws::cloudwatch::NAMESPACE;
use crate::discover::Fleet;
use crate::manifest::Environment;

/// The dashboard's name: `shoal-<project>-<environment>`.
pub fn name(project: &str, env: &Environment) -> String {
    format!("shoal-{project}-{}", env.name)
}

/// The dashboard body: one row of three graphs per consumer with `[scaling]`.
pub fn body(project: &str, env: &Environment, fleet: &Fleet) -> Value {
    let mut widgets = Vec::new();
    let scaled = fleet.consumers.iter().filter(|c| c.scaling.is_some());
    for (row, c) in scaled.enumerate() {
        let y = row * 6;
        let dims = |metric: &str| json!([NAMESPACE, metric, "Project", project, "Service", c.name]);
        let graph = |x: usize, title: String, metrics: Value, stat: &str| {
            json!({
                "type": "metric",
                "x": x, "y": y, "width": 8, "height": 6,
                "properties": {
                    "title": title,
                    "region": env.region,
                    "metrics": metrics,
                    "stat": stat,
                    "period": 60,
                    "view": "timeSeries",
                }
            })
        };
        widgets.push(graph(
            0,
            format!("{}: lag (messages)", c.name),
            json!([dims("ConsumerLag")]),
            "Maximum",
        ));
        let mut w = graph(
            8,
            format!("{}: lag (seconds)", c.name),
            json!([dims("ConsumerLagSeconds")]),
            "Maximum",
        );
        if let Some(s) = c.scaling {
            w["properties"]["annotations"] = json!({
                "horizontal": [{"label": "max_lag_seconds", "value": s.max_lag_seconds}]
            });
        }
        widgets.push(w);
        widgets.push(graph(
            16,
            format!("{}: desired and running", c.name),
            json!([
                dims("DesiredCount"),
                [
                    "ECS/ContainerInsights",
                    "RunningTaskCount",
                    "ClusterName",
                    env.cluster,
                    "ServiceName",
                    c.name
                ]
            ]),
            "Maximum",
        ));
    }
    json!({ "widgets": widgets })
}
