//! The docker platform against the machine's real Docker Engine, the local stack's stand-in
//! for `debian:bookworm-slim` and the stack's tansu: deploys, no-op deploys, rolling
//! replacement, rollback of a crashing revision, and the autoscaler on real lag.
//!
//! The workload is `tests/fixtures/docker/webserver.rs`, a std-only HTTP server compiled here
//! with `rustc -O` and copied into an image `FROM debian:bookworm-slim` (nothing is pulled).
//! Containers are checked with the `docker` CLI, a client independent of shoal's bollard.
//!
//! Each test has its own project (`it-<random>`) and its own API port range, and a guard
//! removes the project's containers and images when the test ends, passed or failed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{assert_ok, stack_env, text, Fixture};

const SHOAL_TOML: &str = r#"project = "{project}"
default_env = "local"

[env.local]
platform = "docker"
registry = "127.0.0.1:5000"
vars = { GREETING = "hello" }
kafka = { bootstrap = ["${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"] }
"#;

const DOCKERFILE: &str =
    "FROM debian:bookworm-slim\nCOPY webserver /webserver\nCMD [\"/webserver\"]\n";

/// The fixture server, compiled once per test run.
fn webserver() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shoal-it-webserver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let bin = dir.join("webserver");
        let src = crate::support::repo_root().join("tests/fixtures/docker/webserver.rs");
        let out = Command::new("rustc")
            .args(["-O", "--edition", "2021", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("runs rustc");
        assert!(out.status.success(), "rustc: {}", text(&out.stderr));
        bin
    })
}

pub(crate) fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("runs docker");
    text(&out.stdout)
}

/// A project on the docker platform, removed (containers and images) when dropped.
pub(crate) struct Local {
    pub(crate) fixture: Fixture,
    pub(crate) project: String,
    vars: std::collections::BTreeMap<String, String>,
}

impl Local {
    /// The local broker, as the stack's env names it.
    pub(crate) fn bootstrap(&self) -> String {
        self.vars
            .get("KAFKA_BOOTSTRAP")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:9092".into())
    }

    /// A worker `worker` on `topic` in `group`, scaled between `min` and `max`.
    pub(crate) fn scaled_worker(&self, topic: &str, group: &str, min: u32, max: u32) {
        self.consumer(
            "worker",
            &format!(
                "kind = \"worker\"\n[kafka]\ngroup = \"{group}\"\ntopics = [\"{topic}\"]\n\
                 [scaling]\nmin = {min}\nmax = {max}\nmax_lag_seconds = 30\n"
            ),
        );
    }

    pub(crate) fn new() -> Local {
        let vars = stack_env();
        let fixture = Fixture::new("");
        let project = format!("it-{}", fixture.unique());
        fixture.write("shoal.toml", &SHOAL_TOML.replace("{project}", &project));
        Local {
            fixture,
            project,
            vars,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.fixture.root()
    }

    /// A port range of this test's own (from its unique name), so parallel tests never meet.
    fn port(&self) -> u16 {
        let h = self
            .project
            .bytes()
            .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
        20000 + (h % 2000) as u16 * 10
    }

    /// A consumer folder with the webserver binary, a Dockerfile and this manifest.
    fn consumer(&self, name: &str, manifest: &str) {
        self.fixture
            .write(&format!("consumers/{name}/consumer.toml"), manifest);
        self.fixture
            .write(&format!("consumers/{name}/Dockerfile"), DOCKERFILE);
        std::fs::copy(
            webserver(),
            self.root().join(format!("consumers/{name}/webserver")),
        )
        .expect("copy the webserver");
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
        c.args(args)
            .current_dir(self.root())
            .envs(&self.vars)
            .env_remove("SHOAL_ENV")
            .env("NO_COLOR", "1");
        c
    }

    pub(crate) fn shoal(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs shoal")
    }

    pub(crate) fn deploy(&self) -> Output {
        self.shoal(&["deploy", "--env", "local", "--timeout", "60s", "-o", "json"])
    }

    /// A deploy with text output: errors on stderr, as a person sees them.
    fn deploy_text(&self) -> Output {
        self.shoal(&["deploy", "--env", "local", "--timeout", "60s"])
    }

    /// `shoal status`, or `None` when it fails (a test rewriting a manifest while status
    /// hashes the build context makes it fail; the prober then keeps the ports it knows).
    fn try_status(&self) -> Option<serde_json::Value> {
        let out = self.shoal(&["status", "--env", "local", "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Rewrites a consumer's manifest only.
    fn manifest(&self, name: &str, manifest: &str) {
        self.fixture
            .write(&format!("consumers/{name}/consumer.toml"), manifest);
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let out = self.shoal(&["status", "--env", "local", "-o", "json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// `(name, state, revision)` of the project's containers, from the docker CLI.
    pub(crate) fn containers(&self) -> Vec<(String, String, String)> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=shoal.project={}", self.project),
            "--format",
            "{{.Names}}\t{{.State}}\t{{.Label \"shoal.revision\"}}",
        ])
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((
                it.next()?.to_string(),
                it.next()?.to_string(),
                it.next()?.to_string(),
            ))
        })
        .collect()
    }

    pub(crate) fn running(&self) -> Vec<(String, String, String)> {
        self.containers()
            .into_iter()
            .filter(|c| c.1 == "running")
            .collect()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=shoal.project={}", self.project),
        ]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
        docker(&["network", "rm", &format!("shoal-{}-local", self.project)]);
        let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let ours: Vec<&str> = images
            .lines()
            .filter(|i| i.contains(&format!("/{}/", self.project)))
            .collect();
        if !ours.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ours);
            docker(&args);
        }
    }
}

