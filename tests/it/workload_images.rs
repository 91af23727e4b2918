//! The exposure workloads as they ship: both Docker images built from the repository's own
//! `consumers/` by shoal's image pipeline on the real Docker Engine (from the local stack's
//! stand-ins for rust:1.95-bookworm and debian:bookworm-slim: nothing is pulled), then run as
//! containers, started with the `docker` CLI as an independent client, against the local
//! stack's broker and PostgreSQL.

use std::process::Command;
use std::time::Duration;

use shoal::discover::{self, context};
use shoal::image::{Destination, Engine, ImageJob, Outcome, Pipeline, Progress};

use crate::support::{repo_root, stack_env, Container};
use crate::workloads::{create_topic, free_port, http, post_json, psql, wait_for};

/// Builds the repository's two workload images with shoal's pipeline (local engine, no push)
/// and returns their references, API first.
async fn build_images() -> (String, String) {
    let root = repo_root();
    let project =
        shoal::manifest::Project::load(&root).unwrap_or_else(|p| panic!("shoal.toml: {p}"));
    let env = project
        .environment("local")
        .unwrap_or_else(|e| panic!("env local: {e}"));
    let fleet = discover::discover(&root).unwrap_or_else(|p| panic!("manifests: {p}"));
    let jobs: Vec<ImageJob> = fleet
        .consumers
        .iter()
        .filter(|c| c.name.starts_with("exposure-"))
        .map(|c| {
            let hash = context::hash(&c.build).expect("hash the build context");
            ImageJob::new(&env, &project.name, c, &hash)
        })
        .collect();
    assert_eq!(jobs.len(), 2, "both exposure workloads are discovered");
    let references: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.consumer.clone(), j.reference()))
        .collect();
    let report = Pipeline::new(Engine::from_env(), Destination::Local)
        .build_and_push_all(jobs, 1, &Progress::lines())
        .await;
    for (consumer, outcome) in report.outcomes() {
        assert!(
            matches!(outcome, Outcome::Built { .. } | Outcome::Skipped { .. }),
            "{consumer}: {outcome:?}"
        );
    }
    let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "image builds failed: {errors:#?}");
    let reference = |name: &str| {
        references
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, r)| r.clone())
            .expect("reference")
    };
    (reference("exposure-api"), reference("exposure-consumer"))
}

/// Both images build on this machine with no pulls; run as containers, the API accepts N
/// events and exactly N rows reach PostgreSQL, checked with psql.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_images_build_and_carry_events_to_the_warehouse() {
    let (api_image, consumer_image) = build_images().await;
    let stack = stack_env();
    let bootstrap = stack["KAFKA_BOOTSTRAP"].clone();
    let database = stack["DATABASE_URL"].clone();
    let id = format!("img{}", std::process::id());
    let topic = format!("exposures-{id}");
    create_topic(&bootstrap, &topic, 3).await;

    let api_port = free_port();
    let api = Container::run(
        &format!("shoal-test-api-{id}"),
        &api_image,
        &[
            ("KAFKA_BOOTSTRAP", bootstrap.clone()),
            ("EXPOSURES_TOPIC", topic.clone()),
            ("DATABASE_URL", database.clone()),
            ("PORT", api_port.to_string()),
            // Writes without credentials (auth is on by default).
            ("AUTH", "none".to_string()),
        ],
        &[],
    );
    let consumer = Container::run(
        &format!("shoal-test-consumer-{id}"),
        &consumer_image,
        &[
            ("KAFKA_BOOTSTRAP", bootstrap.clone()),
            ("EXPOSURES_TOPIC", topic.clone()),
            ("KAFKA_GROUP", format!("group-{id}")),
            ("DLQ_TOPIC", format!("{topic}.dlq")),
            ("DATABASE_URL", database.clone()),
            ("PORT", free_port().to_string()),
        ],
        &[],
    );
    let addr = format!("127.0.0.1:{api_port}");
    wait_for(
        "the API container's /health",
        Duration::from_secs(60),
        || http("GET", &addr, "/health", &[], b"").filter(|a| a.status == 200),
    );

    // The ECS health check: the binary asks its own /health (the image has no curl).
    let check = Command::new("docker")
        .args(["exec", &api.0, "/usr/local/bin/exposure-api", "healthcheck"])
        .status()
        .expect("docker exec");
    assert!(
        check.success(),
        "`exposure-api healthcheck` passes in the container"
    );

    let experiment = format!("exp-{id}");
    let n = 50;
    for i in 0..n {
        let answer = post_json(
            &addr,
            "/exposure",
            &serde_json::json!({
                "ds_user_id": format!("user-{i}"),
                "experiment_id": experiment,
                "variation_id": if i % 2 == 0 { "control" } else { "treatment" },
                "attributes": {"i": i},
                "source": "workload_images test",
            }),
        )
        .unwrap_or_else(|| panic!("POST /exposure: no answer; API logs:\n{}", api.logs()));
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let count_sql = format!(
        "SELECT count(*) FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
    );
    wait_for(
        "the consumer container to write every row",
        Duration::from_secs(60),
        || {
            let table = psql("SELECT to_regclass('growthbook.experiment_exposures') IS NOT NULL");
            (table == "t" && psql(&count_sql) == n.to_string()).then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        psql(&count_sql),
        n.to_string(),
        "exactly N rows; consumer logs:\n{}",
        consumer.logs()
    );
}
