//! CloudWatch metrics on moto (the local stack): what the autoscaler publishes can be read
//! back by name and dimensions. aws-sdk-cloudwatch is pinned to 1.99, the last release on the
//! AWS Query protocol that moto speaks.

use shoal::aws::cloudwatch::{self, Metric, Unit, NAMESPACE};

use crate::support::Sandbox;

#[tokio::test(flavor = "multi_thread")]
async fn published_metrics_read_back_by_service() {
    let sb = Sandbox::new();
    let env = sb.env();
    let client = shoal::aws::cloudwatch(&sb.aws_config(&env).await);
    let service = format!("{}-svc", sb.project);
    let metric = |name, value, unit| Metric {
        name,
        project: sb.project.clone(),
        service: service.clone(),
        value,
        unit,
    };
    let metrics = vec![
        metric("ConsumerLag", 1200.0, Unit::Count),
        metric("ConsumerLagSeconds", 12.5, Unit::Seconds),
        metric("DesiredCount", 3.0, Unit::Count),
    ];
    let calls = cloudwatch::publish(&client, &metrics)
        .await
        .expect("publish");
    assert_eq!(calls, 1, "one PutMetricData for three data points");

    let listed = client
        .list_metrics()
        .namespace(NAMESPACE)
        .dimensions(
            aws_sdk_cloudwatch::types::DimensionFilter::builder()
                .name("Service")
                .value(&service)
                .build(),
        )
        .send()
        .await
        .expect("ListMetrics");
    let mut names: Vec<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["ConsumerLag", "ConsumerLagSeconds", "DesiredCount"]
    );
}

/// Registers a one-container task definition and makes the ECS service `service` on moto
/// with `desired` tasks, in the sandbox's cluster; returns the ECS client.
pub async fn ecs_service(sb: &Sandbox, service: &str, desired: i32) -> aws_sdk_ecs::Client {
    let env = sb.env();
    let cfg = sb.aws_config(&env).await;
    let client = shoal::aws::ecs(&cfg);
    let td = serde_json::json!({
        "family": service,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "main", "image": "scratch"}]
    });
    let registered = shoal::platform::ecs::taskdef::register(&client, &td)
        .await
        .expect("register");
    let spec = shoal::platform::ecs::ServiceSpec::new(&env, &registered.family, desired);
    shoal::platform::ecs::create(&client, &spec, &sb.project, service, &registered.arn, &[])
        .await
        .expect("create");
    client
}

/// The autoscaler's ECS side on moto: it reads a service's desired count and sets it.
#[tokio::test(flavor = "multi_thread")]
async fn the_autoscaler_reads_and_sets_desired_counts_on_ecs() {
    use shoal::platform::{ecs::EcsServices, Scale, ScaleError};

    let sb = Sandbox::new();
    let env = sb.env();
    let service = format!("{}-scaled", sb.project);
    let client = ecs_service(&sb, &service, 1).await;
    let ecs = EcsServices {
        client,
        cluster: env.cluster.clone(),
    };
    assert_eq!(ecs.counts(&service).await.expect("counts").desired, 1);
    ecs.set(&service, 4).await.expect("set");
    assert_eq!(ecs.counts(&service).await.expect("counts").desired, 4);
    let missing = ecs.counts("no-such-service").await;
    assert!(
        matches!(missing, Err(ScaleError::NoService { .. })),
        "{missing:?}"
    );
    let many = ecs
        .counts_many(&[service.clone(), "no-such-service".to_string()])
        .await
        .expect("counts");
    assert_eq!(many.get(&service).map(|c| c.desired), Some(4));
    assert_eq!(many.len(), 1, "a missing service is left out: {many:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_put_and_reads_back_with_three_graphs_per_scaled_consumer() {
    let sb = Sandbox::new();
    sb.fixture.consumer("orders", crate::support::WORKER);
    sb.fixture.consumer("web", crate::support::API);
    let out = sb.shoal(&["dashboard", "--env", "sandbox", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::text(&out.stderr)
    );
    let env = sb.env();
    let client = shoal::aws::cloudwatch(&sb.aws_config(&env).await);
    let got = client
        .get_dashboard()
        .dashboard_name(format!("shoal-{}-sandbox", sb.project))
        .send()
        .await
        .expect("GetDashboard");
    let body: serde_json::Value =
        serde_json::from_str(got.dashboard_body().expect("a body")).expect("json");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert_eq!(widgets.len(), 3, "only the scaled consumer gets graphs");
    let text = body.to_string();
    for metric in [
        "ConsumerLag",
        "ConsumerLagSeconds",
        "DesiredCount",
        "RunningTaskCount",
    ] {
        assert!(text.contains(metric), "{metric} in {text}");
    }
}