/// `GET http://127.0.0.1:<port><path>`: (status, body), or `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Every port `shoal status` lists for a consumer: its rows' ports and each container's.
fn ports(status: &serde_json::Value, consumer: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for row in status["services"].as_array().into_iter().flatten() {
        if row["consumer"] != consumer {
            continue;
        }
        for p in row["ports"].as_array().into_iter().flatten() {
            out.extend(p.as_u64().map(|p| p as u16));
        }
        for c in row["containers"].as_array().into_iter().flatten() {
            out.extend(c["port"].as_u64().map(|p| p as u16));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn api_manifest(port: u16, version: &str, extra_env: &str) -> String {
    format!(
        "kind = \"api\"\n[api]\nport = {port}\nhealth_path = \"/health\"\n\
         [env]\nVERSION = \"{version}\"\n{extra_env}\n\
         [kafka]\ngroup = \"web\"\ntopics = [\"web-events\"]\n\
         [scaling]\nmin = 2\nmax = 2\nmax_lag_seconds = 30\n"
    )
}

#[test]
fn a_deploy_runs_the_containers_the_api_answers_and_a_second_deploy_is_a_no_op() {
    let l = Local::new();
    let port = l.port();
    l.consumer("web", &api_manifest(port, "v1", ""));

    let job_summary = l.root().join("job-summary.md");
    let out = l
        .command(&["deploy", "--env", "local", "--timeout", "60s", "-o", "json"])
        .env("GITHUB_STEP_SUMMARY", &job_summary)
        .output()
        .expect("runs shoal");
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["platform"], "docker");
    assert_eq!(v["plan"]["summary"]["create"], 1, "{v}");
    let md = std::fs::read_to_string(&job_summary).expect("the job summary is written");
    assert!(
        md.contains(&format!("shoal deploy: {} → local succeeded", l.project)),
        "{md}"
    );
    assert!(md.contains("| create | service | `web` |"), "{md}");

    // Checked with the docker CLI: two running containers, one revision, the labels set.
    let running = l.running();
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(running[0].2, running[1].2, "one revision");
    let names: Vec<&str> = running.iter().map(|c| c.0.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with(&format!("shoal-{}-local-web-", l.project))),
        "{names:?}"
    );
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", names[0]]);
    assert!(env.contains("GREETING=hello"), "environment vars: {env}");
    assert!(env.contains("KAFKA_BOOTSTRAP="), "{env}");
    assert!(env.contains("VERSION=v1"), "{env}");
    let mode = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}}",
        names[0],
    ]);
    assert_eq!(
        mode.trim(),
        format!("shoal-{}-local", l.project),
        "the project's own network"
    );
    assert!(
        env.contains("KAFKA_BOOTSTRAP=host.docker.internal:"),
        "the broker as a container reaches it: {env}"
    );

    // Each replica answers over HTTP on its own port, as status lists them.
    let status = l.status();
    let row = &status["services"][0];
    assert_eq!(row["consumer"], "web");
    assert_eq!(
        (row["desired"].as_u64(), row["running"].as_u64()),
        (Some(2), Some(2))
    );
    let listed = ports(&status, "web");
    assert_eq!(listed, vec![port, port + 1], "{status}");
    for p in listed {
        assert_eq!(get(p, "/"), Some((200, "v1".to_string())));
        assert_eq!(get(p, "/health"), Some((200, "ok".to_string())));
    }

    // A second deploy changes nothing: same containers, a plan with nothing to do.
    let before = l.containers();
    let out = l.deploy();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let summary = &v["plan"]["summary"];
    assert_eq!(
        (&summary["create"], &summary["change"], &summary["delete"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{v}"
    );
    assert_eq!(l.containers(), before, "no container was replaced");
    let out = l.shoal(&["plan", "--env", "local"]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("No changes."),
        "{}",
        text(&out.stdout)
    );

    // A removed consumer folder is a deletion, applied only with --prune.
    std::fs::remove_dir_all(l.root().join("consumers/web")).expect("rm consumers/web");
    let out = l.deploy();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["plan"]["summary"]["delete"], 1, "{v}");
    assert_eq!(l.running().len(), 2, "kept without --prune");
    let out = l.shoal(&["deploy", "--env", "local", "--prune"]);
    assert_ok(&out);
    assert!(l.containers().is_empty(), "{:?}", l.containers());
}

