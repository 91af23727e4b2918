//! The autoscaler over many ticks on the real local broker and the docker platform: real
//! containers of a worker whose cost per message is known, traffic at a fixed rate from the
//! test, and `shoal autoscale` (or the daemon's own tick, for the CloudWatch test) deciding
//! every second or two.
//!
//! The worker is `tests/fixtures/lag-worker`: it sleeps `WORK_MS_PER_MESSAGE` on each message
//! before its offset is committed, so one replica handles at most 1000 / that many messages a
//! second, and `STALL_PARTITION=N` makes it never handle or commit partition N. The test
//! builds it with cargo on this machine (into cargo's target directory, so only the first
//! run compiles librdkafka) and `shoal deploy --env local` builds its image: one COPY on the
//! local stand-in for `debian:bookworm-slim`, a cached layer when the binary did not change.
//! Nothing here is a test double: the lag reader, the docker platform's scaler and (in the
//! CloudWatch test) the CloudWatch publisher on moto are the production ones.
//!
//! On the stack's broker, nisshi 0.8, the group's members are the stable group's member list
//! (it answers DescribeGroups without assignments). On tansu 0.6 (`SHOAL_BROKER=tansu`), which
//! cannot answer DescribeGroups, they are the docker platform's running containers: the
//! fallback the daemon documents.
//!
//! Each test has its own project (`it-<random>`), topic and group; a guard removes the
//! project's containers, network and images when the test ends, passed or failed.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

use shoal::platform::ecs::CloudWatchMetrics;
use shoal::scale::daemon::{Autoscaler, ReadLag};
use shoal::scale::policy::Observation;

use crate::support::{assert_ok, lag_reader, repo_root, text, Sandbox};

/// The docker environment added to the sandbox's `shoal.toml` (which keeps its moto
/// environment, for the CloudWatch client).
const LOCAL_ENV: &str = r#"
[env.local]
platform = "docker"
registry = "${SHOAL_REGISTRY:-127.0.0.1:5000}"
kafka = { bootstrap = ["${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"] }
"#;

/// The consumer's name in every test.
const WORKER: &str = "worker";

/// Milliseconds the worker spends on a message in every test: one replica handles 40
/// messages a second.
const WORK_MS: u64 = 25;

/// One replica's rate at [`WORK_MS`].
const REPLICA_RATE: f64 = 1000.0 / WORK_MS as f64;

/// The worker's binary, built once per test run with cargo in release mode (stripped, a few
/// MB), wherever cargo puts it (its path from cargo's own JSON messages).
fn worker_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = repo_root().join("tests/fixtures/lag-worker/Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--locked", "--message-format=json"])
            .arg("--manifest-path")
            .arg(&manifest)
            .output()
            .expect("runs cargo");
        assert!(
            out.status.success(),
            "cargo build {}: {}",
            manifest.display(),
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "lag-worker")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| {
                panic!(
                    "cargo built no lag-worker executable: {}",
                    text(&out.stderr)
                )
            })
    })
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("runs docker");
    text(&out.stdout)
}

/// A project with the worker on the docker platform, its topic and group; removes the
/// project's containers, network and images when dropped.
struct Project {
    sb: Sandbox,
    topic: String,
    group: String,
    partitions: i32,
}

impl Project {
    /// Writes the project (the worker with `env` and `[scaling] scaling`), creates its topic
    /// with `partitions` and commits offset 0 on each for the group, so that every partition
    /// counts its lag from the start; then deploys it.
    async fn deploy(partitions: i32, env: &str, scaling: &str) -> Project {
        let sb = Sandbox::new();
        let toml = std::fs::read_to_string(sb.root().join("shoal.toml")).expect("shoal.toml");
        sb.fixture
            .write("shoal.toml", &format!("{toml}{LOCAL_ENV}"));
        let topic = format!("{}-work", sb.project);
        let group = format!("{}-group", sb.project);
        let dir = format!("consumers/{WORKER}");
        sb.fixture.write(
            &format!("{dir}/consumer.toml"),
            &format!(
                "kind = \"worker\"\n[env]\nWORK_MS_PER_MESSAGE = \"{WORK_MS}\"\n{env}\n\
                 [kafka]\ngroup = \"{group}\"\ntopics = [\"{topic}\"]\n\
                 [scaling]\n{scaling}\n"
            ),
        );
        let fixture = repo_root().join("tests/fixtures/lag-worker/Dockerfile");
        std::fs::copy(fixture, sb.root().join(format!("{dir}/Dockerfile"))).expect("Dockerfile");
        std::fs::copy(worker_binary(), sb.root().join(format!("{dir}/lag-worker")))
            .expect("copy the worker");
        let committed = vec![Some(0); partitions as usize];
        crate::lag::backlog(
            &sb.var("KAFKA_BOOTSTRAP"),
            &topic,
            partitions,
            0,
            &group,
            &committed,
        )
        .await;
        let project = Project {
            sb,
            topic,
            group,
            partitions,
        };
        let out = project.shoal(&[
            "deploy",
            "--env",
            "local",
            "--timeout",
            "120s",
            "-o",
            "json",
        ]);
        assert_ok(&out);
        project
    }

