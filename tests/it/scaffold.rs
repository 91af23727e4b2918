//! `shoal new`: the scaffolded folder passes `shoal validate` and renders, its crate builds
//! with the lockfile shoal made, and both kinds do their job against the local stack's broker
//! (tansu): the API's POST is acknowledged and lands on the topic, and the worker's consumer
//! group commits to the end of it. A scaffolded worker's image is built and deployed, to the
//! local platform and to ECS on the local stack.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{self, assert_ok, shoal, stack_env, text, Fixture};
use crate::workloads::{create_topic, free_port, http, wait_for, Running};

/// Builds a scaffolded crate, as its Dockerfile does, and returns the binary.
fn build(fx: &Fixture, name: &str) -> PathBuf {
    crate::workloads::cargo_build(&fx.root().join("consumers").join(name), name)
}

/// The offset `group` committed on each of `topic`'s first `partitions` partitions, `None`
/// where it never committed (read with OffsetFetch).
pub(crate) fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
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
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// The offsets `group` committed on `topic`'s partitions, summed.
pub(crate) fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(bootstrap, group, topic, partitions)
        .into_iter()
        .flatten()
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

/// Removes a project's containers and network on the local platform when dropped.
struct LocalCleanup(String);

impl Drop for LocalCleanup {
    fn drop(&mut self) {
        let label = format!("label=shoal.project={}", self.0);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let network = format!("shoal-{}-local", self.0);
        let _ = Command::new("docker")
            .args(["network", "rm", &network])
            .output();
    }
}

/// A scaffolded worker deploys as it is, to the local platform and to ECS. Its Dockerfile
/// builds here (from the local stack's stand-ins for its public images; nothing is pulled).
/// Locally, the deploy creates its topic and starts its container, whose consumer group then
/// commits through what is produced to the topic. On the sandbox its image is pushed to the
/// registry and it runs as a Fargate service on moto, in a cluster of this test's own (service
/// names are unique per cluster, and the worker's name is fixed, so that its image's
/// dependency layer is cached from one run to the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_deploys_as_it_is_locally_and_to_ecs() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let sb = support::Sandbox::new();
    let _cleanup = LocalCleanup(sb.project.clone());
    let cluster = sb.project.clone();
    let toml = std::fs::read_to_string(sb.root().join("shoal.toml")).expect("shoal.toml");
    sb.fixture.write(
        "shoal.toml",
        &format!(
            "{}\n[env.local]\nplatform = \"docker\"\nkafka = {{ bootstrap = [\"${{KAFKA_BOOTSTRAP:-127.0.0.1:9092}}\"] }}\n",
            toml.replace(
                "cluster = \"${SHOAL_ECS_CLUSTER:-shoal-sandbox}\"",
                &format!("cluster = \"{cluster}\""),
            )
        ),
    );
    let name = "scaffolded-worker";
    let topic = format!("{}-events", sb.project);
    assert_ok(&sb.shoal(&["new", name, "--topic", &topic]));

    // Locally: the container consumes its topic.
    assert_ok(&sb.shoal(&["deploy", "--env", "local", "--timeout", "120s"]));
    let bootstrap = sb.var("KAFKA_BOOTSTRAP");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for i in 0..10 {
        let key = format!("key-{i}");
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload("{}"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }
    wait_for(
        "the deployed worker to commit every message",
        Duration::from_secs(120),
        || (committed(&bootstrap, name, &topic, 6) == 10).then_some(()),
    );
    assert_ok(&sb.shoal(&["down", "--env", "local"]));

    // On ECS (moto): pushed, registered, a service with one task.
    let env = sb.env();
    shoal::aws::ecs(&sb.aws_config(&env).await)
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("CreateCluster on moto");
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "120s"]));
    let out = sb.shoal(&["status", "--env", "sandbox", "-o", "json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let service = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["consumer"] == name))
        .unwrap_or_else(|| panic!("no {name} service: {status}"));
    assert_eq!(service["desired"], 1, "{service}");
}