/// "No gap": while the new revision replaces the old, a prober GETs `/` on every port
/// `shoal status` has listed for the consumer so far, and at every probe at least one of them
/// answers 200. (Each replica has a host port of its own and there is no load balancer in
/// front of them, so that is what "serving" means here.)
#[test]
fn a_changed_consumer_is_replaced_with_no_gap_in_service() {
    let l = Arc::new(Local::new());
    let port = l.port();
    // Alarms off: with them, each `status` samples the group's lag over 2 s, and the prober
    // must look many times during the rollout.
    let manifest = |version| {
        format!(
            "{}[alarms]\nenabled = false\n",
            api_manifest(port, version, "")
        )
    };
    l.consumer("web", &manifest("v1"));
    assert_ok(&l.deploy());
    let old: Vec<String> = l.running().into_iter().map(|c| c.0).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (l, stop) = (l.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut known: Vec<u16> = Vec::new();
            let (mut probes, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let listed = l.try_status().map(|v| ports(&v, "web")).unwrap_or_default();
                for p in listed {
                    if !known.contains(&p) {
                        known.push(p);
                    }
                }
                let answered = known
                    .iter()
                    .any(|p| get(*p, "/").is_some_and(|(s, _)| s == 200));
                probes += 1;
                if !answered {
                    failures.push(format!("probe {probes}: none of {known:?} answered"));
                }
            }
            (probes, failures)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    l.manifest("web", &manifest("v2"));
    let out = l.deploy();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (probes, failures) = prober.join().expect("prober");
    assert_ok(&out);
    assert!(probes >= 5, "only {probes} probes");
    assert!(failures.is_empty(), "{failures:?}");

    let running = l.running();
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        running.iter().all(|c| !old.contains(&c.0)),
        "the old containers are gone: {running:?}"
    );
    for p in ports(&l.status(), "web") {
        assert_eq!(get(p, "/"), Some((200, "v2".to_string())));
    }
}

#[test]
fn a_crashing_revision_is_removed_and_the_old_containers_keep_serving() {
    let l = Local::new();
    let port = l.port();
    l.consumer("web", &api_manifest(port, "v1", ""));
    assert_ok(&l.deploy());
    let old = l.running();
    assert_eq!(old.len(), 2);

    l.manifest("web", &api_manifest(port, "v2", "CRASH = \"1\""));
    let out = l.deploy_text();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("service web"), "{err}");
    assert!(
        err.contains("CRASH=1, exiting"),
        "the container's last log lines: {err}"
    );

    assert_eq!(l.running(), old, "the old containers run on");
    assert_eq!(l.containers().len(), 2, "the new containers are removed");
    for p in ports(&l.status(), "web") {
        assert_eq!(get(p, "/"), Some((200, "v1".to_string())));
    }
}

