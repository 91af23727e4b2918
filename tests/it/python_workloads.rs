//! `shoal new --lang python`: the scaffolded Python worker and API pass `shoal validate`, and
//! deploy as they are written to the local platform (the Docker Engine, with the local stack's
//! stand-in for `python:3.11-slim-bookworm`; pip installs the pinned requirements from PyPI
//! during the build) and to ECS on moto. On the local platform they run against the stack's
//! broker (tansu): the API answers 202 only once the broker has the event (and 503 when there
//! is no broker), the events are on the topic, the worker's consumer group commits through
//! them, both log JSON lines, pass their own health checks, and exit 0 on SIGTERM. The
//! worker commits a message only once `handle` has returned: a `handle` that raises on one
//! message leaves the group's offset at that message until a fixed `handle` is deployed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::docker_platform::{docker, Local};
use crate::scaffold::{committed, committed_offsets};
use crate::support::{assert_ok, registry_tags, repo_root, shoal, stack_env, text, Fixture};
use crate::workloads::{http, read_topic, wait_for};

/// The image the Python Dockerfile template starts from.
fn python_image() -> String {
    let template = repo_root().join("templates/new/python/Dockerfile.j2");
    let dockerfile = std::fs::read_to_string(&template).expect("the Python Dockerfile template");
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM "))
        .map(|image| image.trim().to_string())
        .expect("a FROM line")
}

/// Fails, saying what to do, when the Python base image is not on this machine.
fn require_python_image() {
    let image = python_image();
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .expect("runs docker");
    assert!(
        out.status.success(),
        "{image} is not on this machine: run `scripts/stack up`, which builds its local stand-in"
    );
}

/// `shoal new NAME --lang python [--kind api]`, topic `topic`.
fn new_python(root: &Path, name: &str, kind: &str, topic: &str) -> std::process::Output {
    shoal(
        root,
        &[
            "new", name, "--lang", "python", "--kind", kind, "--topic", topic,
        ],
    )
}

