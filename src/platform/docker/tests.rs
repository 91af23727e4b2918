//! The docker platform's pure parts: grouping, specs, ports and secrets.

use super::*;
use crate::manifest::Consumer;
use std::collections::BTreeMap;

fn c(consumer: &str, rev: &str, replica: u32, state: &str, created: i64) -> Container {
    Container {
        id: format!("{consumer}-{rev}-{replica}"),
        name: String::new(),
        consumer: consumer.into(),
        revision: rev.into(),
        replica,
        port: None,
        state: state.into(),
        created,
        spec: None,
    }
}

#[test]
fn the_current_revision_is_the_one_with_most_running_containers() {
    let all = vec![
        c("a", "old", 0, "running", 1),
        c("a", "old", 1, "running", 1),
        c("a", "new", 0, "restarting", 5),
        c("b", "x", 0, "exited", 1),
    ];
    let sets = live_sets(&all);
    assert_eq!(sets["a"].revision, "old");
    assert_eq!(sets["a"].desired(), 2);
    assert_eq!(sets["a"].others.len(), 1);
    assert_eq!(sets["b"].running(), 0);
    assert_eq!(sets["b"].desired(), 1);
}

#[test]
fn loopback_hosts_become_the_host_name_in_containers() {
    let cases = [
        (
            "postgres://shoal:shoal@127.0.0.1:5432/shoal",
            "postgres://shoal:shoal@host.docker.internal:5432/shoal",
        ),
        (
            "127.0.0.1:9092,localhost:9093",
            "host.docker.internal:9092,host.docker.internal:9093",
        ),
        ("http://localhost/x", "http://host.docker.internal/x"),
        ("localhost", "host.docker.internal"),
        ("127.0.0.10:5", "127.0.0.10:5"),
        ("mylocalhost:1", "mylocalhost:1"),
        ("localhost.example.com:1", "localhost.example.com:1"),
        (
            "b-1.kafka.amazonaws.com:9098",
            "b-1.kafka.amazonaws.com:9098",
        ),
        ("host.docker.internal:9092", "host.docker.internal:9092"),
    ];
    for (given, want) in cases {
        assert_eq!(in_container(given), want, "{given}");
    }
}

#[test]
fn free_replica_numbers_fill_gaps() {
    let all = vec![c("a", "r", 0, "running", 1), c("a", "r", 2, "running", 1)];
    assert_eq!(free_replicas(&all, 3), vec![1, 3, 4]);
}

fn api_consumer(extra: &str) -> Consumer {
    let text = format!("kind = \"api\"\n[api]\nport = 8080\nhealth_path = \"/h\"\n{extra}");
    Consumer::for_test("web", &text)
}

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A task definition's first container as the built-in template renders it: `env` as its
/// environment, the consumer's secrets by name, and the API's port.
fn task_definition(c: &Consumer, env: &BTreeMap<String, String>) -> serde_json::Value {
    let environment: Vec<_> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    let secrets: Vec<_> = c
        .secrets
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "valueFrom": v}))
        .collect();
    serde_json::json!({"containerDefinitions": [{
        "image": "img:1",
        "environment": environment,
        "secrets": secrets,
        "portMappings": c.api.as_ref().map(|a| vec![serde_json::json!({"containerPort": a.port})]),
    }]})
}

#[test]
fn the_revision_ignores_the_count_and_port_and_hides_secret_values() {
    let c = api_consumer("[secrets]\nTOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/t\"\n");
    let mut secrets = Secrets::default();
    secrets.shared.insert("TOKEN".into(), "s3cret".into());
    let env = env_of(&[("PORT", "8080"), ("A", "1")]);
    let td = task_definition(&c, &env);
    let one = Spec::new(&c, &td, &secrets, 1).expect("spec");
    let two = Spec::new(&c, &td, &secrets, 3).expect("spec");
    assert_eq!(one.revision, two.revision);
    assert!(!one.env.iter().any(|e| e.starts_with("PORT=")));
    assert!(one.env.contains(&"TOKEN=s3cret".to_string()));
    assert!(!one.spec.to_string().contains("s3cret"));
    secrets.shared.insert("TOKEN".into(), "other".into());
    let rotated = Spec::new(&c, &td, &secrets, 1).expect("spec");
    assert_ne!(
        one.revision, rotated.revision,
        "a new secret value is a new revision"
    );
}