#[test]
fn a_secret_missing_from_the_local_file_is_named_and_a_present_one_is_set() {
    let l = Local::new();
    l.consumer(
        "job",
        "kind = \"worker\"\n[secrets]\nAPI_TOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/t\"\n",
    );
    let out = l.deploy_text();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(".shoal/secrets.local.toml") && err.contains("API_TOKEN"),
        "{err}"
    );
    l.fixture
        .write(".shoal/secrets.local.toml", "API_TOKEN = \"s3cret\"\n");
    assert_ok(&l.deploy());
    let running = l.running();
    assert_eq!(running.len(), 1);
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &running[0].0]);
    assert!(env.contains("API_TOKEN=s3cret"), "{env}");
    // The plan shows the secret as a digest, never its value.
    let out = l.shoal(&["plan", "--env", "local", "-o", "json"]);
    assert_ok(&out);
    assert!(!text(&out.stdout).contains("s3cret"));

    // `shoal down` removes the project's containers.
    let out = l.shoal(&["down", "--env", "local"]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("removed 1 container(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(l.containers().is_empty(), "{:?}", l.containers());
}

/// With `min = 0` a deploy starts no container. A group that never committed still has lag
/// (counted from the log start, `offset_reset = "earliest"`), so the autoscaler starts the
/// first container, from the spec the deploy would use.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_at_zero_that_never_committed_is_started_when_messages_arrive() {
    let l = Local::new();
    let topic = format!("{}-wake", l.project);
    let group = format!("{}-group", l.project);
    l.scaled_worker(&topic, &group, 0, 2);
    assert_ok(&l.deploy());
    assert!(l.running().is_empty(), "{:?}", l.running());
    let bootstrap = l.bootstrap();
    crate::lag::backlog(&bootstrap, &topic, 2, 10, &group, &[]).await;

    let out = l.shoal(&["autoscale", "--env", "local", "--once", "-o", "json"]);
    assert_ok(&out);
    let ticks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ticks[0]["acted"], true, "{ticks}");
    assert_eq!(ticks[0]["decision"]["lag"], 20, "{ticks}");
    let reason = ticks[0]["decision"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("scale from zero"), "{reason}");
    assert!(!l.running().is_empty(), "a container was started: {ticks}");
}

