//! `shoal new`: the scaffolded folder passes `shoal validate` and renders, its crate builds
//! with the lockfile shoal made, and both kinds do their job against the local stack's broker
//! (tansu): the API's POST is acknowledged and lands on the topic, and the worker's consumer
//! group commits to the end of it. The Docker image is built from the same Dockerfile pattern
//! as the exposure workloads', which `workload_images` builds for real.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{self, shoal, stack_env, text, Fixture};
use crate::workloads::{create_topic, free_port, http, wait_for, Running};

/// Builds a scaffolded crate with cargo (as the Dockerfile does, `--locked`), into the shared
/// target directory, and returns the binary.
fn build(fx: &Fixture, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = fx.root().join("consumers").join(name).join("Cargo.toml");
    let status = Command::new(cargo)
        .args(["build", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo build");
    assert!(status.success(), "the scaffolded {name} builds");
    target.join("debug").join(name)
}

fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch");
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_consumers_validate_build_and_move_messages() {
    let fx = Fixture::standard();
    let id = fx.unique();
    let (worker, api, topic) = (format!("w{id}"), format!("a{id}"), format!("scaffold-{id}"));

    let out = shoal(fx.root(), &["new", &worker, "--topic", &topic]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for file in [
        "consumer.toml",
        "Dockerfile",
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
    ] {
        assert!(
            listing.contains(&format!("consumers/{worker}/{file}")),
            "{file} in: {listing}"
        );
    }
    let out = shoal(
        fx.root(),
        &[
            "new", &api, "--kind", "api", "--topic", &topic, "-o", "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["consumer"], api.as_str());

    let out = shoal(fx.root(), &["validate"]);
    assert!(out.status.success(), "validate: {}", text(&out.stderr));
    let out = shoal(fx.root(), &["render", &api, "-e", "sandbox"]);
    assert!(out.status.success(), "render: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("/usr/local/bin/{api}")),
        "the ECS health check runs the binary: {}",
        text(&out.stdout)
    );

    let bootstrap = stack_env()["KAFKA_BOOTSTRAP"].clone();
    create_topic(&bootstrap, &topic, 6).await;

    // The API: POST → 202 after the broker's ack; its own health check passes.
    let port = free_port();
    let env = |cmd: &mut Command| {
        cmd.env("KAFKA_BOOTSTRAP", &bootstrap)
            .env("PORT", port.to_string())
            .env("KAFKA_GROUP", &worker)
            .env("KAFKA_TOPICS", &topic);
    };
    let mut cmd = Command::new(build(&fx, &api));
    env(&mut cmd);
    let _api = Running {
        child: cmd.spawn().expect("start the api"),
    };
    let addr = format!("127.0.0.1:{port}");
    wait_for("the scaffolded API", Duration::from_secs(30), || {
        http("GET", &addr, "/health", &[], b"").filter(|a| a.status == 200)
    });
    let mut check = Command::new(build(&fx, &api));
    env(&mut check);
    assert!(
        check
            .arg("healthcheck")
            .status()
            .expect("healthcheck")
            .success(),
        "`{api} healthcheck` passes against the running server"
    );
    for i in 0..10 {
        let key = format!("/events?key=user-{i}");
        let answer = http("POST", &addr, &key, &[], b"{\"n\":1}").expect("POST /events");
        assert_eq!(answer.status, 202, "{}", answer.body);
    }

    // The worker: its group commits through all ten.
    let mut cmd = Command::new(build(&fx, &worker));
    env(&mut cmd);
    let _worker = Running {
        child: cmd.spawn().expect("start the worker"),
    };
    wait_for(
        "the scaffolded worker to commit every message",
        Duration::from_secs(60),
        || (committed(&bootstrap, &worker, &topic, 6) == 10).then_some(()),
    );
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let fx = Fixture::standard();
    let out = shoal(fx.root(), &["new", "Orders Worker"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a legal consumer name"));

    fx.consumer("taken", support::API);
    let out = shoal(fx.root(), &["new", "taken"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("consumers/taken already exists"),
        "{}",
        text(&out.stderr)
    );
}
