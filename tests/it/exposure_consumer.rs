//! The exposure-consumer workload against the local stack's tansu and PostgreSQL: rows exactly
//! once through crashes (SIGKILL), poison messages to the DLQ, a clean SIGTERM, and a warehouse
//! outage. Each test has its own topics, group and experiment_id, so row counts are its own.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::support::stack_env;
use crate::workloads::{free_port, psql, spawn_workload, tls_url, wait_for, Running, SNAKEOIL};

const PARTITIONS: i32 = 6;

/// A name unique to this run and call.
fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "it-ec-{what}-{:x}{:x}{n}",
        std::process::id(),
        nanos % 0xffff_ffff
    )
}

/// The first 24 characters of a uuid-v4-shaped exposure_id, from the clock, the process and a
/// counter: the warehouse table is shared by every run, so ids must never repeat across runs.
fn id_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let h = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-",
        h >> 32,
        (h >> 16) & 0xffff,
        (h >> 4) & 0xfff,
        h & 0xfff
    )
}

/// A small xorshift, for kill moments: no rand in the root crate.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42)
            | 1;
        eprintln!("chaos seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One test's topics, group and experiment.
struct Case {
    bootstrap: String,
    topic: String,
    dlq: String,
    group: String,
    experiment: String,
    /// exposure_id = `{id_prefix}{i:012x}`, uuid-shaped.
    id_prefix: String,
    producer: BaseProducer<Deliveries>,
    /// The warehouse the consumer writes to: the stack's, or a database of the test's own.
    database: String,
}

impl Case {
    async fn new(name: &str) -> Case {
        let bootstrap = stack_env()
            .get("KAFKA_BOOTSTRAP")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:9092".to_string());
        let base = unique(name);
        let case = Case {
            topic: format!("{base}-exposures"),
            dlq: format!("{base}-dlq"),
            group: format!("{base}-group"),
            experiment: base.clone(),
            id_prefix: id_prefix(),
            producer: ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .set("linger.ms", "20")
                .set("batch.num.messages", "10000")
                .set("queue.buffering.max.messages", "1000000")
                .create_with_context(Deliveries::default())
                .expect("producer"),
            bootstrap,
            database: crate::workloads::database_url(),
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &case.bootstrap)
            .create()
            .expect("admin");
        let created = admin
            .create_topics(
                &[
                    NewTopic::new(&case.topic, PARTITIONS, TopicReplication::Fixed(1)),
                    NewTopic::new(&case.dlq, 1, TopicReplication::Fixed(1)),
                ],
                &AdminOptions::new(),
            )
            .await
            .expect("CreateTopics");
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        case
    }

    fn id(&self, i: u64) -> String {
        format!("{}{i:012x}", self.id_prefix)
    }

    fn event(&self, i: u64) -> String {
        event_json(&self.id_prefix, &self.experiment, i, "")
    }

    /// A case whose warehouse is a database of its own, with the table created: for tests that
    /// change the table (constraints, triggers), which others must not meet. The database is
    /// dropped with the second value.
    async fn with_own_table(name: &str) -> (Case, Database) {
        let mut case = Case::new(name).await;
        let db = Database::create(name);
        case.database = db.url.clone();
        case.sql(crate::exposure_api::DDL);
        (case, db)
    }

    /// Runs SQL on the case's warehouse through psql.
    fn sql(&self, sql: &str) -> String {
        psql_at(&self.database, sql)
    }

    /// Produces raw messages and waits until all are acknowledged.
    fn produce_raw(&self, messages: &[(String, String)]) {
        let before_ok = self.producer.context().ok.load(Ordering::Relaxed);
        for (key, value) in messages {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(value);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "produce: {e}"
                        );
                        record = r;
                        self.producer.poll(Duration::from_millis(10));
                    }
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        self.producer
            .flush(Duration::from_secs(120))
            .expect("flush the producer");
        let ctx = self.producer.context();
        assert_eq!(ctx.failed.load(Ordering::Relaxed), 0, "failed deliveries");
        assert_eq!(
            ctx.ok.load(Ordering::Relaxed) - before_ok,
            messages.len() as u64
        );
    }

    /// Produces events `range` (keyed by their user).
    fn produce(&self, range: std::ops::Range<u64>) {
        let messages: Vec<(String, String)> = range
            .map(|i| (format!("user-{}", i % 997), self.event(i)))
            .collect();
        self.produce_raw(&messages);
    }

    fn env(&self, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BOOTSTRAP", self.bootstrap.clone()),
            ("DATABASE_URL", self.database.clone()),
            ("KAFKA_GROUP", self.group.clone()),
            ("EXPOSURES_TOPIC", self.topic.clone()),
            ("DLQ_TOPIC", self.dlq.clone()),
            ("PORT", port.to_string()),
            // A killed member must not hold its partitions for long.
            ("RDKAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
            ("RDKAFKA_HEARTBEAT_INTERVAL_MS", "1000".to_string()),
        ]
    }

    /// Reads `n` messages from the DLQ (from its start): key, payload and headers.
    fn read_dlq(&self, n: usize) -> Vec<(String, String, BTreeMap<String, String>)> {
        let dlq: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("{}-dlq-reader", self.group))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("DLQ consumer");
        dlq.subscribe(&[&self.dlq]).expect("subscribe");
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < n && start.elapsed() < Duration::from_secs(60) {
            if let Some(m) = dlq.poll(Duration::from_millis(500)) {
                let m = m.expect("DLQ message");
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for h in h.iter() {
                        headers.insert(
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                        );
                    }
                }
                got.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                    headers,
                ));
            }
        }
        got
    }

    fn spawn(&self, port: u16) -> Running {
        self.spawn_with(port, &[])
    }

    /// The consumer with settings of the test's on top of [`Case::env`].
    fn spawn_with(&self, port: u16, settings: &[(&'static str, &str)]) -> Running {
        let mut env = self.env(port);
        env.extend(settings.iter().map(|&(k, v)| (k, v.to_string())));
        spawn_workload("exposure-consumer", &env)
    }

    fn rows(&self) -> i64 {
        if self.sql("SELECT to_regclass('growthbook.experiment_exposures') IS NOT NULL") != "t" {
            return 0;
        }
        self.sql(&format!(
            "SELECT count(*) FROM growthbook.experiment_exposures WHERE experiment_id = '{}'",
            self.experiment
        ))
        .parse()
        .expect("a count")
    }

    fn wait_rows(&self, n: i64, timeout: Duration) {
        let mut last = -1;
        wait_for(&format!("{n} rows"), timeout, || {
            let rows = self.rows();
            assert!(rows <= n, "{rows} rows, more than the {n} expected");
            if rows != last {
                last = rows;
            }
            (rows == n).then_some(())
        });
    }

    fn offsets_consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    /// The group's committed offsets, per partition (absent: never committed).
    fn committed(&self) -> BTreeMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
        }
        let got = self
            .offsets_consumer()
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("OffsetFetch");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    /// Commits these offsets for the group.
    fn commit(&self, offsets: &BTreeMap<i32, i64>) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .expect("offset");
        }
        if tpl.count() > 0 {
            self.offsets_consumer()
                .commit(&tpl, CommitMode::Sync)
                .expect("OffsetCommit");
        }
    }

    fn committed_total(&self) -> i64 {
        self.committed().values().sum()
    }

    fn end_offsets(&self) -> BTreeMap<i32, i64> {
        let c = self.offsets_consumer();
        (0..PARTITIONS)
            .map(|p| {
                let (_, high) = c
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .expect("ListOffsets");
                (p, high)
            })
            .collect()
    }

    fn wait_committed_to_end(&self, timeout: Duration) {
        let end = self.end_offsets();
        wait_for("the committed offsets to reach the end", timeout, || {
            let c = self.committed();
            end.iter()
                .all(|(p, e)| *e == 0 || c.get(p) == Some(e))
                .then_some(())
        });
    }

    /// Checks that every one of the events `0..n` is in the table once.
    fn assert_all_present(&self, n: u64) {
        let missing = self.sql(&format!(
            "SELECT count(*) FROM generate_series(0, {last}) i \
             WHERE NOT EXISTS (SELECT 1 FROM growthbook.experiment_exposures e \
               WHERE e.exposure_id = '{prefix}' || lpad(to_hex(i), 12, '0'))",
            last = n - 1,
            prefix = self.id_prefix
        ));
        assert_eq!(missing, "0", "events missing from the warehouse");
        let counts = self.sql(&format!(
            "SELECT count(*) || ' ' || count(DISTINCT exposure_id) \
             FROM growthbook.experiment_exposures WHERE experiment_id = '{}'",
            self.experiment
        ));
        assert_eq!(counts, format!("{n} {n}"));
    }
}