    fn shoal(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("runs shoal")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
        c.args(args)
            .current_dir(self.sb.root())
            .envs(&self.sb.vars)
            .env_remove("SHOAL_ENV")
            .env("NO_COLOR", "1");
        c
    }

    /// The worker's running containers, counted with the docker CLI.
    fn running(&self) -> usize {
        docker(&[
            "ps",
            "--filter",
            &format!("label=shoal.project={}", self.sb.project),
            "--filter",
            &format!("label=shoal.consumer={WORKER}"),
            "--filter",
            "status=running",
            "-q",
        ])
        .lines()
        .count()
    }

    /// `shoal autoscale --env local` ticking every `interval` with this scale-in window.
    fn autoscale(&self, interval: Duration, window: Duration) -> Daemon {
        let stderr = tempfile::NamedTempFile::new().expect("a log file");
        let mut child = self
            .command(&[
                "autoscale",
                "--env",
                "local",
                "--interval",
                &format!("{}ms", interval.as_millis()),
                "--scale-in-window",
                &format!("{}ms", window.as_millis()),
                "--listen",
                "127.0.0.1:0",
                "-o",
                "json",
            ])
            .env("RUST_LOG", "shoal=info")
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("the log file"))
            .spawn()
            .expect("starts the daemon");
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let (seen, started) = (ticks.clone(), Instant::now());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let outcomes: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a tick is a JSON line: {e}: {line}"));
                let tick = TickRecord::of(started.elapsed().as_secs_f64(), &outcomes);
                seen.lock().expect("lock").push(tick);
            }
        });
        Daemon {
            child,
            ticks,
            stderr,
            started,
        }
    }

    /// Each partition's lag (end less committed), read with shoal's reader.
    async fn partition_lag(&self) -> Vec<i64> {
        let reader = lag_reader(&self.local(), Duration::from_secs(10)).await;
        let o = reader
            .read(&self.group, std::slice::from_ref(&self.topic))
            .expect("lag read");
        o.partitions
            .iter()
            .map(|p| p.end_offset - p.committed_offset.unwrap_or(0))
            .collect()
    }

    /// The docker environment, its `${VAR}`s from `.stack/env`.
    fn local(&self) -> shoal::manifest::Environment {
        let lookup = |k: &str| self.sb.vars.get(k).cloned();
        self.sb
            .load()
            .environment_with("local", &lookup)
            .unwrap_or_else(|p| panic!("the local environment: {p}"))
    }

    /// Traffic at `rate` messages a second, shared among the partitions by `weights`.
    fn traffic(&self, rate: u32, weights: &[u32]) -> Traffic {
        assert_eq!(weights.len(), self.partitions as usize);
        Traffic::start(&self.sb.var("KAFKA_BOOTSTRAP"), &self.topic, weights, rate)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let label = format!("label=shoal.project={}", self.sb.project);
        let ids = docker(&["ps", "-aq", "--filter", &label]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
        docker(&["network", "rm", &format!("shoal-{}-local", self.sb.project)]);
        let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let ours: Vec<&str> = images
            .lines()
            .filter(|i| i.contains(&format!("/{}/", self.sb.project)))
            .collect();
        if !ours.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ours);
            docker(&args);
        }
    }
}

/// What one tick decided for the worker, as `shoal autoscale -o json` printed it.
#[derive(Debug, Clone)]
struct TickRecord {
    /// Seconds since the daemon started, when the line was read.
    at: f64,
    desired: u32,
    acted: bool,
    lag: u64,
    lag_seconds: Option<f64>,
    stuck: Vec<u32>,
    reason: String,
    error: Option<String>,
}

