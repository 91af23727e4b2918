//! The exposure workloads as they ship: both Docker images built from the repository's own
//! `consumers/` by shoal's image pipeline on the real Docker Engine (from the local stack's
//! stand-ins for rust:1.95-bookworm and debian:bookworm-slim: nothing is pulled), then run as
//! containers, started with the `docker` CLI as an independent client, against the local
//! stack's broker and PostgreSQL. And what lets the second image reuse the first one's
//! dependency build: both Dockerfiles begin with the same stage, over the same files, while
//! each image's tag stays blind to the other workload's sources.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal::discover::{self, context};
use shoal::image::{Destination, Engine, ImageJob, Outcome, Pipeline, Progress};
use shoal::manifest::Build;

use crate::support::{copy_tree, repo_root, stack_env, Container, Fixture};
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

/// The exposure workloads' builds in the project at `root`, API first.
fn exposure_builds(root: &Path) -> (Build, Build) {
    let fleet = discover::discover(root).unwrap_or_else(|p| panic!("manifests: {p}"));
    let build = |name: &str| {
        fleet
            .consumers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.build.clone())
            .unwrap_or_else(|| panic!("{name} is discovered"))
    };
    (build("exposure-api"), build("exposure-consumer"))
}

/// The stage `FROM ... AS deps` of a Dockerfile, up to the next `FROM`.
fn deps_stage(dockerfile: &str) -> String {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("FROM ") && l.ends_with(" AS deps"))
        .expect("a stage named deps");
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("FROM "))
        .map_or(lines.len(), |n| start + 1 + n);
    lines[start..end].join("\n")
}

/// The sources of a stage's `COPY` lines (not `COPY --from`).
fn copied(stage: &str) -> Vec<String> {
    stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--"))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What a build context holds under `source` (the path itself, or below it): each path with
/// its bytes (none for a folder).
fn under(build: &Build, source: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("{source}/");
    context::entries(build)
        .expect("readable context")
        .into_iter()
        .filter(|e| e.rel == source || e.rel.starts_with(&prefix))
        .map(|e| {
            let bytes = match e.kind {
                context::EntryKind::File { .. } => std::fs::read(&e.path).expect("read"),
                _ => Vec::new(),
            };
            (e.rel, bytes)
        })
        .collect()
}

/// The classic builder reuses a layer only for the same instruction over the same files: both
/// Dockerfiles begin with one `deps` stage, byte for byte, and both contexts give it the same
/// files. So whichever image builds second finds the dependency build in the layer cache.
#[test]
fn both_images_begin_with_the_same_dependency_stage_over_the_same_files() {
    let root = repo_root();
    let (api, consumer) = exposure_builds(&root);
    let read = |b: &Build| std::fs::read_to_string(&b.dockerfile).expect("read the Dockerfile");
    let stage = deps_stage(&read(&api));
    assert_eq!(
        stage,
        deps_stage(&read(&consumer)),
        "the deps stages of exposure-api/Dockerfile and exposure-consumer/Dockerfile differ"
    );
    assert_eq!(api.context, consumer.context, "one build context");
    let sources = copied(&stage);
    assert!(
        sources.contains(&"Cargo.lock".to_string()),
        "the stage builds from the workspace's lock file: {sources:?}"
    );
    for source in &sources {
        let files = under(&api, source);
        assert!(!files.is_empty(), "exposure-api's context has no {source}");
        assert!(
            files == under(&consumer, source),
            "the two contexts differ under {source}"
        );
    }
}

/// An image's tag changes with what its build reads: the other workload's sources are not
/// among that, the workspace's lock file and the shared crates are.
#[test]
fn a_change_to_one_workload_leaves_the_other_image_tag_as_it_is() {
    let fx = Fixture::standard();
    copy_tree(&repo_root().join("consumers"), &fx.root().join("consumers"));
    let tags = || {
        let (api, consumer) = exposure_builds(fx.root());
        let tag = |b: &Build| context::hash(b).expect("hash").tag().to_string();
        (tag(&api), tag(&consumer))
    };
    let append = |rel: &str| {
        let path = fx.root().join("consumers").join(rel);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("\n// changed\n");
        std::fs::write(&path, text).expect("write");
    };
    let (api, consumer) = tags();

    append("exposure-api/src/main.rs");
    let (api2, consumer2) = tags();
    assert_ne!(api, api2, "exposure-api's own source");
    assert_eq!(
        consumer, consumer2,
        "exposure-api's source is not exposure-consumer's"
    );

    append("exposure-consumer/src/main.rs");
    let (api3, consumer3) = tags();
    assert_eq!(
        api2, api3,
        "exposure-consumer's source is not exposure-api's"
    );
    assert_ne!(consumer2, consumer3, "exposure-consumer's own source");

    for shared in ["Cargo.lock", "exposure-event/src/lib.rs"] {
        let before = tags();
        append(shared);
        let after = tags();
        assert!(
            before.0 != after.0 && before.1 != after.1,
            "{shared} is in both builds: {before:?} -> {after:?}"
        );
    }
}
