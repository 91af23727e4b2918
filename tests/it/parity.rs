//! One spec for both platforms: the docker platform makes each container from the same
//! rendered task definition that ECS registers, so `[env]`, secrets, ports and the command
//! cannot drift between them. Every `consumer.toml` field the README documents is accounted
//! for: it reaches the container on both platforms, or it is said why not.

use std::collections::{BTreeMap, BTreeSet};

use shoal::manifest::Project;
use shoal::platform::docker::{in_container, Secrets, Spec};
use shoal::render::{Renderer, Target};

use crate::support::{repo_root, Fixture};

/// A consumer with every field that can reach a container set to a value of its own.
const FULL: &str = r#"kind = "api"
cpu = 512
memory = 1024
command = ["/app", "--serve", "--verbose"]
platforms = ["docker", "ecs"]
task_role = "orders-reader"

[build]
dockerfile = "Dockerfile"
context = "."
args = { MODE = "release" }

[env]
BATCH_SIZE = "777"
UPSTREAM = "http://127.0.0.1:9999/feed"

[secrets]
DB_PASSWORD = "arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse-AbCdEf"

[kafka]
group = "parity-group"
topics = ["parity-in", "parity-other"]

[[topic]]
name = "parity-in"
partitions = 6

[api]
port = 8181
health_path = "/ready"
"#;

/// Where each field of `consumer.toml` goes. `Container` fields must show in the container
/// on both platforms; the others say why they do not reach a container.
const FIELDS: &[(&str, &str)] = &[
    ("kind", "container: an api gets its port and health check"),
    (
        "cpu",
        "ecs only: Fargate's task size; local containers are not limited",
    ),
    (
        "memory",
        "ecs only: Fargate's task size; local containers are not limited",
    ),
    ("command", "container"),
    ("platforms", "neither: which platforms deploy the workload"),
    (
        "task_role",
        "ecs only: an IAM role, which the local platform has no counterpart for",
    ),
    (
        "build",
        "neither: how the image is built; the image reaches both",
    ),
    ("env", "container"),
    ("secrets", "container"),
    (
        "required",
        "neither: checked before a deploy on both platforms, against what reaches the container",
    ),
    (
        "required_on",
        "neither: as required, for the environments of one platform",
    ),
    (
        "allow_plain",
        "neither: lets validate accept a plain [env] value on ECS; the value reaches both alike",
    ),
    ("kafka", "container: KAFKA_GROUP and KAFKA_TOPICS"),
    ("topic", "neither: topics as code, applied to the broker"),
    ("scaling", "neither: the autoscaler's bounds"),
    (
        "alarms",
        "neither: CloudWatch alarms on ECS, judged by `status` on docker",
    ),
    (
        "api",
        "container: the port, and the health path the platform checks",
    ),
];

/// The keys and tables of the README's `consumer.toml` reference.
fn documented_fields() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find("### `consumers/<name>/consumer.toml`")
        .expect("the manifest reference");
    let block = &readme[start..];
    let block = &block[block.find("```toml").expect("its example") + 7..];
    let block = &block[..block.find("```").expect("its end")];
    let mut fields = BTreeSet::new();
    let mut in_table = false;
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(table) = line.strip_prefix('[') {
            let name = table.trim_matches(|c| c == '[' || c == ']');
            fields.insert(name.to_string());
            in_table = true;
        } else if let Some((key, _)) = line.split_once('=') {
            if !in_table {
                fields.insert(key.trim().to_string());
            }
        }
    }
    fields
}

#[test]
fn every_documented_field_is_accounted_for() {
    let documented = documented_fields();
    let known: BTreeSet<String> = FIELDS.iter().map(|(k, _)| k.to_string()).collect();
    let missing: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "consumer.toml fields with no parity decision in tests/it/parity.rs: {missing:?}"
    );
    assert!(documented.len() >= 12, "read the reference: {documented:?}");
}

#[test]
fn the_container_on_docker_is_the_task_definitions_container() {
    let f = Fixture::standard();
    f.consumer("orders", FULL);
    let project = Project::load(f.root()).expect("valid project");
    let env = project.environment("local").expect("local");
    let fleet = shoal::discover::discover(f.root())
        .expect("valid fleet")
        .for_env(&env, &|_| None)
        .expect("for local");
    let consumer = fleet.get("orders").expect("the consumer");
    let target = Target {
        project: &project.name,
        env: &env,
        bootstrap: env.kafka.static_bootstrap(),
    };
    let td = Renderer::embedded()
        .render(&target, consumer, "img:parity")
        .expect("renders");
    let mut secrets = Secrets::default();
    secrets.file = ".shoal/secrets.local.toml".into();
    let missing = Spec::new(consumer, &td, &secrets, 1).expect_err("no secret value yet");
    assert!(missing.to_string().contains("DB_PASSWORD"), "{missing}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secrets.toml");
    std::fs::write(&file, "DB_PASSWORD = \"hunter2\"\n").expect("write secrets");
    let secrets = Secrets::load(&file, dir.path()).expect("secrets");
    let spec = Spec::new(consumer, &td, &secrets, 2).expect("spec");
    let container = &td["containerDefinitions"][0];

    assert_eq!(spec.image, container["image"].as_str().expect("image"));
    assert_eq!(spec.image, "img:parity");
    let command: Vec<String> = serde_json::from_value(container["command"].clone()).expect("cmd");
    assert_eq!(spec.command.as_deref(), Some(command.as_slice()));
    assert_eq!(command, ["/app", "--serve", "--verbose"]);

    let api = spec.api.as_ref().expect("an api");
    assert_eq!(
        u64::from(api.port),
        container["portMappings"][0]["containerPort"]
            .as_u64()
            .expect("port")
    );
    assert_eq!((api.port, api.health_path.as_str()), (8181, "/ready"));

    // Every plain variable ECS gets, the container gets (a loopback host rewritten so the
    // container reaches this machine), except PORT, which each replica gets its own of.
    let got: BTreeMap<String, String> = spec
        .env
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ecs_env: BTreeMap<String, String> = container["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_string(),
                p["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    for (k, v) in &ecs_env {
        if k == "PORT" {
            assert!(!got.contains_key(k), "PORT is set per replica");
            continue;
        }
        assert_eq!(got.get(k), Some(&in_container(v)), "{k}");
    }
    for (k, v) in [
        ("BATCH_SIZE", "777"),
        ("KAFKA_GROUP", "parity-group"),
        ("KAFKA_TOPICS", "parity-in,parity-other"),
        ("UPSTREAM", "http://host.docker.internal:9999/feed"),
    ] {
        assert_eq!(got.get(k).map(String::as_str), Some(v), "{k}");
    }

    // Each secret ECS resolves from its ARN, the container gets from the local file, by the
    // same name; its value is never in the comparable spec.
    let ecs_secrets: Vec<&str> = container["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(ecs_secrets, ["DB_PASSWORD"]);
    assert_eq!(got.get("DB_PASSWORD").map(String::as_str), Some("hunter2"));
    assert!(!spec.spec.to_string().contains("hunter2"));
    assert_eq!(got.len(), ecs_env.len() - 1 + ecs_secrets.len());
}