#[test]
fn new_python_consumers_validate_render_and_compile() {
    let fx = Fixture::standard();
    let id = fx.unique();
    let (worker, api, topic) = (format!("pw{id}"), format!("pa{id}"), format!("py-{id}"));

    let out = new_python(fx.root(), &worker, "worker", &topic);
    assert_ok(&out);
    let listing = text(&out.stdout);
    for file in [
        "consumer.toml",
        "Dockerfile",
        ".dockerignore",
        "requirements.txt",
        "README.md",
        "main.py",
    ] {
        assert!(
            listing.contains(&format!("created consumers/{worker}/{file}\n")),
            "{file} in: {listing}"
        );
    }
    assert!(!listing.contains("Cargo"), "no Rust crate: {listing}");
    assert!(
        listing.contains(&format!("Its code is in consumers/{worker}/main.py.")),
        "{listing}"
    );

    let out = shoal(
        fx.root(),
        &[
            "new", &api, "--lang", "python", "--kind", "api", "--topic", &topic, "-o", "json",
        ],
    );
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["consumer"], api.as_str());
    assert!(
        json["files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f == &format!("consumers/{api}/main.py")),
        "{json}"
    );

    let out = shoal(fx.root(), &["validate"]);
    assert!(out.status.success(), "validate: {}", text(&out.stderr));

    // The ECS task definition checks the API's health with its own Python (no curl).
    let out = shoal(fx.root(), &["render", &api, "-e", "sandbox"]);
    assert_ok(&out);
    let td: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let container = &td["containerDefinitions"][0];
    assert_eq!(
        container["healthCheck"]["command"],
        serde_json::json!(["CMD", "python", "/app/main.py", "healthcheck"]),
        "{td}"
    );
    assert_eq!(container["portMappings"][0]["containerPort"], 8080, "{td}");

    // Both programs are valid Python (this machine's python3, as the image's is 3.11).
    for name in [&worker, &api] {
        let main = fx.root().join("consumers").join(name).join("main.py");
        let out = Command::new("python3")
            .args(["-m", "py_compile"])
            .arg(&main)
            .env("PYTHONPYCACHEPREFIX", fx.root().join("pycache"))
            .output()
            .expect("runs python3");
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }

    // The Rust scaffold stays the default.
    let out = shoal(fx.root(), &["new", &format!("r{id}")]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("Cargo.toml"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn new_help_explains_both_languages() {
    let out = shoal(&repo_root(), &["new", "--help"]);
    assert_ok(&out);
    let help = text(&out.stdout);
    for expected in [
        "--lang <LANG>",
        "[default: rust]",
        "[possible values: rust, python]",
        "python:3.11-slim-bookworm",
        "requirements.txt",
        "shoal new orders-py --lang python",
    ] {
        assert!(help.contains(expected), "{expected:?} in:\n{help}");
    }
    let out = shoal(&repo_root(), &["new", "x", "--lang", "go"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("possible values: rust, python"),
        "{}",
        text(&out.stderr)
    );
}

/// The host ports `shoal status -o json` lists for a consumer: its row's and its containers'.
fn ports(status: &serde_json::Value, consumer: &str) -> Vec<u16> {
    let mut out = BTreeSet::new();
    for row in status["services"].as_array().into_iter().flatten() {
        if row["consumer"] != consumer {
            continue;
        }
        let containers = row["containers"].as_array().into_iter().flatten();
        for p in row["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(containers.map(|c| &c["port"]))
        {
            out.extend(p.as_u64().and_then(|p| u16::try_from(p).ok()));
        }
    }
    out.into_iter().collect()
}

/// Every line a container wrote, each of which must be a JSON object with a time, a level
/// and a message.
fn json_logs(container: &str) -> Vec<serde_json::Value> {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker logs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    all.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{container}: a line that is not JSON ({e}): {line}"));
            for key in ["time", "level", "message"] {
                assert!(v[key].is_string(), "{container}: no {key}: {line}");
            }
            v
        })
        .collect()
}

/// `docker stop` (SIGTERM, then SIGKILL after 20 s) and the exit code.
fn stop(container: &str) -> String {
    docker(&["stop", "-t", "20", container]);
    docker(&["inspect", "--format", "{{.State.ExitCode}}", container])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workloads_run_on_the_local_platform_against_the_broker() {
    require_python_image();
    let l = Local::new();
    let id = l.fixture.unique();
    let (worker, api, topic) = (format!("pw{id}"), format!("pa{id}"), format!("py-{id}"));
    assert_ok(&new_python(l.root(), &worker, "worker", &topic));
    assert_ok(&new_python(l.root(), &api, "api", &topic));

    let out = l.shoal(&[
        "deploy",
        "--env",
        "local",
        "--timeout",
        "180s",
        "-o",
        "json",
    ]);
    assert_ok(&out);
    let status: serde_json::Value = {
        let out = l.shoal(&["status", "--env", "local", "-o", "json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).expect("status JSON")
    };
    let api_port = *ports(&status, &api).first().expect("the API's port");
    let worker_port = *ports(&status, &worker).first().expect("the worker's port");
    let api_addr = format!("127.0.0.1:{api_port}");

    // Both answer their health checks: over HTTP, and Docker's own HEALTHCHECK.
    for (name, port) in [(&api, api_port), (&worker, worker_port)] {
        let answer = wait_for(
            &format!("{name}'s /health"),
            Duration::from_secs(30),
            || {
                http("GET", &format!("127.0.0.1:{port}"), "/health", &[], b"")
                    .filter(|a| a.status == 200)
            },
        );
        assert_eq!(answer.json()["status"], "ok");
    }
    let running = l.running();
    let container = |name: &str| {
        running
            .iter()
            .find(|c| {
                c.0.starts_with(&format!("shoal-{}-local-{name}-", l.project))
            })
            .map(|c| c.0.clone())
            .unwrap_or_else(|| panic!("no container for {name}: {running:?}"))
    };
    let (worker_container, api_container) = (container(&worker), container(&api));
    for c in [&worker_container, &api_container] {
        wait_for(
            &format!("Docker to call {c} healthy"),
            Duration::from_secs(60),
            || {
                (docker(&["inspect", "--format", "{{.State.Health.Status}}", c]).trim()
                    == "healthy")
                    .then_some(())
            },
        );
    }

    // The API answers 202 once the broker has each event; they are all on the topic.
    let mut sent = BTreeSet::new();
    for i in 0..10 {
        let body = format!("{{\"n\":{i}}}");
        let answer = http(
            "POST",
            &api_addr,
            &format!("/events?key=user-{i}"),
            &[],
            body.as_bytes(),
        )
        .expect("POST /events");
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(answer.json()["status"], "accepted");
        sent.insert((format!("user-{i}"), body));
    }
    let answer = http("POST", &api_addr, "/nowhere", &[], b"x").expect("POST /nowhere");
    assert_eq!(answer.status, 404);
    let bootstrap = stack_env()["KAFKA_BOOTSTRAP"].clone();
    let on_topic: BTreeSet<(String, String)> = read_topic(&bootstrap, &topic).into_iter().collect();
    assert_eq!(on_topic, sent);

    // The worker handles them and its group commits through all ten.
    wait_for(
        "the Python worker to commit every message",
        Duration::from_secs(90),
        || (committed(&bootstrap, &worker, &topic, 6) == 10).then_some(()),
    );

    // Logs are JSON lines; the worker logged each message it handled.
    let handled = json_logs(&worker_container)
        .into_iter()
        .filter(|v| v["message"] == "message" && v["topic"] == topic.as_str())
        .count();
    assert_eq!(handled, 10);
    assert!(json_logs(&api_container)
        .iter()
        .any(|v| v["message"] == "listening" && v["port"] == 8080));

    // With no broker to take it, the API does not claim an event: 503 after the delivery
    // timeout. (Its image, run by itself on the host's network, pointed at a closed port.)
    let image = docker(&["inspect", "--format", "{{.Config.Image}}", &api_container])
        .trim()
        .to_string();
    let lone_port = crate::workloads::free_port();
    let lone = crate::support::Container::run(
        &format!("shoal-it-{}-nobroker", l.project),
        &image,
        &[
            ("KAFKA_BOOTSTRAP", "127.0.0.1:1".to_string()),
            ("PORT", lone_port.to_string()),
        ],
        &[],
    );
    let lone_addr = format!("127.0.0.1:{lone_port}");
    wait_for("the lone API's /health", Duration::from_secs(30), || {
        http("GET", &lone_addr, "/health", &[], b"").filter(|a| a.status == 200)
    });
    let answer = http("POST", &lone_addr, "/events", &[], b"{}").expect("POST /events");
    assert_eq!(answer.status, 503, "{}", answer.body);
    drop(lone);

    // SIGTERM: each finishes, says so and exits 0.
    for c in [&worker_container, &api_container] {
        assert_eq!(stop(c), "0", "{c} exits 0 on SIGTERM");
        let logs = json_logs(c);
        let stopping = logs
            .iter()
            .position(|v| v["message"] == "stopping" && v["signal"] == "SIGTERM");
        let stopped = logs.iter().rposition(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("stopped"))
        });
        assert!(
            matches!((stopping, stopped), (Some(a), Some(b)) if a < b),
            "{c}: {logs:?}"
        );
    }
    assert_eq!(committed(&bootstrap, &worker, &topic, 6), 10);
}

/// The offset `group` committed on partition `partition` of `topic`, if any.
fn committed_on(bootstrap: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    committed_offsets(bootstrap, group, topic, partition + 1)[partition as usize]
}

/// The scaffold's `handle`, up to its first statement: where the test puts its failure.
const HANDLE: &str =
    "def handle(message):\n    \"\"\"Processes one message. Put the workload's logic here.\"\"\"\n";

/// The worker commits only what `handle` returned from. Deployed with a `handle` that raises
/// on the message `poison` (offset 2 of partition 0), the worker exits on it, Docker restarts
/// it, and it gets that message again: the group's committed offset stays at 2 through the
/// restarts, never past. A worker that committed before handling (or let librdkafka
/// auto-commit what `poll` returned) would be at 3. With the original `handle` deployed
/// again, the message is handled and the offset moves past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_commits_a_message_only_after_handle_returns() {
    require_python_image();
    let l = Local::new();
    let id = l.fixture.unique();
    let (worker, topic) = (format!("pw{id}"), format!("py-{id}"));
    assert_ok(&new_python(l.root(), &worker, "worker", &topic));
    let main = l.root().join("consumers").join(&worker).join("main.py");
    let original = std::fs::read_to_string(&main).expect("main.py");
    assert!(
        original.contains(HANDLE),
        "the scaffold's handle changed; update HANDLE: {original}"
    );
    let failing = original.replacen(
        HANDLE,
        &format!(
            "{HANDLE}    if message.value() == b\"poison\":\n        raise RuntimeError(\"cannot handle poison\")\n"
        ),
        1,
    );
    std::fs::write(&main, failing).expect("write main.py");
    let deploy = || l.shoal(&["deploy", "--env", "local", "--timeout", "180s"]);
    assert_ok(&deploy());
    let failing_container = l
        .running()
        .first()
        .map(|c| c.0.clone())
        .expect("the worker's container");

    let bootstrap = stack_env()["KAFKA_BOOTSTRAP"].clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for value in ["m0", "m1", "poison", "m3", "m4"] {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .partition(0)
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {value}: {e}"));
    }

    // Two restarts: the worker failed on the message, and failed on it again after the
    // restart, because its offset was not committed. A commit past it fails at once.
    wait_for(
        "the failing worker to be restarted twice",
        Duration::from_secs(120),
        || {
            let at = committed_on(&bootstrap, &worker, &topic, 0);
            assert!(
                at <= Some(2),
                "committed {at:?}: past the message handle raised on (offset 2)"
            );
            let restarts = docker(&[
                "inspect",
                "--format",
                "{{.RestartCount}}",
                &failing_container,
            ]);
            (restarts.trim().parse::<u32>().unwrap_or(0) >= 2).then_some(())
        },
    );
    let failed = json_logs(&failing_container)
        .into_iter()
        .filter(|v| v["message"] == "failed")
        .count();
    assert!(failed >= 2, "the worker logs each failure: {failed}");
    let handled: BTreeSet<i64> = json_logs(&failing_container)
        .iter()
        .filter(|v| v["message"] == "message" && v["partition"] == 0)
        .filter_map(|v| v["offset"].as_i64())
        .collect();
    assert_eq!(handled, BTreeSet::from([0, 1]), "handled before the poison");
    assert_eq!(
        committed_on(&bootstrap, &worker, &topic, 0),
        Some(2),
        "committed through what was handled, and not past the message handle raised on"
    );

    // The fix deployed: the message is handled, and the offset moves past it.
    std::fs::write(&main, &original).expect("write main.py");
    assert_ok(&deploy());
    wait_for(
        "the fixed worker to commit past the message",
        Duration::from_secs(90),
        || (committed_on(&bootstrap, &worker, &topic, 0) == Some(5)).then_some(()),
    );
    let fixed = l
        .running()
        .first()
        .map(|c| c.0.clone())
        .expect("the fixed worker's container");
    assert_ne!(fixed, failing_container);
    assert!(
        json_logs(&fixed)
            .iter()
            .any(|v| v["message"] == "message" && v["partition"] == 0 && v["offset"] == 2),
        "the fixed worker handled offset 2"
    );
}

/// On ECS (moto): both images are built and pushed to the stack's registry, their task
/// definitions registered as written, and their services created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workloads_deploy_to_ecs() {
    require_python_image();
    let sb = crate::support::Sandbox::new();
    let id = sb.fixture.unique();
    let (worker, api, topic) = (format!("pw{id}"), format!("pa{id}"), format!("py-{id}"));
    assert_ok(&new_python(sb.root(), &worker, "worker", &topic));
    assert_ok(&new_python(sb.root(), &api, "api", &topic));

    let out = sb.shoal(&[
        "deploy",
        "--env",
        "sandbox",
        "--timeout",
        "180s",
        "-o",
        "json",
    ]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("deploy JSON");
    assert_eq!(v["ok"], true, "{v}");

    let out = sb.shoal(&["status", "--env", "sandbox", "-o", "json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let env = sb.env();
    let ecs = shoal::aws::ecs(&sb.aws_config(&env).await);
    for name in [&worker, &api] {
        let row = status["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["consumer"] == name.as_str()))
            .unwrap_or_else(|| panic!("no {name} service: {status}"));
        assert_eq!(row["desired"], 1, "{row}");
        let tag = row["image_tag"].as_str().expect("an image tag").to_string();
        let repository = format!("{}/{name}", sb.project);
        assert!(
            registry_tags(&sb, &repository).contains(&tag),
            "{repository}:{tag} pushed"
        );

        let family = format!("{}-{name}", sb.project);
        let td = ecs
            .describe_task_definition()
            .task_definition(&family)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeTaskDefinition {family}: {e:?}"))
            .task_definition
            .expect("a task definition");
        let container = &td.container_definitions()[0];
        assert!(
            container.image().is_some_and(|i| i.ends_with(&tag)),
            "{container:?}"
        );
        let health = container.health_check().map(|h| h.command().to_vec());
        if name == &api {
            assert_eq!(
                health,
                Some(vec![
                    "CMD".to_string(),
                    "python".into(),
                    "/app/main.py".into(),
                    "healthcheck".into()
                ])
            );
        } else {
            assert_eq!(health, None, "ECS checks a worker by its process");
        }
    }
}