#[test]
fn a_missing_secret_names_the_file_and_the_key() {
    let c = api_consumer("[secrets]\nTOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/t\"\n");
    let secrets = Secrets {
        file: ".shoal/secrets.local.toml".into(),
        ..Secrets::default()
    };
    let td = task_definition(&c, &BTreeMap::new());
    let err = Spec::new(&c, &td, &secrets, 1).expect_err("missing secret");
    let text = err.to_string();
    assert!(
        text.contains("TOKEN") && text.contains(".shoal/secrets.local.toml"),
        "{text}"
    );
}

#[test]
fn a_consumer_table_overrides_a_shared_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "A = \"1\"\nB = \"2\"\n[w]\nA = \"3\"\n").expect("write");
    let s = Secrets::load(&path, dir.path()).expect("loads");
    assert_eq!(s.get("w", "A"), Some("3"));
    assert_eq!(s.get("v", "A"), Some("1"));
    assert_eq!(s.get("w", "B"), Some("2"));
    assert_eq!(s.get("w", "C"), None);
}

/// The spec goes into a container label: a plain credential is kept there as a digest (a URL
/// keeps all but its password), while the container itself gets the value.
#[test]
fn the_spec_label_keeps_no_plain_credential() {
    let c = api_consumer("");
    let env = env_of(&[
        ("DATABASE_URL", "postgres://shoal:hunter2@db:5432/shoal"),
        ("API_KEYS", "key-one"),
        ("RUST_LOG", "info"),
    ]);
    let td = task_definition(&c, &env);
    let spec = Spec::new(&c, &td, &Secrets::default(), 1).expect("spec");
    let label = Template::from_spec("p", "local", &spec).spec_label;
    assert!(
        !label.contains("hunter2") && !label.contains("key-one"),
        "{label}"
    );
    let shown = &spec.spec["environment"];
    assert!(
        shown["DATABASE_URL"].as_str().is_some_and(
            |u| u.starts_with("postgres://shoal:sha256:") && u.ends_with("@db:5432/shoal")
        ),
        "{shown}"
    );
    assert!(shown["API_KEYS"]
        .as_str()
        .is_some_and(|k| k.starts_with("sha256:")));
    assert_eq!(shown["RUST_LOG"], "info");
    assert!(spec.env.contains(&"API_KEYS=key-one".to_string()));
    let with_url = |url: &str| {
        let td = task_definition(&c, &env_of(&[("DATABASE_URL", url)]));
        Spec::new(&c, &td, &Secrets::default(), 1).expect("spec")
    };
    let first = with_url("postgres://shoal:hunter2@db:5432/shoal");
    let rotated = with_url("postgres://shoal:other@db:5432/shoal");
    assert_ne!(
        first.revision, rotated.revision,
        "a new password is a new revision"
    );
}

/// A start refused for a taken host port is retried on the next one; other refusals are not.
#[test]
fn a_taken_host_port_is_told_from_other_start_failures() {
    let refused = |status_code: u16, message: &str| {
        containers::port_taken(&bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        })
    };
    assert!(refused(
        500,
        "driver failed programming external connectivity on endpoint shoal-p-local-worker-0 \
         (ff08c4): Bind for 127.0.0.1:9100 failed: port is already allocated"
    ));
    assert!(refused(
        500,
        "listen tcp4 127.0.0.1:9100: bind: address already in use"
    ));
    assert!(!refused(
        500,
        "OCI runtime create failed: exec: \"run\": not found"
    ));
    assert!(!refused(404, "No such container: shoal-p-local-worker-0"));
}