/// Lag on tansu drives the container count: a backlog (committed at 0) scales the worker out
/// with `autoscale --once`; once the test commits the end offsets, the daemon (ticking every
/// second, with a 2 s scale-in window) scales it back to the minimum.
#[tokio::test(flavor = "multi_thread")]
async fn the_autoscaler_adds_containers_for_a_backlog_and_removes_them_when_it_drains() {
    let l = Local::new();
    let topic = format!("{}-jobs", l.project);
    let group = format!("{}-group", l.project);
    l.scaled_worker(&topic, &group, 1, 4);
    assert_ok(&l.deploy());
    assert_eq!(l.running().len(), 1);

    // 4 partitions × 1500 messages, committed at 0: 6000 messages of lag.
    let bootstrap = l.bootstrap();
    crate::lag::backlog(&bootstrap, &topic, 4, 1500, &group, &[Some(0); 4]).await;

    let out = l.shoal(&["autoscale", "--env", "local", "--once", "-o", "json"]);
    assert_ok(&out);
    let ticks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ticks[0]["acted"], true, "{ticks}");
    let n = l.running().len();
    assert!(n > 1, "scaled out: {n} running; {ticks}");
    assert_eq!(
        l.status()["services"][0]["desired"].as_u64(),
        Some(n as u64)
    );

    // A deploy keeps the count the autoscaler set (it is within min and max): nothing to do.
    let out = l.deploy();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["plan"]["summary"]["change"], 0, "{v}");
    assert_eq!(l.running().len(), n);

    // Drain: the group commits the end offsets.
    {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(&topic, p, Offset::Offset(1500))
                .expect("offset");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }

    let mut daemon = l
        .command(&[
            "autoscale",
            "--env",
            "local",
            "--interval",
            "1s",
            "--scale-in-window",
            "2s",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts the daemon");
    let start = Instant::now();
    let mut now = l.running().len();
    while now != 1 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        now = l.running().len();
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(now, 1, "scaled back in to the minimum");
}

/// The repository's own exposure-consumer on the docker platform (its real image, built from
/// its folder): `shoal autoscale` adds exposure-consumer containers for a backlog on tansu,
/// and through the scale-out and the rebalances it causes every event reaches PostgreSQL
/// exactly once (checked with psql).
#[tokio::test(flavor = "multi_thread")]
async fn the_exposure_consumer_scales_out_on_real_lag_and_writes_every_row_once() {
    let l = Local::new();
    let topic = format!("{}-exposures", l.project);
    let group = format!("{}-group", l.project);
    let experiment = format!("{}-exp", l.project);
    let database = crate::workloads::database_url();

    // The workload's folder as it ships, with what its build context takes from the cargo
    // workspace (consumers/Cargo.toml and Cargo.lock, the crates it shares with exposure-api,
    // and exposure-api's manifest but not its folder, which would deploy it too), with its
    // topics, group and scaling made the test's own.
    let consumers = crate::support::repo_root().join("consumers");
    for folder in [
        "exposure-consumer",
        "exposure-event",
        "warehouse-tls",
        "msk-iam",
    ] {
        crate::support::copy_tree(
            &consumers.join(folder),
            &l.root().join("consumers").join(folder),
        );
    }
    for file in ["Cargo.toml", "Cargo.lock", "exposure-api/Cargo.toml"] {
        l.fixture.write(
            &format!("consumers/{file}"),
            &std::fs::read_to_string(consumers.join(file)).expect("a workspace file"),
        );
    }
    let manifest = l.root().join("consumers/exposure-consumer/consumer.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let text = text
        .replace(
            "group = \"exposure-consumer\"",
            &format!("group = \"{group}\""),
        )
        .replace("\"exposures.dlq\"", &format!("\"{topic}.dlq\""))
        .replace("\"exposures\"", &format!("\"{topic}\""))
        .replace("partitions = 12", "partitions = 6")
        .replace("max = 12", "max = 3")
        .replace("max_lag_seconds = 30", "max_lag_seconds = 5")
        .replace(
            "[env]\n",
            &format!(
                "[env]\nEXPOSURES_TOPIC = \"{topic}\"\nDLQ_TOPIC = \"{topic}.dlq\"\nDATABASE_URL = \"{database}\"\n"
            ),
        );
    std::fs::write(&manifest, text).expect("write manifest");

    let out = l.shoal(&["deploy", "--env", "local", "--timeout", "20m", "-o", "json"]);
    assert_ok(&out);
    assert_eq!(l.running().len(), 1);

    // A backlog of valid events, more than one replica drains before the autoscaler looks.
    let n = 30_000;
    let bootstrap = l.bootstrap();
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let produce = |events: std::ops::Range<usize>| {
        let now = "2026-11-22T00:00:00Z";
        let pending: Vec<_> = events
            .map(|i| {
                let value = serde_json::json!({
                    "exposure_id": format!("{experiment}-{i}"),
                    "ds_user_id": format!("user-{}", i % 97),
                    "experiment_id": experiment,
                    "variation_id": "control",
                    "attributes": {"i": i},
                    "source": "docker_platform test",
                    "timestamp": now,
                    "accepted_at": now,
                })
                .to_string();
                let key = format!("user-{}", i % 97);
                let (producer, topic) = (producer.clone(), topic.clone());
                tokio::spawn(async move {
                    producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&value),
                            Duration::from_secs(30),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| e)
                })
            })
            .collect();
        async move {
            for p in pending {
                p.await.expect("join").expect("produced");
            }
        }
    };
    let rows = format!(
        "SELECT count(*), count(DISTINCT exposure_id) FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
    );
    // First a few events on every partition, so that the group has committed offsets: lag is
    // counted from them (a partition the group never committed on is not lag, see
    // src/kafka/lag.rs).
    let warm_up = 600;
    produce(0..warm_up).await;
    crate::workloads::wait_for("the warm-up events", Duration::from_secs(120), || {
        (crate::workloads::psql(&rows) == format!("{warm_up}|{warm_up}")).then_some(())
    });
    // One replica drains events about as fast as they are produced here, so it is paused while
    // the backlog is made, and the autoscaler sees all of it.
    let (replica, _, _) = l.running().into_iter().next().expect("a replica");
    docker(&["pause", &replica]);
    produce(warm_up..n).await;
    docker(&["unpause", &replica]);

    let out = l.shoal(&["autoscale", "--env", "local", "--once", "-o", "json"]);
    assert_ok(&out);
    let ticks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let scaled = l.running().len();
    assert!(
        scaled > 1,
        "exposure-consumer scaled out: {scaled} running; {ticks}"
    );

    let seen = crate::workloads::wait_for(
        "every event in the warehouse",
        Duration::from_secs(300),
        || {
            let row = crate::workloads::psql(&rows);
            (row == format!("{n}|{n}")).then_some(row)
        },
    );
    assert_eq!(
        seen,
        format!("{n}|{n}"),
        "exactly once, through the scale-out"
    );
    let out = l.shoal(&["down", "--env", "local"]);
    assert_ok(&out);
    assert!(l.containers().is_empty(), "down removes the containers");
}