impl TickRecord {
    fn of(at: f64, outcomes: &serde_json::Value) -> TickRecord {
        let o = outcomes
            .as_array()
            .and_then(|a| a.iter().find(|o| o["consumer"] == WORKER))
            .unwrap_or_else(|| panic!("the tick has the worker's outcome: {outcomes}"));
        let d = &o["decision"];
        TickRecord {
            at,
            desired: d["desired"].as_u64().expect("desired") as u32,
            acted: o["acted"].as_bool().unwrap_or(false),
            lag: d["lag"].as_u64().expect("lag"),
            lag_seconds: d["lag_seconds"].as_f64(),
            stuck: d["stuck"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_u64())
                        .map(|p| p as u32)
                        .collect()
                })
                .unwrap_or_default(),
            reason: d["reason"].as_str().unwrap_or_default().to_string(),
            error: o["error"].as_str().map(String::from),
        }
    }
}

/// The ticks, one line each, for failure messages.
fn show(ticks: &[TickRecord]) -> String {
    ticks
        .iter()
        .map(|t| {
            format!(
                "  {:6.1}s desired {}{} lag {} lag_s {} stuck {:?}{} — {}",
                t.at,
                t.desired,
                if t.acted { " (set)" } else { "" },
                t.lag,
                t.lag_seconds
                    .map_or_else(|| "-".to_string(), |s| format!("{s:.1}")),
                t.stuck,
                t.error
                    .as_ref()
                    .map(|e| format!(" error {e}"))
                    .unwrap_or_default(),
                t.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running `shoal autoscale`, killed when dropped.
struct Daemon {
    child: std::process::Child,
    ticks: Arc<Mutex<Vec<TickRecord>>>,
    stderr: tempfile::NamedTempFile,
    started: Instant,
}

impl Daemon {
    fn ticks(&self) -> Vec<TickRecord> {
        self.ticks.lock().expect("lock").clone()
    }

    /// Seconds since the daemon started.
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Waits until `done` holds for the ticks so far; fails after `timeout` showing every tick
    /// and the end of the daemon's log.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[TickRecord]) -> bool,
    ) -> Vec<TickRecord> {
        let start = Instant::now();
        loop {
            let ticks = self.ticks();
            if done(&ticks) {
                return ticks;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) while waiting for {what}\n{}\n{}",
                    show(&ticks),
                    self.log()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; ticks:\n{}\n{}",
                show(&ticks),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of the daemon's log.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!(
            "daemon log (last {} lines):\n{}",
            tail.len(),
            tail.join("\n")
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages produced at a fixed total rate (changeable), shared among the partitions by
/// weight, from a thread of the test; stopped (and flushed) when dropped.
struct Traffic {
    rate: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Traffic {
    fn start(bootstrap: &str, topic: &str, weights: &[u32], rate: u32) -> Traffic {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let (rate, stop) = (
            Arc::new(AtomicU32::new(rate)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, s, topic) = (rate.clone(), stop.clone(), topic.to_string());
        let total: u32 = weights.iter().sum();
        let shares: Vec<f64> = weights
            .iter()
            .map(|&w| f64::from(w) / f64::from(total))
            .collect();
        let thread = std::thread::spawn(move || {
            const STEP: Duration = Duration::from_millis(50);
            let mut owed = vec![0.0f64; shares.len()];
            let mut sent = 0u64;
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let per_step = f64::from(r.load(Ordering::Relaxed)) * STEP.as_secs_f64();
                for (p, share) in shares.iter().enumerate() {
                    owed[p] += per_step * share;
                    while owed[p] >= 1.0 {
                        owed[p] -= 1.0;
                        let payload = format!("message {sent}");
                        let record = BaseRecord::<(), _>::to(&topic)
                            .partition(p as i32)
                            .payload(&payload);
                        if let Err((e, _)) = producer.send(record) {
                            panic!("produce to {topic}[{p}]: {e}");
                        }
                        sent += 1;
                    }
                }
                next += STEP;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
            sent
        });
        Traffic {
            rate,
            stop,
            thread: Some(thread),
        }
    }

    fn set_rate(&self, rate: u32) {
        self.rate.store(rate, Ordering::Relaxed);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Steady traffic at 2.2 times one replica's rate scales the worker out to at least the 3
/// replicas that keep up; traffic lowered to a quarter of one replica's rate (never zero)
/// scales it back in to 1, within the scale-in window plus two ticks of the backlog having
/// drained.
#[tokio::test(flavor = "multi_thread")]
async fn steady_traffic_scales_out_and_lower_traffic_scales_back_in() {
    let interval = Duration::from_secs(2);
    let window = Duration::from_secs(10);
    let p = Project::deploy(6, "", "min = 1\nmax = 6\nmax_lag_seconds = 20").await;
    assert_eq!(p.running(), 1, "deployed at the minimum");
    // 2.2, not 2.5: three replicas then have a quarter of one replica's rate to spare, so the
    // backlog of a rebalance (each change of count pauses the group) drains in well under the
    // keep-up wait below even on a loaded machine.
    let high = (REPLICA_RATE * 2.2) as u32;
    let traffic = p.traffic(high, &[1; 6]);
    let mut daemon = p.autoscale(interval, window);

    // ceil(88 / 40) = 3: fewer replicas cannot keep up.
    let ticks = daemon
        .until("a scale-out to 3 or more", Duration::from_secs(90), |t| {
            t.iter().any(|t| t.desired >= 3)
        })
        .await;
    let scaled = ticks.iter().position(|t| t.desired >= 3).expect("found");
    assert!(ticks[scaled].error.is_none(), "{}", show(&ticks));
    // The tick set the count once the new containers were healthy; on a loaded machine the
    // docker CLI may list them a moment later.
    let seen = Instant::now();
    while p.running() < 3 && seen.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        p.running() >= 3,
        "{} running\n{}",
        p.running(),
        show(&ticks)
    );

    // Steady: for 10 more ticks of the same traffic the count stays at 3 or more, and the
    // replicas keep up (lag no more than two ticks of arrivals at the end).
    let ticks = daemon
        .until("10 ticks of steady traffic", Duration::from_secs(60), |t| {
            t.len() >= scaled + 11
        })
        .await;
    assert!(
        ticks[scaled..].iter().all(|t| t.desired >= 3),
        "no scale-in under steady traffic:\n{}",
        show(&ticks)
    );
    let keeping_up = (high as f64 * interval.as_secs_f64() * 2.0) as u64;
    daemon
        .until(
            "the scaled-out replicas to keep up",
            Duration::from_secs(120),
            |t| t.last().is_some_and(|t| t.lag <= keeping_up),
        )
        .await;

    let low = (REPLICA_RATE / 4.0) as u32;
    traffic.set_rate(low);
    let lowered = daemon.now();
    // Drained: no more than a few seconds of the low traffic behind.
    let drained_lag = u64::from(low) * 5;
    let ticks = daemon
        .until(
            "the backlog to drain at the low rate",
            Duration::from_secs(60),
            |t| t.iter().any(|t| t.at > lowered && t.lag <= drained_lag),
        )
        .await;
    let drained = ticks
        .iter()
        .find(|t| t.at > lowered && t.lag <= drained_lag)
        .expect("found")
        .at;
    // The window, two ticks, and a second for the ticks' own run time.
    let deadline = window.as_secs_f64() + 2.0 * interval.as_secs_f64() + 1.0;
    let ticks = daemon
        .until(
            "a scale-in to 1",
            Duration::from_secs_f64(deadline + 30.0),
            |t| t.iter().any(|t| t.at > lowered && t.desired == 1),
        )
        .await;
    let back = ticks
        .iter()
        .find(|t| t.at > lowered && t.desired == 1)
        .expect("found");
    assert!(
        back.at - drained <= deadline,
        "scaled in {:.1}s after the backlog drained (at {drained:.1}s), more than the window \
         ({window:?}) plus two ticks; ticks:\n{}",
        back.at - drained,
        show(&ticks)
    );
    // The daemon removed the containers.
    let start = Instant::now();
    while p.running() != 1 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(p.running(), 1, "ticks:\n{}", show(&daemon.ticks()));
    drop(traffic);
    eprintln!("ticks:\n{}", show(&daemon.ticks()));
}

/// A partition the worker stalls on (partition 2, which takes most of the traffic): the
/// daemon reports it stuck, leaves it out of the lag, and never scales for it, though its
/// lag grows well past what would scale the group out if it counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_partition_is_reported_stuck_and_not_scaled_for() {
    let interval = Duration::from_secs(1);
    let p = Project::deploy(
        6,
        "STALL_PARTITION = \"2\"",
        "min = 1\nmax = 6\nmax_lag_seconds = 10",
    )
    .await;
    // 60 msg/s on partition 2, 3 msg/s on each of the others (15 msg/s: well under one
    // replica's 40).
    let _traffic = p.traffic(75, &[1, 1, 20, 1, 1, 1]);
    let mut daemon = p.autoscale(interval, Duration::from_secs(5));

    let ticks = daemon
        .until("partition 2 reported stuck", Duration::from_secs(60), |t| {
            t.iter().any(|t| t.stuck == [2])
        })
        .await;
    let first = ticks.iter().position(|t| t.stuck == [2]).expect("found");
    assert!(
        ticks[first].reason.contains("stuck"),
        "the reason says so: {}",
        show(&ticks)
    );
    // Long enough for partition 2 to be far behind: 1500 messages at 60 msg/s.
    let ticks = daemon
        .until("20 more ticks", Duration::from_secs(90), |t| {
            t.len() >= first + 20
        })
        .await;
    let lag = p.partition_lag().await;
    assert!(
        lag[2] >= 1000,
        "partition 2 fell behind: {lag:?}\n{}",
        show(&ticks)
    );
    for t in &ticks[first..] {
        assert_eq!(t.stuck, [2], "still stuck:\n{}", show(&ticks));
        assert!(
            t.lag < lag[2] as u64 / 4,
            "the stuck partition is left out of the lag ({lag:?}):\n{}",
            show(&ticks)
        );
    }
    assert!(
        ticks.iter().all(|t| t.desired == 1),
        "never scaled for the stuck partition:\n{}",
        show(&ticks)
    );
    assert_eq!(p.running(), 1);
    eprintln!("partition lag {lag:?}; ticks:\n{}", show(&ticks));
}

/// The daemon runs at least 20 ticks (one a second) through a burst well beyond what the
/// maximum keeps up with (8 ticks at the maximum) and a quiet spell after it, and never
/// decides, nor runs, a count outside the manifest's [2, 3].
#[tokio::test(flavor = "multi_thread")]
async fn twenty_ticks_never_leave_the_manifest_bounds() {
    let p = Project::deploy(6, "", "min = 2\nmax = 3\nmax_lag_seconds = 10").await;
    assert_eq!(p.running(), 2, "deployed at the minimum");
    // 200 msg/s: five replicas' worth, more than the maximum of 3 can take.
    let traffic = p.traffic((REPLICA_RATE * 5.0) as u32, &[1; 6]);
    let daemon = p.autoscale(Duration::from_secs(1), Duration::from_secs(3));
    let mut running = Vec::new();
    watch_running(&p, &daemon, &mut running, "8 ticks at the maximum", |t| {
        t.iter().filter(|t| t.desired == 3).count() >= 8
    })
    .await;
    traffic.set_rate(0);
    let quiet = daemon.now();
    watch_running(&p, &daemon, &mut running, "10 quiet ticks", |t| {
        t.len() >= 20 && t.iter().filter(|t| t.at > quiet).count() >= 10
    })
    .await;
    let ticks = daemon.ticks();
    for t in &ticks {
        assert!(
            (2..=3).contains(&t.desired),
            "desired {} outside [2, 3]:\n{}",
            t.desired,
            show(&ticks)
        );
        assert!(t.error.is_none(), "{}", show(&ticks));
    }
    assert!(
        running.iter().all(|n| (2..=3).contains(n)),
        "running containers outside [2, 3]: {running:?}\n{}",
        show(&ticks)
    );
    eprintln!("running {running:?}; ticks:\n{}", show(&ticks));
}

/// Counts the worker's running containers every half second into `running` until `done`
/// holds for the daemon's ticks; fails after 90 s showing them.
async fn watch_running(
    p: &Project,
    daemon: &Daemon,
    running: &mut Vec<usize>,
    what: &str,
    done: impl Fn(&[TickRecord]) -> bool,
) {
    let start = Instant::now();
    loop {
        running.push(p.running());
        let ticks = daemon.ticks();
        if done(&ticks) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}; running {running:?}; ticks:\n{}\n{}",
            show(&ticks),
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The production lag reader, on the blocking pool as the daemon runs it.
struct Reader(Arc<shoal::kafka::lag::LagReader>);

impl ReadLag for Reader {
    async fn read(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Observation, shoal::kafka::KafkaError> {
        let (reader, group, topics) = (self.0.clone(), group.to_string(), topics.to_vec());
        tokio::task::spawn_blocking(move || reader.read(&group, &topics))
            .await
            .expect("the read's task")
    }
}

/// The daemon's tick with the production reader, the docker platform's scaler and the
/// CloudWatch publisher on moto: once the rates are known, `ConsumerLagSeconds` reaches
/// CloudWatch (read back with GetMetricStatistics) with exactly the values the ticks decided,
/// and they are plausible for one replica at half its rate: under `max_lag_seconds`.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_seconds_reaches_cloudwatch() {
    let interval = Duration::from_secs(1);
    let p = Project::deploy(6, "", "min = 1\nmax = 3\nmax_lag_seconds = 10").await;
    let _traffic = p.traffic((REPLICA_RATE / 2.0) as u32, &[1; 6]);

    let local = p.local();
    let reader = lag_reader(&local, Duration::from_secs(10)).await;
    let docker = shoal::platform::docker::connect().await.expect("docker");
    let scale = shoal::platform::docker::DockerScale::new(docker, &local, &p.sb.project);
    let cfg = p.sb.aws_config(&p.sb.env()).await;
    let metrics = CloudWatchMetrics(shoal::aws::cloudwatch(&cfg));
    let targets = shoal::scale::command::targets(&p.sb.fleet(), interval, Duration::from_secs(5));
    assert_eq!(targets.len(), 1);
    let mut autoscaler = Autoscaler::new(&p.sb.project, targets);
    let reader = Reader(Arc::new(reader));

    let started = aws_smithy_types::DateTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64
            - 60,
    );
    let mut published = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..30 {
        let tick = autoscaler.tick(&reader, &scale, &metrics, false).await;
        assert!(tick.publish_error.is_none(), "{:?}", tick.publish_error);
        let o = &tick.outcomes[0];
        assert!(o.error.is_none(), "{o:?}");
        seen.push(format!(
            "{:?} — {}",
            o.decision.lag_seconds, o.decision.reason
        ));
        published.extend(o.decision.lag_seconds);
        if published.len() >= 3 {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    assert!(
        published.len() >= 3,
        "lag seconds known on 3 ticks out of 30:\n{}",
        seen.join("\n")
    );

    let names = crate::autoscale::metric_names(&cfg, WORKER).await;
    assert!(names.iter().any(|n| n == "ConsumerLagSeconds"), "{names:?}");
    let dimension = |name: &str, value: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(name)
            .value(value)
            .build()
    };
    let ended = aws_smithy_types::DateTime::from_secs(started.secs() + 600);
    let stats = shoal::aws::cloudwatch(&cfg)
        .get_metric_statistics()
        .namespace(shoal::aws::cloudwatch::NAMESPACE)
        .metric_name("ConsumerLagSeconds")
        .dimensions(dimension("Project", &p.sb.project))
        .dimensions(dimension("Service", WORKER))
        .start_time(started)
        .end_time(ended)
        .period(3600)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Minimum)
        .statistics(aws_sdk_cloudwatch::types::Statistic::SampleCount)
        .send()
        .await
        .expect("GetMetricStatistics");
    let points = stats.datapoints();
    assert_eq!(points.len(), 1, "{points:?}");
    let point = &points[0];
    let max = published.iter().copied().fold(f64::MIN, f64::max);
    let min = published.iter().copied().fold(f64::MAX, f64::min);
    assert_eq!(
        point.sample_count(),
        Some(published.len() as f64),
        "{point:?}"
    );
    assert!(
        point.maximum().is_some_and(|m| (m - max).abs() < 1e-6)
            && point.minimum().is_some_and(|m| (m - min).abs() < 1e-6),
        "CloudWatch has {point:?}; the ticks published {published:?}"
    );
    assert!(
        min >= 0.0 && max < 10.0,
        "one replica at half its rate stays under max_lag_seconds: {published:?}\n{}",
        seen.join("\n")
    );
    eprintln!("CloudWatch {point:?}; ticks:\n{}", seen.join("\n"));
}
