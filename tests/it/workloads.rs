//! Harness for the workload tests: the workload binaries built on this machine, brokers of
//! the tests' own, and the warehouse through psql.
//!
//! The workloads are a cargo workspace of their own (consumers/, also their Docker build
//! context), so they are built here with `cargo build --manifest-path`, into the same target
//! directory as shoal so that shared dependencies compile once.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{repo_root, stack_env};

/// Builds `consumers/<name>` (debug profile) once per test run and returns the binary's path.
pub fn workload_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::BTreeMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let path = cargo_build(&repo_root().join("consumers").join(name), name);
    built.insert(name.to_string(), path.clone());
    path
}

/// Builds the crate in `dir` with cargo (`--locked`, as the Dockerfiles do) into the shared
/// target directory, and returns the binary `name`.
pub fn cargo_build(dir: &std::path::Path, name: &str) -> PathBuf {
    let manifest = dir.join("Cargo.toml");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of {} failed",
        manifest.display()
    );
    let path = target.join("debug").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until `f` returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A broker of the test's own, of the stack's kind (`SHOAL_BROKER` and `SHOAL_BROKER_ENGINE`
/// in `.stack/env`: tansu 0.6 on SQLite, or nisshi 0.8 on SQLite, PostgreSQL or memory), on
/// its own port and storage (a SQLite file, or a database of its own on the stack's PostgreSQL
/// 16), so that a test can stop and restart it without disturbing the shared broker from
/// `scripts/stack`.
pub struct OwnBroker {
    pub port: u16,
    kind: String,
    /// The stack's broker binary (`SHOAL_BROKER_BIN`).
    bin: String,
    storage: String,
    /// The stack's PostgreSQL 16 and the database made for this broker.
    database: Option<(String, String)>,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let stack = stack_env();
        let var = |k: &str, default: &str| stack.get(k).cloned().unwrap_or_else(|| default.into());
        let (kind, engine) = (
            var("SHOAL_BROKER", "tansu"),
            var("SHOAL_BROKER_ENGINE", "sqlite"),
        );
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut database = None;
        // As in scripts/stack: the broker strips the leading "/" of a sqlite:// path and
        // resolves it against its working directory, so it runs from "/".
        let storage = match engine.as_str() {
            "postgres" => {
                let server = var("SHOAL_BROKER_PG", "");
                let name = format!("own_{port}");
                psql_on(
                    &format!("{server}/postgres"),
                    &format!("CREATE DATABASE {name}"),
                )
                .unwrap_or_else(|e| panic!("a database for the test's broker: {e}"));
                let url = format!("{server}/{name}");
                database = Some((server, name));
                url
            }
            "memory" => format!("memory://own-{port}/"),
            _ => format!("sqlite://{}/{kind}.db", dir.path().display()),
        };
        let mut broker = OwnBroker {
            port,
            kind,
            bin: var("SHOAL_BROKER_BIN", ""),
            storage,
            database,
            _dir: dir,
            child: None,
        };
        broker.resume();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) on the same port and data, and waits until it accepts
    /// connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let kind = &self.kind;
        let bin = PathBuf::from(&self.bin);
        assert!(
            bin.is_file(),
            "the stack's broker binary {:?} (SHOAL_BROKER_BIN in .stack/env) is missing: run `scripts/stack up`",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&bin);
        command
            .current_dir("/")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("DATA_LAKE")
            .env("RUST_LOG", "warn")
            .args(["broker", "--cluster-id", "shoal-test"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage]);
        if kind.as_str() == "nisshi" {
            // As in scripts/stack: no wait for more members before a group's first join.
            command.args(["--group-initial-rebalance-delay", "0s"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_for("the test's broker", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).ok()
        });
    }

    /// Whether a fresh, independent client gets the broker's metadata within 3 s.
    pub fn serves(&self) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create();
        client.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(3)).is_ok())
    }

    /// Resumes the broker and waits until `recovered` holds.
    ///
    /// tansu 0.6 can come back unusable: when an idempotent producer bumps its epoch after
    /// events timed out (KIP-360, which librdkafka does on reconnecting), tansu's SQLite engine
    /// panics and from then on resets every connection. When a fresh independent client cannot
    /// get metadata either, the broker is restarted once more, as an operator would restart a
    /// crashed broker. The workload under test is never restarted.
    pub fn resume_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut recovered: impl FnMut() -> bool,
    ) {
        self.resume();
        let start = Instant::now();
        let mut restarts = 0;
        loop {
            if recovered() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            if start.elapsed() > Duration::from_secs(10 * (restarts + 1))
                && restarts < 2
                && !self.serves()
            {
                eprintln!("tansu resets every connection after its restart (its epoch-bump panic); restarting it again");
                restarts += 1;
                self.stop();
                self.resume();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker (SIGKILL), keeping its data for [`OwnBroker::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
        if let Some((server, name)) = &self.database {
            // Best effort: a database left behind is only disk on a test machine.
            let _ = psql_on(
                &format!("{server}/postgres"),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one SQL statement with psql on `url`; the error says what psql answered.
fn psql_on(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql {url} -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The warehouse (PostgreSQL from the local stack) URL.
pub fn database_url() -> String {
    stack_env()
        .get("DATABASE_URL")
        .cloned()
        .unwrap_or_else(|| "postgres://shoal:shoal@127.0.0.1:5432/shoal".to_string())
}

/// Debian's snakeoil certificate, which the local PostgreSQL serves TLS with (its name is
/// `localhost`; it is self-signed, so it is its own CA).
pub const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The warehouse URL through `host`, with libpq's `sslmode`.
pub fn tls_url(host: &str, mode: &str) -> String {
    let url = database_url();
    assert!(url.contains("@127.0.0.1:"), "{url}");
    format!(
        "{}?sslmode={mode}",
        url.replace("@127.0.0.1:", &format!("@{host}:"))
    )
}

/// Runs one SQL statement through psql, an independent client, and returns its unaligned,
/// tuples-only output.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .arg(database_url())
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A workload process that is killed when dropped.
pub struct Running {
    pub child: Child,
}

impl Running {
    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let child = &mut self.child;
        wait_for("the workload to exit after SIGTERM", timeout, || {
            child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a workload binary with these environment variables; its output goes to the test's.
pub fn spawn_workload(name: &str, env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(workload_bin(name));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    Running {
        child: cmd.spawn().expect("start workload"),
    }
}

/// Creates `topic` with `partitions` partitions (replication 1) on `bootstrap`, through
/// rdkafka's admin client; an existing topic is fine. (Never delete topics on tansu 0.6: its
/// DeleteTopics deletes every topic.)
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("CreateTopics");
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("create topic {name}: {code}"),
        }
    }
}

/// An HTTP/1.1 answer: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`), with a plain
/// client of the test's own. `None` when the connection fails.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<HttpAnswer> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut out = request.into_bytes();
    out.extend_from_slice(body);
    // The server may answer (413) before reading the whole body and close: keep what it said.
    let _ = stream.write_all(&out);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Some(HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// `POST path` with a JSON body.
pub fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> Option<HttpAnswer> {
    http(
        "POST",
        addr,
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[(end + 4 + size).min(raw.len())..];
    }
    out
}

/// Every message on `topic` up to its partitions' end offsets as they are now, as (key, value)
/// in UTF-8 (lossy), partition by partition. For messages already acknowledged: what arrives
/// later is not waited for.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::{ClientConfig, Message};
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("it-reader-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "{topic} has no partitions");
    let mut ends = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, end) = consumer
            .fetch_watermarks(topic, p, timeout)
            .expect("ListOffsets");
        if end > 0 {
            ends.insert(p, end);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("offset");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: not read up to its end offsets {ends:?} within 60 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.push((key, value));
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => eprintln!("poll {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The value of the unlabelled Prometheus metric `name` at `addr`'s /metrics.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    let answer = http("GET", addr, "/metrics", &[], b"")?;
    answer
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