/// Event `i` of an experiment, as exposure-api produces it; `pad` goes into its attributes
/// (to make messages bigger).
fn event_json(id_prefix: &str, experiment: &str, i: u64, pad: &str) -> String {
    let mut attributes = serde_json::json!({"country": "NL", "i": i});
    if !pad.is_empty() {
        attributes["pad"] = serde_json::json!(pad);
    }
    serde_json::json!({
        "exposure_id": format!("{id_prefix}{i:012x}"),
        "ds_user_id": format!("user-{}", i % 997),
        "experiment_id": experiment,
        "variation_id": (i % 3).to_string(),
        "attributes": attributes,
        "source": "it",
        "timestamp": "2026-11-22T01:02:03.250+01:00",
        "accepted_at": "2026-11-22T00:02:04Z",
    })
    .to_string()
}

/// Runs SQL (one statement or a script) through psql on the database at `url`; its unaligned,
/// tuples-only output.
fn psql_at(url: &str, sql: &str) -> String {
    psql_try(url, sql).unwrap_or_else(|e| panic!("psql failed on {sql:?}: {e}"))
}

/// As [`psql_at`], with psql's error instead of a panic.
fn psql_try(url: &str, sql: &str) -> Result<String, String> {
    let mut child = std::process::Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    child
        .stdin
        .take()
        .expect("psql's stdin")
        .write_all(sql.as_bytes())
        .expect("write to psql");
    let out = child.wait_with_output().expect("psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A database of the test's own on the stack's PostgreSQL (the test may change its schema
/// without touching anyone else's rows), dropped when this is dropped.
struct Database {
    name: String,
    url: String,
}

impl Database {
    fn create(what: &str) -> Database {
        let name = unique(what).replace('-', "_");
        psql(&format!("CREATE DATABASE {name}"));
        let base = crate::workloads::database_url();
        let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
        Database {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql_try(
            &crate::workloads::database_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// GET on the workload's HTTP port: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A metric's value from /metrics.
fn metric(port: u16, name: &str) -> Option<f64> {
    crate::workloads::metric(&format!("127.0.0.1:{port}"), name)
}

#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_writes_each_event_once_and_commits_to_the_end() {
    let case = Case::new("basic").await;
    let n = 500;
    case.produce(0..n);
    let port = free_port();
    let mut consumer = case.spawn(port);
    case.wait_rows(n as i64, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(n);

    let row = psql(&format!(
        "SELECT ds_user_id, variation_id, source, \
           to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), \
           attributes->>'country', (attributes->>'i')::int, jsonb_typeof(attributes) \
         FROM growthbook.experiment_exposures WHERE exposure_id = '{}'",
        case.id(42)
    ));
    assert_eq!(
        row, "user-42|0|it|2026-11-22T00:02:03.250|NL|42|object",
        "the row of event 42"
    );

    let (status, body) = wait_for("/health", Duration::from_secs(10), || {
        http_get(port, "/health").filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(port, "exposure_consumer_rows_inserted_total"),
        Some(n as f64)
    );
    assert_eq!(metric(port, "exposure_consumer_dlq_total"), Some(0.0));
    // A write goes through the staging table only when its COPY meets an exposure already
    // written, and so skips it: with none skipped (no redelivery or producer retry in this
    // run), every batch went straight into the table with one COPY.
    if metric(port, "exposure_consumer_duplicates_skipped_total") == Some(0.0) {
        assert_eq!(
            metric(port, "exposure_consumer_staged_writes_total"),
            Some(0.0)
        );
    }
    // Every written batch's write time is observed (scripts/bench exposure divides its sum by
    // the wall time to say whether the sink waits on the warehouse or on the broker).
    let batches = metric(port, "exposure_consumer_batches_total").expect("batches");
    assert!(batches >= 1.0, "{batches} batches");
    assert_eq!(
        metric(port, "exposure_consumer_write_seconds_count"),
        Some(batches)
    );
    let writing = metric(port, "exposure_consumer_write_seconds_sum").expect("write seconds");
    assert!(writing > 0.0, "{writing} s writing");
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics");
    assert!(
        metrics.contains("exposure_consumer_committed_offset{partition=\""),
        "{metrics}"
    );
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// A consumer far behind (a backlog of 40 budgets: BATCH_SIZE 50, so 500 buffered at most)
/// whose writes are slow (a trigger sleeps 200 ms per INSERT statement, so each write fills the
/// buffer). It then stops taking messages and leaves them in librdkafka's prefetch until the
/// write is done; it never pauses its partitions, which would drop the prefetch and fetch it
/// again (docs/benchmarks.md, the sink's time). Every batch but the first and the last is a
/// full catch-up batch, and everything is written once. In a database of the test's own: the
/// trigger must not slow other tests.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_catching_up_waits_for_its_writes_without_pausing() {
    let (case, _db) = Case::with_own_table("catchup").await;
    case.sql(
        "CREATE FUNCTION it_slow_write() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$; \
         CREATE TRIGGER it_slow_write AFTER INSERT ON growthbook.experiment_exposures \
           FOR EACH STATEMENT EXECUTE FUNCTION it_slow_write();",
    );
    let n = 20_000;
    case.produce(0..n);
    let port = free_port();
    let _consumer = case.spawn_with(port, &[("BATCH_SIZE", "50")]);
    case.wait_rows(n as i64, Duration::from_secs(120));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(n);
    assert_eq!(
        metric(port, "exposure_consumer_paused_seconds_total"),
        Some(0.0),
        "the partitions were paused while the warehouse kept taking rows"
    );
    let batches = metric(port, "exposure_consumer_batches_total").expect("batches");
    assert!(
        batches <= (n / 500 + 3) as f64,
        "{batches} batches for {n} rows: the catch-up batches were not full"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_poison_messages_go_to_the_dlq_with_their_origin() {
    let case = Case::new("poison").await;
    // One key, so one partition, in this order.
    let key = "user-poison".to_string();
    let mut missing = serde_json::from_str::<serde_json::Value>(&case.event(100)).expect("json");
    missing
        .as_object_mut()
        .expect("object")
        .remove("variation_id");
    let messages = vec![
        (key.clone(), case.event(0)),
        (key.clone(), "{\"exposure_id\": not json".to_string()),
        (key.clone(), case.event(1)),
        (key.clone(), missing.to_string()),
        (key.clone(), case.event(2)),
    ];
    case.produce_raw(&messages);
    let port = free_port();
    let _consumer = case.spawn(port);
    case.wait_rows(3, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));

    // The DLQ holds both poison messages, unchanged, with where they came from.
    let got = case.read_dlq(2);
    assert_eq!(got.len(), 2, "DLQ messages: {got:?}");
    let partition = case
        .end_offsets()
        .into_iter()
        .find(|(_, e)| *e > 0)
        .map(|(p, _)| p)
        .expect("the partition written to");
    for ((key_, value, headers), (offset, original)) in
        got.iter().zip([(1, &messages[1]), (3, &messages[3])])
    {
        assert_eq!(key_, &key);
        assert_eq!(value, &original.1);
        assert_eq!(headers["source.topic"], case.topic);
        assert_eq!(headers["source.partition"], partition.to_string());
        assert_eq!(headers["source.offset"], offset.to_string());
        assert!(!headers["error"].is_empty(), "{headers:?}");
    }
    assert!(got[0].2["error"].contains("not valid JSON"), "{got:?}");
    assert!(got[1].2["error"].contains("variation_id"), "{got:?}");

    // And it keeps going.
    case.produce(3..5);
    case.wait_rows(5, Duration::from_secs(30));
    assert_eq!(metric(port, "exposure_consumer_dlq_total"), Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_sigterm_commits_what_it_wrote_and_exits_0() {
    let case = Case::new("sigterm").await;
    let n = 20_000;
    case.produce(0..n);
    let port = free_port();
    let mut consumer = case.spawn(port);
    wait_for("some rows", Duration::from_secs(60), || {
        (case.rows() > 0).then_some(())
    });
    let asked = Instant::now();
    let status = consumer.terminate(Duration::from_secs(25));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?} to stop");
    // Everything it consumed is written and committed: the committed offsets count the rows.
    let rows = case.rows();
    assert_eq!(case.committed_total(), rows, "committed offsets vs rows");
    eprintln!("SIGTERM after {rows} of {n} rows; stopped in {took:?}");

    // A restart reads only the rest: nothing is read twice.
    let port = free_port();
    let mut consumer = case.spawn(port);
    case.wait_rows(n as i64, Duration::from_secs(120));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(n);
    assert_eq!(
        metric(port, "exposure_consumer_duplicates_skipped_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(port, "exposure_consumer_messages_total"),
        Some((n as i64 - rows) as f64)
    );
    let status = consumer.terminate(Duration::from_secs(25));
    assert!(status.success(), "{status:?}");

    // Once more with nothing left: it reads nothing.
    let port = free_port();
    let _consumer = case.spawn(port);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(metric(port, "exposure_consumer_messages_total"), Some(0.0));
    assert_eq!(case.rows(), n as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_chaos_sigkill_loses_and_duplicates_nothing() {
    let mut case = Case::new("chaos").await;
    let n: u64 = std::env::var("EXPOSURE_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dups: u64 = 1_000;
    let t = Instant::now();
    case.produce(0..n);
    // Exact duplicates: the same messages again.
    case.produce(0..dups);
    let produce_took = t.elapsed();
    eprintln!(
        "produced {} messages in {produce_took:?} ({:.0}/s)",
        n + dups,
        (n + dups) as f64 / produce_took.as_secs_f64()
    );

    // Five kills, each a random 0–0.6 s after the running consumer's first rows reached the
    // warehouse: mid-stream, whatever the consumer's speed.
    let mut rng = Rng::new();
    let t = Instant::now();
    let mut kills = 0;
    let mut consumer = case.spawn(free_port());
    while kills < 5 {
        let before = case.rows();
        wait_for(
            "the restarted consumer to write",
            Duration::from_secs(120),
            || (case.rows() > before).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(rng.below(600)));
        if case.rows() >= n as i64 {
            break;
        }
        consumer.kill();
        kills += 1;
        eprintln!(
            "SIGKILL {kills} at {} rows after {:?}",
            case.rows(),
            t.elapsed()
        );
        // tansu 0.6 does not evict a SIGKILLed group leader: the group stays in a rebalance
        // that never ends and a restarted member is never given partitions. So the restart
        // joins a fresh group that starts exactly at the killed group's committed offsets,
        // which is where a restart on a real broker resumes.
        let committed = case.committed();
        case.group = format!("{}-restart{kills}", case.experiment);
        case.commit(&committed);
        consumer = case.spawn(free_port());
    }
    assert!(
        kills >= 5,
        "only {kills} kills before it finished: produce more"
    );
    case.wait_rows(n as i64, Duration::from_secs(600));
    case.wait_committed_to_end(Duration::from_secs(60));
    let took = t.elapsed();
    eprintln!(
        "consumed {} messages with {kills} SIGKILLs in {took:?} ({:.0}/s)",
        n + dups,
        (n + dups) as f64 / took.as_secs_f64()
    );
    case.assert_all_present(n);
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// A TCP forwarder to PostgreSQL that can be cut (open connections closed, new ones refused)
/// and restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy in front of the local stack's PostgreSQL, and the `DATABASE_URL` through it.
    fn to_warehouse() -> (Proxy, String) {
        let url = crate::workloads::database_url();
        let upstream = url
            .split('@')
            .nth(1)
            .and_then(|h| h.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_string();
        let proxy = Proxy::start(upstream.clone());
        let proxied = url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
        (proxy, proxied)
    }

    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut list = open2.lock().unwrap_or_else(|e| e.into_inner());
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        list.push(s);
                    }
                }
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut list = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for s in list.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_retries_a_warehouse_outage_without_committing() {
    let case = Case::new("outage").await;
    let (proxy, proxied) = Proxy::to_warehouse();
    let port = free_port();
    let mut env = case.env(port);
    for (k, v) in env.iter_mut() {
        if *k == "DATABASE_URL" {
            *v = proxied.clone();
        }
    }
    let _consumer = spawn_workload("exposure-consumer", &env);
    case.produce(0..200);
    case.wait_rows(200, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));
    let committed = case.committed();

    proxy.cut();
    case.produce(200..500);
    wait_for("warehouse retries", Duration::from_secs(30), || {
        (metric(port, "exposure_consumer_warehouse_retries_total")? > 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(case.committed(), committed, "committed during the outage");
    assert_eq!(case.rows(), 200);
    let (status, body) = wait_for("/health to say 503", Duration::from_secs(60), || {
        http_get(port, "/health").filter(|(s, _)| *s == 503)
    });
    assert!(body.contains("warehouse"), "{status} {body}");

    proxy.restore();
    case.wait_rows(500, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(500);
    wait_for("/health to say 200", Duration::from_secs(30), || {
        http_get(port, "/health").filter(|(s, _)| *s == 200)
    });
}

/// `sslmode` means what it means to libpq: verify-full writes through the certificate's name
/// against its CA, and refuses 127.0.0.1 (not the name on the certificate); verify-ca refuses
/// a certificate that the given CA did not sign. Each refusal shows on /health, with nothing
/// written.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_verifies_the_warehouse_as_sslmode_says() {
    assert!(
        std::path::Path::new(SNAKEOIL).is_file(),
        "{SNAKEOIL} missing: the local PostgreSQL serves no TLS"
    );
    let case = Case::new("tls").await;
    let n = 50;
    case.produce(0..n);
    let start = |url: String, ca: Option<&str>| {
        let port = free_port();
        let mut env = case.env(port);
        env.retain(|(k, _)| *k != "DATABASE_URL");
        env.push(("DATABASE_URL", url));
        if let Some(ca) = ca {
            env.push(("DATABASE_CA_FILE", ca.to_string()));
        }
        (port, spawn_workload("exposure-consumer", &env))
    };
    // A CA of its own that signed nothing the server has.
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = other.path().join("ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another CA", "-keyout"])
        .arg(other.path().join("ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("openssl");
    crate::support::assert_ok(&made);
    let other_ca = other_ca.to_string_lossy().into_owned();
    for (url, ca, why) in [
        (
            tls_url("127.0.0.1", "verify-full"),
            SNAKEOIL,
            "verify-full by address",
        ),
        (
            tls_url("localhost", "verify-ca"),
            other_ca.as_str(),
            "verify-ca against another CA",
        ),
    ] {
        let (port, _refused) = start(url, Some(ca));
        let (_, body) = wait_for(why, Duration::from_secs(40), || {
            http_get(port, "/health").filter(|(s, b)| *s == 503 && b.contains("warehouse"))
        });
        assert!(body.contains("certificate verify failed"), "{why}: {body}");
        assert_eq!(case.rows(), 0, "{why}: nothing written");
    }

    // Named, to find its connection among every other test's.
    let name = unique("tls-app");
    let url = format!(
        "{}&application_name={name}",
        tls_url("localhost", "verify-full")
    );
    let (port, mut consumer) = start(url, Some(SNAKEOIL));
    case.wait_rows(n as i64, Duration::from_secs(60));
    case.assert_all_present(n);
    wait_for("/health", Duration::from_secs(10), || {
        http_get(port, "/health").filter(|(s, _)| *s == 200)
    });
    let encrypted = psql(&format!(
        "SELECT string_agg(ssl::text, ',') FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = '{name}'"
    ));
    assert_eq!(encrypted, "true", "the consumer's warehouse connection");
    assert!(consumer.terminate(Duration::from_secs(30)).success());
}

/// A CHECK constraint on the warehouse table, dropped when this is dropped: a rule the
/// warehouse enforces that the consumer cannot know about.
struct Constraint(String);

impl Drop for Constraint {
    fn drop(&mut self) {
        psql(&format!(
            "ALTER TABLE growthbook.experiment_exposures DROP CONSTRAINT IF EXISTS {}",
            self.0
        ));
    }
}

/// A row the warehouse refuses every time (here a CHECK constraint it alone knows) does not
/// hold up its partition: the batch is halved until that row is alone, the row goes to the
/// DLQ unchanged with the warehouse's reason, and every other row is written once.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_sends_a_row_the_warehouse_rejects_to_the_dlq() {
    let case = Case::new("rejected").await;
    psql(crate::exposure_api::DDL);
    let refused = format!("refused-{}", case.id_prefix.trim_end_matches('-'));
    let name = format!("it_refuses_{}", refused.replace('-', "_"));
    psql(&format!(
        "ALTER TABLE growthbook.experiment_exposures \
         ADD CONSTRAINT {name} CHECK (source <> '{refused}') NOT VALID"
    ));
    let _constraint = Constraint(name);
    let n = 200;
    // One key, so one partition, in this order: the refused row is at offset 77.
    let key = "user-rejected".to_string();
    let mut bad = serde_json::from_str::<serde_json::Value>(&case.event(n)).expect("json");
    bad["source"] = serde_json::json!(refused);
    let mut messages: Vec<(String, String)> =
        (0..n).map(|i| (key.clone(), case.event(i))).collect();
    messages.insert(77, (key.clone(), bad.to_string()));
    case.produce_raw(&messages);
    let port = free_port();
    let _consumer = case.spawn(port);
    case.wait_rows(n as i64, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(n);

    let got = case.read_dlq(1);
    assert_eq!(got.len(), 1, "DLQ messages: {got:?}");
    let (key_, value, headers) = &got[0];
    assert_eq!(key_, &key);
    assert_eq!(value, &messages[77].1);
    assert_eq!(headers["source.offset"], "77");
    assert!(
        headers["error"].starts_with("the warehouse rejected the row: ERROR:")
            && headers["error"].contains("(23514)"),
        "{headers:?}"
    );
    assert_eq!(
        metric(port, "exposure_consumer_rows_rejected_total"),
        Some(1.0)
    );
}

/// One row per exposure_id, whatever Kafka delivers: every event is produced three times (the
/// same message again at a later offset, as a producer retry or a client retry writes it, and
/// once under another key, so in another partition), the consumer is SIGKILLed mid-stream and
/// restarted, a second consumer group reads the same topic into the same table at the same
/// time, and the repeats come again after the restart. The table's primary key and
/// `INSERT ... ON CONFLICT (exposure_id) DO NOTHING` leave exactly one row per id (a batch's
/// COPY straight into the table meets the repeats and gives way to that insert).
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_writes_one_row_per_exposure_id_however_often_it_comes() {
    let mut case = Case::new("dedup").await;
    let n: u64 = 3_000;
    let keyed = |case: &Case, range: std::ops::Range<u64>, other_key: bool| {
        range
            .map(|i| {
                let key = if other_key {
                    format!("retry-{i}")
                } else {
                    format!("user-{}", i % 997)
                };
                (key, case.event(i))
            })
            .collect::<Vec<(String, String)>>()
    };
    case.produce_raw(&keyed(&case, 0..n, false));
    case.produce_raw(&keyed(&case, 0..n, false));
    case.produce_raw(&keyed(&case, 0..n / 2, true));

    // A second group (a replay, a second deployment) writing the same ids concurrently.
    let mut other = case.env(free_port());
    for (k, v) in other.iter_mut() {
        if *k == "KAFKA_GROUP" {
            *v = format!("{}-other", case.group);
        }
    }
    let other_port = other
        .iter()
        .find(|(k, _)| *k == "PORT")
        .map(|(_, v)| v.parse::<u16>().expect("port"))
        .expect("PORT");
    let mut other_consumer = spawn_workload("exposure-consumer", &other);

    let mut consumer = case.spawn(free_port());
    wait_for("some rows", Duration::from_secs(60), || {
        (case.rows() > 0).then_some(())
    });
    consumer.kill();
    assert!(case.rows() <= n as i64);
    // tansu 0.6 keeps a SIGKILLed leader's group in a rebalance forever: the restart joins a
    // fresh group at the killed group's committed offsets (see the chaos test).
    let committed = case.committed();
    case.group = format!("{}-restart", case.experiment);
    case.commit(&committed);
    let port = free_port();
    let _consumer = case.spawn(port);
    // The repeats, again, while both consumers run.
    case.produce_raw(&keyed(&case, n / 2..n, true));
    case.produce_raw(&keyed(&case, 0..n, false));

    case.wait_rows(n as i64, Duration::from_secs(120));
    case.wait_committed_to_end(Duration::from_secs(60));
    wait_for("the other group to finish", Duration::from_secs(60), || {
        (metric(other_port, "exposure_consumer_messages_total")? >= (4 * n) as f64).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    case.assert_all_present(n);
    assert!(
        metric(port, "exposure_consumer_duplicates_skipped_total").unwrap_or(0.0) > 0.0,
        "the restarted consumer skipped repeats"
    );
    assert!(
        metric(other_port, "exposure_consumer_duplicates_skipped_total").unwrap_or(0.0) > 0.0,
        "the other group skipped repeats"
    );
    // Batches with repeats went the staging table's way, after their direct COPY met one.
    assert!(
        metric(port, "exposure_consumer_staged_writes_total").unwrap_or(0.0) > 0.0,
        "no write of the restarted consumer met a repeat"
    );
    assert_eq!(metric(port, "exposure_consumer_dlq_total"), Some(0.0));
    assert_eq!(metric(other_port, "exposure_consumer_dlq_total"), Some(0.0));
    assert!(other_consumer.terminate(Duration::from_secs(30)).success());
}

/// The SQL of `WAREHOUSE_DIALECT=redshift`, as `exposure-consumer sql redshift` prints it,
/// executed by PostgreSQL wherever it is valid there, in a database of the test's own: the
/// schema, then two batches whose ids overlap. What PostgreSQL cannot run is named here and in
/// the crate's README. Stand-ins (shims, not Redshift) for Redshift's own names: the type
/// `SUPER` is a domain over jsonb, `JSON_PARSE(text)` a cast to jsonb, `GETDATE()` is `now()`.
#[test]
fn exposure_consumer_redshift_sql_runs_on_postgresql() {
    let out = std::process::Command::new(crate::workloads::workload_bin("exposure-consumer"))
        .args(["sql", "redshift"])
        .output()
        .expect("exposure-consumer sql redshift");
    crate::support::assert_ok(&out);
    let steps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let sql = |step: &str| -> String {
        steps
            .iter()
            .find(|s| s["step"] == step)
            .and_then(|s| s["sql"].as_str())
            .unwrap_or_else(|| panic!("no step {step} in {steps:?}"))
            .to_string()
    };
    let db = Database::create("redshift");
    let run = |script: &str| psql_at(&db.url, script);
    run("CREATE DOMAIN super AS jsonb;
         CREATE FUNCTION json_parse(text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS 'SELECT $1::jsonb';
         CREATE FUNCTION getdate() RETURNS timestamptz LANGUAGE sql STABLE AS 'SELECT now()';");

    run(&sql("create_schema"));
    // DISTKEY and SORTKEY (how Redshift spreads and orders the table) are Redshift's alone.
    let table = sql("create_table");
    let err = psql_try(&db.url, &table).expect_err("PostgreSQL has no DISTKEY");
    assert!(err.contains("syntax error at or near \"DISTKEY\""), "{err}");
    let portable = table
        .strip_suffix("\nDISTKEY (exposure_id) SORTKEY (ts)")
        .expect("the table's Redshift-only attributes at its end");
    run(portable);
    run(portable);

    // One batch as the consumer runs it: staging, load (bind parameters), count, merge, drop,
    // in one transaction.
    let batch = |rows: [(&str, &str); 2]| -> (String, String) {
        let params = rows
            .iter()
            .map(|(id, variation)| {
                format!(
                    "'{id}', 'user-1', 'exp', '{variation}', '2026-11-22T01:02:03Z', \
                     '{{\"country\": \"NL\"}}', 'it'"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let out = run(&format!(
            "BEGIN;\n{};\nPREPARE batch_load AS {};\nEXECUTE batch_load({params});\n{};\n{};\n{};\n\
             SELECT to_regclass('exposures_staging') IS NULL;\nCOMMIT;\n\
             SELECT string_agg(exposure_id || ':' || variation_id || ':' || \
               (attributes->>'country'), ',' ORDER BY exposure_id) \
             FROM growthbook.experiment_exposures;",
            sql("create_staging"),
            sql("load"),
            sql("count_new"),
            sql("merge"),
            sql("drop_staging"),
        ));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], "t", "the staging table is dropped");
        (lines[0].to_string(), lines[2].to_string())
    };
    assert_eq!(
        batch([("a", "0"), ("b", "0")]),
        ("2".to_string(), "a:0:NL,b:0:NL".to_string())
    );
    let created_b =
        run("SELECT created_at FROM growthbook.experiment_exposures WHERE exposure_id = 'b'");
    // b again, with another variation (a client's retry that changed): the first write stays.
    assert_eq!(
        batch([("b", "1"), ("c", "1")]),
        ("1".to_string(), "a:0:NL,b:0:NL,c:1:NL".to_string())
    );
    assert_eq!(
        run("SELECT created_at FROM growthbook.experiment_exposures WHERE exposure_id = 'b'"),
        created_b,
        "the MERGE leaves a matched row as it was"
    );
}

/// Live traffic: a thread producing `per_tick` events every 100 ms (ids counting up from
/// `start`) until stopped, or until `limit` events are produced.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Traffic {
    fn start(case: &Case, start: u64, per_tick: u64, pad: usize, limit: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (prefix, experiment, bootstrap, topic) = (
            case.id_prefix.clone(),
            case.experiment.clone(),
            case.bootstrap.clone(),
            case.topic.clone(),
        );
        let pad = "x".repeat(pad);
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let producer: BaseProducer<Deliveries> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create_with_context(Deliveries::default())
                .expect("producer");
            let mut next = start;
            while !stop2.load(Ordering::SeqCst) {
                if next - start >= limit {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                for i in next..next + per_tick {
                    let value = event_json(&prefix, &experiment, i, &pad);
                    let key = format!("user-{}", i % 997);
                    let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
                    while let Err((_, r)) = producer.send(record) {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
                next += per_tick;
                producer.poll(Duration::from_millis(100));
            }
            producer.flush(Duration::from_secs(60)).expect("flush");
            assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
            next
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops producing; the id after the last one produced.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the traffic thread")
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The DLQ's end offset: how many messages it ever got.
fn dlq_size(case: &Case) -> i64 {
    let (_, high) = case
        .offsets_consumer()
        .fetch_watermarks(&case.dlq, 0, Duration::from_secs(10))
        .expect("ListOffsets on the DLQ");
    high
}

/// A warehouse-wide error is not bad rows. A NOT NULL column added to the table under live
/// traffic makes the warehouse reject every row: the breaker opens (/health 503, the metric
/// says so), the consumer stops consuming, commits nothing it did not write and sends nothing to
/// the DLQ. Once the column is fixed (given a default), it resumes by itself; then the same
/// with a CHECK constraint no event meets, until it is dropped. Every event is written once.
/// In a database of the test's own: the column must not break other tests.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_breaker_stops_on_a_not_null_column_without_the_dlq() {
    let mut case = Case::new("breaker").await;
    let db = Database::create("breaker");
    case.database = db.url.clone();
    let port = free_port();
    let _consumer = case.spawn(port);
    let traffic = Traffic::start(&case, 0, 20, 0, u64::MAX);
    wait_for("rows under live traffic", Duration::from_secs(60), || {
        (case.rows() >= 200).then_some(())
    });

    case.sql(
        "BEGIN;
         ALTER TABLE growthbook.experiment_exposures ADD COLUMN tenant text NOT NULL DEFAULT 'shoal';
         ALTER TABLE growthbook.experiment_exposures ALTER COLUMN tenant DROP DEFAULT;
         COMMIT;",
    );
    let (_, body) = wait_for("/health to say 503", Duration::from_secs(60), || {
        http_get(port, "/health").filter(|(s, _)| *s == 503)
    });
    assert!(body.contains("the breaker is open"), "{body}");
    assert!(body.contains("tenant"), "the warehouse's reason: {body}");
    assert_eq!(metric(port, "exposure_consumer_breaker_open"), Some(1.0));
    // Held open under live traffic: nothing more is written, consumed past the budget,
    // committed past what was written, or sent to the DLQ.
    let rows = case.rows();
    std::thread::sleep(Duration::from_secs(3));
    let consumed = metric(port, "exposure_consumer_messages_total").expect("messages");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(case.rows(), rows, "rows written while the breaker is open");
    assert_eq!(
        metric(port, "exposure_consumer_messages_total"),
        Some(consumed),
        "consumed while the breaker is open"
    );
    assert_eq!(metric(port, "exposure_consumer_paused"), Some(1.0));
    assert!(
        case.committed_total() <= rows,
        "committed {} offsets, but only {rows} rows are written",
        case.committed_total()
    );
    assert_eq!(dlq_size(&case), 0, "messages in the DLQ");
    assert_eq!(metric(port, "exposure_consumer_dlq_total"), Some(0.0));
    assert_eq!(
        metric(port, "exposure_consumer_rows_rejected_total"),
        Some(0.0)
    );

    // Fixed: the column gets a default. The consumer resumes without a restart.
    case.sql("ALTER TABLE growthbook.experiment_exposures ALTER COLUMN tenant SET DEFAULT 'shoal'");
    wait_for("/health to say 200", Duration::from_secs(60), || {
        http_get(port, "/health").filter(|(s, _)| *s == 200)
    });
    assert_eq!(metric(port, "exposure_consumer_breaker_open"), Some(0.0));
    assert_eq!(
        metric(port, "exposure_consumer_breaker_trips_total"),
        Some(1.0)
    );

    // A CHECK constraint no event meets: the same.
    let rows = case.rows();
    wait_for("rows after the fix", Duration::from_secs(60), || {
        (case.rows() > rows + 100).then_some(())
    });
    case.sql(
        "ALTER TABLE growthbook.experiment_exposures \
         ADD CONSTRAINT it_api_only CHECK (source = 'api') NOT VALID",
    );
    let (_, body) = wait_for("/health to say 503 again", Duration::from_secs(60), || {
        http_get(port, "/health").filter(|(s, _)| *s == 503)
    });
    assert!(
        body.contains("it_api_only"),
        "the warehouse's reason: {body}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(dlq_size(&case), 0, "messages in the DLQ");
    assert!(case.committed_total() <= case.rows());
    case.sql("ALTER TABLE growthbook.experiment_exposures DROP CONSTRAINT it_api_only");
    wait_for("/health to say 200 again", Duration::from_secs(60), || {
        http_get(port, "/health").filter(|(s, _)| *s == 200)
    });
    assert_eq!(
        metric(port, "exposure_consumer_breaker_trips_total"),
        Some(2.0)
    );
    let n = traffic.stop();
    case.wait_rows(n as i64, Duration::from_secs(120));
    case.wait_committed_to_end(Duration::from_secs(60));
    case.assert_all_present(n);
    assert_eq!(dlq_size(&case), 0, "messages in the DLQ");
}

/// The consumer's resident memory (VmRSS), in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds the process' threads have run: the first field of each
/// /proc/<pid>/task/<tid>/schedstat, of the threads alive at the read.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// A long warehouse outage with two rebalances in it: the consumer starts next to a second
/// member (3 partitions each), which leaves during the outage (the consumer is handed 3
/// partitions it never paused) and joins again. The buffer stays within its budget
/// (BATCH_SIZE × 10) throughout, because partitions assigned while the consumer is paused are
/// paused too, and the consumer's memory stays bounded while far more than that is produced.
/// Waiting costs little CPU. Then the member leaves and everything is written once. `EXPOSURE_OUTAGE_SECS` sets the
/// outage's length (default 300, the five minutes the contract promises to ride out).
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_buffer_stays_bounded_through_an_outage_with_rebalances() {
    let outage = Duration::from_secs(
        std::env::var("EXPOSURE_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let case = Case::new("bounded").await;
    let (proxy, proxied) = Proxy::to_warehouse();
    let port = free_port();
    let batch_size = 100u64;
    let budget = batch_size * 10;
    let mut env = case.env(port);
    env.retain(|(k, _)| *k != "DATABASE_URL");
    env.push(("DATABASE_URL", proxied));
    env.push(("BATCH_SIZE", batch_size.to_string()));
    // librdkafka's prefetch, part of the memory bound.
    env.push(("RDKAFKA_QUEUED_MAX_MESSAGES_KBYTES", "4096".to_string()));

    // The second member: in the group (polling, committing nothing) while `Some`.
    let join = || -> BaseConsumer {
        let m: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &case.bootstrap)
            .set("group.id", &case.group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .expect("second member");
        m.subscribe(&[&case.topic]).expect("subscribe");
        m
    };
    let leave = |m: BaseConsumer| {
        m.unsubscribe();
        drop(m);
    };
    // Polls the member (to keep it in the group) for `d`.
    let idle = |member: &Option<BaseConsumer>, d: Duration| {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match member {
                Some(m) => {
                    let _ = m.poll(left);
                }
                None => std::thread::sleep(left),
            }
        }
    };

    proxy.cut();
    let mut member = Some(join());
    idle(&member, Duration::from_secs(2));
    let consumer = spawn_workload("exposure-consumer", &env);
    let pid = consumer.child.id();
    let t = Instant::now();
    while metric(port, "exposure_consumer_assigned_partitions") != Some(f64::from(PARTITIONS / 2)) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the consumer never got half the partitions"
        );
        idle(&member, Duration::from_millis(300));
    }
    let baseline = rss_kib(pid).expect("VmRSS");
    let cpu_before = cpu_seconds(pid).expect("schedstat");
    let rebalances_before = metric(port, "exposure_consumer_rebalances_total").unwrap_or(0.0);

    // ~4 KiB events, 40 every 100 ms (the budget's worth in the outage's first seconds), up to
    // 24,000 (~94 MiB; a longer outage does not need more).
    let t = Instant::now();
    let traffic = Traffic::start(&case, 0, 40, 4000, 24_000);
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let mut step = 0;
    while t.elapsed() < outage {
        let rss = rss_kib(pid).expect("VmRSS");
        let buffered = metric(port, "exposure_consumer_buffered_messages").unwrap_or(0.0) as u64;
        samples.push((t.elapsed(), rss, buffered));
        let part = t.elapsed().as_secs_f64() / outage.as_secs_f64();
        // Rebalance 1 at a third of the outage (the member leaves: the consumer is handed its
        // partitions), 2 at two thirds (it joins again).
        if step == 0 && part >= 1.0 / 3.0 {
            if let Some(m) = member.take() {
                leave(m);
            }
            step = 1;
        }
        if step == 1 && part >= 2.0 / 3.0 {
            member = Some(join());
            step = 2;
        }
        idle(&member, Duration::from_millis(500));
    }
    let produced = traffic.stop();
    let cpu = cpu_seconds(pid).expect("schedstat") - cpu_before;
    let rebalances = metric(port, "exposure_consumer_rebalances_total").unwrap_or(0.0);
    assert!(case.committed().is_empty(), "committed during the outage");
    assert_eq!(case.rows(), 0);
    let max_buffered = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let max_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let produced_kib = produced * 4;
    eprintln!(
        "outage {outage:?}: produced {produced} events (~{produced_kib} KiB); buffer ≤ {max_buffered} (budget {budget}); RSS {baseline} KiB before, {max_rss} KiB at most; {cpu:.1} s of CPU; rebalances {rebalances_before} → {rebalances}"
    );
    for (at, rss, buffered) in samples.iter().step_by(10) {
        eprintln!("  {at:>6.1?}: RSS {rss} KiB, {buffered} buffered");
    }
    assert!(
        rebalances >= rebalances_before + 4.0,
        "two rebalances (a revocation and an assignment each) during the outage: {rebalances_before} → {rebalances}"
    );
    assert!(
        max_buffered <= budget,
        "{max_buffered} messages buffered, over the budget of {budget}"
    );
    // Waiting is idle: a loop that spun while paused would take a core.
    assert!(
        cpu < 0.25 * outage.as_secs_f64(),
        "{cpu:.1} s of CPU during a {outage:?} outage"
    );
    assert!(
        produced_kib > 64 * 1024,
        "produce more: only {produced_kib} KiB during the outage"
    );
    // The budget's messages (~8 MiB parsed and raw), librdkafka's prefetch (4 MiB here) and
    // the allocator's slack; a buffer that grew with the outage would hold all of it.
    assert!(
        max_rss < baseline + 32 * 1024,
        "RSS grew from {baseline} KiB to {max_rss} KiB during the outage"
    );

    if let Some(m) = member.take() {
        leave(m);
    }
    proxy.restore();
    case.wait_rows(produced as i64, Duration::from_secs(300));
    case.wait_committed_to_end(Duration::from_secs(60));
    case.assert_all_present(produced);
    drop(consumer);
}

/// The breaker's share rule, alone: a fresh consumer (no row taken yet, so no canary) whose
/// first batch is mostly refused (a CHECK constraint two variations out of three break) opens
/// the breaker once the batch is judged, instead of sending two thirds of it to the DLQ; the
/// rows the warehouse took stay, nothing is committed, and all of it goes in once the
/// constraint is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_consumer_breaker_opens_when_most_rows_are_rejected() {
    let (case, _db) = Case::with_own_table("share").await;
    case.sql(
        "ALTER TABLE growthbook.experiment_exposures \
         ADD CONSTRAINT it_variation_0 CHECK (variation_id = '0')",
    );
    let n = 150;
    case.produce(0..n);
    let port = free_port();
    // All 150 in the first batch.
    let _consumer = case.spawn_with(port, &[("BATCH_MAX_MS", "3000")]);
    // Judging the batch takes a transaction per part: about 2 × 100 here.
    let (_, body) = wait_for("the breaker to open", Duration::from_secs(180), || {
        http_get(port, "/health").filter(|(s, b)| *s == 503 && b.contains("the breaker is open"))
    });
    assert!(body.contains("rejected 100 of the 150 rows"), "{body}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dlq_size(&case), 0, "messages in the DLQ");
    assert_eq!(case.rows(), 50, "the rows the warehouse took");
    assert!(
        case.committed().is_empty(),
        "committed with the breaker open"
    );

    case.sql("ALTER TABLE growthbook.experiment_exposures DROP CONSTRAINT it_variation_0");
    case.wait_rows(n as i64, Duration::from_secs(60));
    case.wait_committed_to_end(Duration::from_secs(30));
    case.assert_all_present(n);
    assert_eq!(dlq_size(&case), 0, "messages in the DLQ");
    assert_eq!(metric(port, "exposure_consumer_breaker_open"), Some(0.0));
}
