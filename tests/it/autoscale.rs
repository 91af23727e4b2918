//! `shoal autoscale --once` on the local stack: a backlog in a group on tansu raises the ECS
//! service's desired count on moto and publishes the metrics to CloudWatch (read back); with
//! the broker unreachable, the next tick changes nothing and says why.
//!
//! "Unreachable" here is an address nothing listens on (the shared tansu keeps serving the
//! other tests), which is what a stopped broker looks like to the client.

use aws_sdk_cloudwatch::types::DimensionFilter;

use crate::lag::backlog;
use crate::support::{text, Sandbox};

/// The CloudWatch metrics (namespace Shoal) published for `service`, read back with
/// ListMetrics.
pub async fn metric_names(cfg: &aws_config::SdkConfig, service: &str) -> Vec<String> {
    shoal::aws::cloudwatch(cfg)
        .list_metrics()
        .namespace(shoal::aws::cloudwatch::NAMESPACE)
        .dimensions(
            DimensionFilter::builder()
                .name("Service")
                .value(service)
                .build(),
        )
        .send()
        .await
        .expect("ListMetrics")
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name().map(String::from))
        .collect()
}

/// Adds a worker `w-…` to `sb` that scales 1..6 on its group, with a backlog in that group:
/// 6 partitions × 400 messages, nothing consumed, 2400 messages of lag, more than one
/// replica's share while rates are unknown (1000 messages per replica). `declare_topic` also
/// declares the topic in its manifest. Returns the worker's name.
pub async fn worker_with_backlog(sb: &Sandbox, declare_topic: bool) -> String {
    let consumer = format!("w-{}", &sb.project[3..sb.project.len().min(11)]);
    let topic = format!("{}-events", sb.project);
    let group = format!("{}-group", sb.project);
    let declared = if declare_topic {
        format!("[[topic]]\nname = \"{topic}\"\npartitions = 6\nreplication = 1\n")
    } else {
        String::new()
    };
    sb.fixture.consumer(
        &consumer,
        &format!(
            "kind = \"worker\"\n[kafka]\ngroup = \"{group}\"\ntopics = [\"{topic}\"]\n\
             {declared}[scaling]\nmin = 1\nmax = 6\nmax_lag_seconds = 30\n"
        ),
    );
    backlog(
        &sb.var("KAFKA_BOOTSTRAP"),
        &topic,
        6,
        400,
        &group,
        &[Some(0); 6],
    )
    .await;
    consumer
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_raises_the_desired_count_and_a_dead_broker_changes_nothing() {
    let sb = Sandbox::new();
    let consumer = worker_with_backlog(&sb, true).await;

    let env = sb.env();
    let cfg = sb.aws_config(&env).await;
    let ecs = shoal::aws::ecs(&cfg);
    let td = serde_json::json!({
        "family": format!("{}-{consumer}", sb.project),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": consumer, "image": "scratch"}]
    });
    let registered = shoal::platform::ecs::taskdef::register(&ecs, &td)
        .await
        .expect("register");
    let spec = shoal::platform::ecs::ServiceSpec::new(&env, &registered.family, 1);
    shoal::platform::ecs::create(&ecs, &spec, &sb.project, &consumer, &registered.arn, &[])
        .await
        .expect("create the service");

    let run = |bootstrap: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["autoscale", "--env", "sandbox", "--once", "-o", "json"])
            .current_dir(sb.root())
            .envs(&sb.vars)
            .env("KAFKA_BOOTSTRAP", bootstrap)
            .env("RUST_LOG", "shoal=info")
            .env("NO_COLOR", "1")
            .output()
            .expect("runs shoal")
    };
    let desired = || async {
        shoal::platform::ecs::describe(&ecs, &env.cluster, std::slice::from_ref(&consumer))
            .await
            .expect("describe")[0]
            .desired_count()
    };

    let out = run(&sb.var("KAFKA_BOOTSTRAP"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ticks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let tick = &ticks[0];
    assert_eq!(tick["consumer"], consumer.as_str());
    assert_eq!(tick["acted"], true, "{tick}");
    assert_eq!(tick["decision"]["lag"], 2400);
    let raised = desired().await;
    assert!(raised > 1, "desired count {raised}: {tick}");
    assert_eq!(tick["decision"]["desired"], raised);

    let names = metric_names(&cfg, &consumer).await;
    assert!(names.iter().any(|n| n == "ConsumerLag"), "{names:?}");
    assert!(names.iter().any(|n| n == "DesiredCount"), "{names:?}");

    let out = run("127.0.0.1:1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ticks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ticks[0]["acted"], false);
    assert_eq!(ticks[0]["decision"]["changed"], false);
    assert!(
        ticks[0]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("lag: "),
        "{}",
        ticks[0]
    );
    assert!(
        text(&out.stderr).contains("cannot read lag; changing nothing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(desired().await, raised, "nothing changed");
}
