//! The consumer loop: Kafka → batches → one warehouse transaction per batch → offsets.
//!
//! Exactly-once rows on an at-least-once pipe: a partition's offset is committed only after
//! every message below it is in the warehouse (or, for poison messages, acknowledged by the
//! DLQ). Anything that happens in between (a crash, a rebalance, a warehouse outage) can only
//! make messages come again, and the table's primary key turns those repeats into no-ops.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::breaker::Breaker;
use crate::config::Settings;
use crate::event::{self, Exposure};
use crate::metrics::Metrics;
use crate::warehouse::{Warehouse, WarehouseError};

/// How long shutdown may spend finishing the current batch (ECS waits 30 s by default before
/// SIGKILL).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// A warehouse round trip when idle this long, so that /health knows it still answers.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Backoff between failed attempts at a batch: exponential from 100 ms, capped, full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How many batches a consumer that is behind writes in one transaction, at most.
const CATCH_UP_BATCHES: usize = 10;
/// How long a full buffer may wait for the batch in flight before the partitions are paused.
/// Meanwhile the loop takes no messages and librdkafka keeps what it has fetched; pausing drops
/// that, so a consumer catching up (a full buffer on most writes) would fetch it all again.
const HOLD_BEFORE_PAUSE: Duration = Duration::from_secs(2);

/// A consumed message, owned.
#[derive(Debug)]
struct Pending {
    partition: i32,
    offset: i64,
    /// The message as it came, for the DLQ.
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    item: Item,
}

#[derive(Debug)]
enum Item {
    Row(Exposure),
    Poison { error: String },
}

/// State shared with the rebalance callbacks, which run inside `recv()`.
struct Shared {
    topic: String,
    /// Per partition, the next offset to commit: everything below it is in the warehouse.
    written: Mutex<BTreeMap<i32, i64>>,
    /// Partitions revoked since the loop last looked; their buffered messages are dropped.
    revoked: Mutex<Vec<i32>>,
    /// The loop holds its partitions paused (its buffer stayed full, or the breaker is
    /// open): partitions assigned meanwhile are paused as they come.
    paused: AtomicBool,
}

struct Ctx {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    /// With `KAFKA_AUTH=iam`, what makes librdkafka's OAUTHBEARER tokens.
    iam: Option<msk_iam::Signer>,
}

impl ClientContext for Ctx {
    msk_iam::answer_token_requests!(iam);

    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.shared.topic) {
            for (p, s) in &topic.partitions {
                if *p >= 0 && s.consumer_lag >= 0 {
                    self.metrics.set_lag(*p, s.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.metrics.rebalances.inc();
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<i32> = tpl
                    .elements_for_topic(&self.shared.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                // What is already in the warehouse is committed now, synchronously, so that the
                // next owner starts after it.
                let mut commit = TopicPartitionList::new();
                if let Ok(mut written) = self.shared.written.lock() {
                    for p in &parts {
                        if let Some(next) = written.remove(p) {
                            let _ = commit.add_partition_offset(
                                &self.shared.topic,
                                *p,
                                Offset::Offset(next),
                            );
                        }
                    }
                }
                if commit.count() > 0 {
                    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                        self.metrics.commit_errors.inc();
                        warn!(error = %e, "committing revoked partitions failed; their messages since the last commit will come again");
                    }
                }
                if let Ok(mut revoked) = self.shared.revoked.lock() {
                    revoked.extend(&parts);
                }
                info!(partitions = ?parts, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(partitions = ?parts, "partitions assigned");
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka starts fetching what it was just given: while the loop is over its budget
        // (or the breaker is open), new partitions must not fill the buffer again. librdkafka
        // also keeps a partition's pause through its revocation, so one paused before and
        // assigned again after the loop resumed is resumed here (a no-op when not paused).
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() > 0 && self.shared.paused.load(Relaxed) {
                match consumer.pause(tpl) {
                    Ok(()) => info!(
                        partitions = tpl.count(),
                        "paused the newly assigned partitions: the consumer's buffer stayed full or its breaker is open"
                    ),
                    Err(e) => warn!(error = %e, "pausing newly assigned partitions failed"),
                }
            } else if tpl.count() > 0 {
                if let Err(e) = consumer.resume(tpl) {
                    warn!(error = %e, "resuming newly assigned partitions failed");
                }
            }
        }
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics.assigned.set(n as i64);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        self.metrics.set_committed(e.partition(), o);
                    }
                }
            }
            Err(e) => {
                self.metrics.commit_errors.inc();
                warn!(error = %e, "offset commit failed; the messages will come again");
            }
        }
    }
}

/// The warehouse side the loop hands to one flush or ping at a time: the connection, the
/// breaker's window, and the canary (the last row the warehouse took).
struct Sink {
    wh: Warehouse,
    breaker: Breaker,
    canary: Option<Exposure>,
}

/// What a finished flush reports back to the loop.
enum Outcome {
    /// A batch is in the warehouse: per partition, the next offset to commit.
    Written {
        next: BTreeMap<i32, i64>,
        first_at: Instant,
    },
    Pinged,
    Failed,
}

/// The DLQ's producer: rdkafka's defaults, and MSK IAM tokens when asked.
type DlqProducer = FutureProducer<msk_iam::IamContext>;

type Flush = Pin<Box<dyn Future<Output = (Sink, Outcome)>>>;

fn consumer_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.kafka_bootstrap)
        .set("group.id", &s.group)
        .set("client.id", "exposure-consumer")
        // A new group starts at the beginning: starting at the end would skip what was
        // produced before the first commit.
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // How long the broker may hold a fetch that finds nothing new. A Kafka broker answers
        // as soon as data arrives; tansu 0.6 (the local broker) holds it for the whole time,
        // so librdkafka's 500 ms default added up to half a second to every event's way to
        // the warehouse (docs/benchmarks.md). At 50 ms an idle consumer sends 20 small
        // fetches a second per broker.
        .set("fetch.wait.max.ms", "50")
        // librdkafka's prefetch, part of the consumer's memory bound with the buffer's budget
        // (librdkafka's default is 64 MiB).
        .set("queued.max.messages.kbytes", "16384")
        .set("statistics.interval.ms", "5000");
    if let Some(iam) = &s.iam {
        iam.apply(&mut c);
    }
    for (k, v) in &s.rdkafka {
        c.set(k, v);
    }
    // Offsets are committed by hand, after the warehouse: never let these be overridden.
    for (k, v) in [
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
    ] {
        if s.rdkafka.get(k).is_some_and(|set| set != v) {
            warn!(
                property = k,
                "ignoring RDKAFKA_ override: offsets are committed after the warehouse"
            );
        }
        c.set(k, v);
    }
    c
}

fn producer_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.kafka_bootstrap)
        .set("client.id", "exposure-consumer-dlq")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    if let Some(iam) = &s.iam {
        iam.apply(&mut c);
    }
    // The same connection settings (security protocol, SASL, ...) as the consumer; the
    // consumer's own properties are left out (librdkafka would warn about each).
    for (k, v) in s.rdkafka.iter().filter(|(k, _)| !consumer_only(k)) {
        c.set(k, v);
    }
    c
}

fn consumer_only(property: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "group.",
        "fetch.",
        "enable.auto.",
        "auto.",
        "queued.",
        "consume.",
    ];
    const NAMES: [&str; 9] = [
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "isolation.level",
        "check.crcs",
        "enable.partition.eof",
        "allow.auto.create.topics",
        "coordinator.query.interval.ms",
    ];
    PREFIXES.iter().any(|p| property.starts_with(p)) || NAMES.contains(&property)
}

/// Runs until `shutdown` turns true, then finishes the batch at hand, commits and closes.
/// `iam`: the token signer, with `KAFKA_AUTH=iam`.
pub async fn run(
    settings: Settings,
    iam: Option<msk_iam::Signer>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let shared = Arc::new(Shared {
        topic: settings.topic.clone(),
        written: Mutex::new(BTreeMap::new()),
        revoked: Mutex::new(Vec::new()),
        paused: AtomicBool::new(false),
    });
    let ctx = Ctx {
        shared: shared.clone(),
        metrics: metrics.clone(),
        iam: iam.clone(),
    };
    let consumer: StreamConsumer<Ctx> = consumer_config(&settings)
        .create_with_context(ctx)
        .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
    let producer: DlqProducer = producer_config(&settings)
        .create_with_context(msk_iam::IamContext(iam))
        .map_err(|e| format!("creating the DLQ producer: {e}"))?;
    consumer
        .subscribe(&[settings.topic.as_str()])
        .map_err(|e| format!("subscribing to {}: {e}", settings.topic))?;
    info!(topic = %settings.topic, group = %settings.group, "consuming");

    let topic = settings.topic.clone();
    let mut sink = Some(Sink {
        wh: Warehouse::new(&settings.database, settings.dialect).map_err(|e| e.to_string())?,
        breaker: Breaker::new(settings.breaker),
        canary: None,
    });
    let batch_size = settings.batch_size;
    // While a batch is being written the next one fills. A consumer that is behind writes up
    // to CATCH_UP_BATCHES batches' worth in one transaction, which spreads each transaction's
    // fixed cost over more rows. With that much buffered the loop stops taking messages, and
    // librdkafka's prefetch waits for it. A buffer still full HOLD_BEFORE_PAUSE later means
    // the warehouse is stalling: the partitions are then paused and the loop polls again, so
    // that the group membership stays alive and rebalances are served during a long outage.
    // Pausing drops librdkafka's prefetched messages, which is why it waits. Partitions
    // assigned while paused are paused too (post_rebalance), so the budget holds across
    // rebalances. An open breaker pauses everything until the batch at hand goes in.
    let max_buffer = batch_size * CATCH_UP_BATCHES;
    let mut buffer: Vec<Pending> = Vec::new();
    let mut buffer_since: Option<Instant> = None;
    let mut full_since: Option<Instant> = None;
    let mut inflight: Option<Flush> = None;
    let mut stop_by: Option<Instant> = None;
    let mut last_contact: Option<Instant> = None;

    loop {
        metrics.loop_turned();
        drop_revoked(&shared, &mut buffer, &mut buffer_since);
        metrics.buffered.set(buffer.len() as i64);
        if metrics.breaker_is_open() && !shared.paused.load(Relaxed) {
            pause_all(&consumer, &shared, &metrics, "the breaker is open");
        }
        let now = Instant::now();
        if inflight.is_none() {
            let due = buffer.len() >= batch_size
                || buffer_since.is_some_and(|t| now >= t + settings.batch_max)
                || (stop_by.is_some() && !buffer.is_empty());
            if due {
                let n = buffer.len().min(max_buffer);
                let items: Vec<Pending> = buffer.drain(..n).collect();
                let first_at = buffer_since.take().unwrap_or(now);
                if !buffer.is_empty() {
                    buffer_since = Some(now);
                }
                if let Some(sk) = sink.take() {
                    inflight = Some(Box::pin(flush(
                        sk,
                        producer.clone(),
                        items,
                        first_at,
                        metrics.clone(),
                        topic.clone(),
                        settings.dlq_topic.clone(),
                    )));
                }
            } else if stop_by.is_none() && last_contact.is_none_or(|t| now >= t + PING_EVERY) {
                if let Some(sk) = sink.take() {
                    inflight = Some(Box::pin(ping(sk, metrics.clone())));
                }
            }
        }
        if let Some(by) = stop_by {
            if inflight.is_none() && buffer.is_empty() {
                break;
            }
            if now >= by {
                return Err(format!(
                    "stopping without writing {} buffered messages: the warehouse did not take them within {}s; they will be consumed again",
                    buffer.len(),
                    SHUTDOWN_GRACE.as_secs()
                ));
            }
        }
        if inflight.is_some() && buffer.len() >= max_buffer {
            let since = *full_since.get_or_insert(now);
            if now >= since + HOLD_BEFORE_PAUSE && !shared.paused.load(Relaxed) {
                pause_all(&consumer, &shared, &metrics, "the buffer stayed full");
            }
        } else {
            full_since = None;
        }
        // Full and not paused: messages wait in librdkafka until the batch in flight is written.
        let take = stop_by.is_none() && (full_since.is_none() || shared.paused.load(Relaxed));
        let mut wake = now + Duration::from_secs(1);
        if inflight.is_none() {
            if let Some(t) = buffer_since {
                wake = wake.min(t + settings.batch_max);
            }
        }
        if let (Some(t), false) = (full_since, shared.paused.load(Relaxed)) {
            wake = wake.min(t + HOLD_BEFORE_PAUSE);
        }
        if let Some(by) = stop_by {
            wake = wake.min(by);
        }

        tokio::select! {
            _ = shutdown.changed(), if stop_by.is_none() => {
                info!(buffered = buffer.len(), "stopping: finishing the batch at hand");
                stop_by = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            (sk, outcome) = async {
                match inflight.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if inflight.is_some() => {
                inflight = None;
                sink = Some(sk);
                last_contact = Some(Instant::now());
                if let Outcome::Written { next, first_at } = outcome {
                    commit_async(&consumer, &shared, &metrics, next, first_at);
                }
                if shared.paused.load(Relaxed) && !metrics.breaker_is_open() {
                    if let Ok(a) = consumer.assignment() {
                        if let Err(e) = consumer.resume(&a) {
                            warn!(error = %e, "resuming partitions failed");
                        }
                    }
                    shared.paused.store(false, Relaxed);
                    metrics.set_paused(false);
                }
            }
            msg = consumer.recv(), if take => {
                // Revocations served inside this recv() come before the message it returns.
                drop_revoked(&shared, &mut buffer, &mut buffer_since);
                match msg {
                    Ok(m) => {
                        metrics.messages.inc();
                        let item = match event::parse(m.payload()) {
                            Ok(e) => Item::Row(e),
                            Err(error) => Item::Poison { error },
                        };
                        buffer.push(Pending {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec),
                            item,
                        });
                        if buffer_since.is_none() {
                            buffer_since = Some(Instant::now());
                        }
                    }
                    Err(e) => warn!(error = %e, "Kafka error"),
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }

    // Everything written is committed synchronously before leaving the group.
    let tpl = written_tpl(&consumer, &shared);
    if tpl.count() > 0 {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| format!("committing offsets at shutdown: {e}"))?;
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                metrics.set_committed(e.partition(), o);
            }
        }
    }
    consumer.unsubscribe();
    drop(consumer);
    info!("stopped");
    Ok(())
}

/// Pauses every assigned partition and says so to the rebalance callbacks, which pause the
/// partitions assigned later.
fn pause_all(consumer: &StreamConsumer<Ctx>, shared: &Shared, metrics: &Metrics, why: &str) {
    shared.paused.store(true, Relaxed);
    metrics.set_paused(true);
    if let Ok(a) = consumer.assignment() {
        match consumer.pause(&a) {
            Ok(()) => debug!(partitions = a.count(), why, "paused"),
            Err(e) => warn!(error = %e, "pausing partitions failed"),
        }
    }
}

/// Drops buffered messages of revoked partitions: they were not written, their offsets were not
/// committed, and the partition's next owner (maybe this consumer again) reads them again.
fn drop_revoked(shared: &Shared, buffer: &mut Vec<Pending>, since: &mut Option<Instant>) {
    let revoked: Vec<i32> = match shared.revoked.lock() {
        Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
        _ => return,
    };
    let before = buffer.len();
    buffer.retain(|m| !revoked.contains(&m.partition));
    if buffer.is_empty() {
        *since = None;
    }
    if before != buffer.len() {
        debug!(
            dropped = before - buffer.len(),
            "dropped buffered messages of revoked partitions"
        );
    }
}

/// The written offsets of the partitions still assigned.
fn written_tpl(consumer: &StreamConsumer<Ctx>, shared: &Shared) -> TopicPartitionList {
    let assignment = consumer.assignment().unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    if let Ok(written) = shared.written.lock() {
        for (p, next) in written.iter() {
            if assignment.find_partition(&shared.topic, *p).is_some() {
                let _ = tpl.add_partition_offset(&shared.topic, *p, Offset::Offset(*next));
            }
        }
    }
    tpl
}

/// Records a written batch's offsets and commits them (asynchronously: a lost commit only
/// means the batch comes again). Partitions revoked while the batch was written are skipped.
fn commit_async(
    consumer: &StreamConsumer<Ctx>,
    shared: &Shared,
    metrics: &Metrics,
    next: BTreeMap<i32, i64>,
    first_at: Instant,
) {
    let assignment = consumer.assignment().unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    if let Ok(mut written) = shared.written.lock() {
        for (p, n) in next {
            if assignment.find_partition(&shared.topic, p).is_some() {
                written.insert(p, n);
                let _ = tpl.add_partition_offset(&shared.topic, p, Offset::Offset(n));
            }
        }
    }
    if tpl.count() > 0 {
        match consumer.commit(&tpl, CommitMode::Async) {
            // A failure of the commit itself comes back through commit_callback.
            Ok(()) => {
                for e in tpl.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        metrics.set_committed(e.partition(), o);
                    }
                }
            }
            Err(e) => {
                metrics.commit_errors.inc();
                warn!(error = %e, "offset commit failed; the messages will come again");
            }
        }
    }
    metrics.batch_latency.observe(first_at.elapsed());
}

async fn ping(mut sink: Sink, metrics: Arc<Metrics>) -> (Sink, Outcome) {
    match sink.wh.ping().await {
        Ok(()) => {
            metrics.warehouse_ok();
            (sink, Outcome::Pinged)
        }
        Err(e) => {
            warn!(error = %e, "warehouse ping failed");
            metrics.warehouse_failed(&e.to_string());
            (sink, Outcome::Failed)
        }
    }
}

/// Why an attempt at a batch did not go through.
enum Attempt {
    /// The warehouse or the DLQ failed (a connection, a timeout, ...).
    Failed(String),
    /// The breaker opened: the warehouse rejects rows across the board.
    Open(String),
}

/// Writes one batch: poison messages to the DLQ (acknowledged), then the rows in one
/// transaction; retried with backoff until both succeed. Rows the warehouse rejects go to the
/// DLQ only while the breaker stays closed; when it opens, the batch is kept and retried as a
/// whole, nothing of it committed.
async fn flush(
    mut sink: Sink,
    producer: DlqProducer,
    items: Vec<Pending>,
    first_at: Instant,
    metrics: Arc<Metrics>,
    topic: String,
    dlq_topic: String,
) -> (Sink, Outcome) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &items {
        let n = next.entry(m.partition).or_insert(0);
        *n = (*n).max(m.offset + 1);
    }
    // One row per exposure_id: the first occurrence wins, as ON CONFLICT keeps the first write.
    let mut seen = HashSet::new();
    let rows: Vec<(&Pending, &Exposure)> = items
        .iter()
        .filter_map(|m| match &m.item {
            Item::Row(e) => Some((m, e)),
            Item::Poison { .. } => None,
        })
        .filter(|(_, e)| seen.insert(e.exposure_id.as_str()))
        .collect();
    let poison: Vec<(&Pending, &str)> = items
        .iter()
        .filter_map(|m| match &m.item {
            Item::Poison { error } => Some((m, error.as_str())),
            Item::Row(_) => None,
        })
        .collect();
    let total_rows = items
        .iter()
        .filter(|m| matches!(m.item, Item::Row(_)))
        .count() as u64;
    let mut dlq_done = false;
    let mut attempt: u32 = 0;
    let started = Instant::now();
    loop {
        let result = async {
            if !dlq_done {
                let sent = send_dlq(&producer, &poison, &topic, &dlq_topic)
                    .await
                    .map_err(Attempt::Failed)?;
                metrics.dlq.inc_by(sent);
                dlq_done = true;
            }
            if rows.is_empty() {
                return sink
                    .wh
                    .ping()
                    .await
                    .map(|()| 0)
                    .map_err(|e| Attempt::Failed(e.to_string()));
            }
            let (mut inserted, mut rejected) =
                match write_isolating(&mut sink.wh, &rows, sink.canary.as_ref(), &metrics)
                    .await
                    .map_err(|e| Attempt::Failed(e.to_string()))?
                {
                    Isolated::WarehouseWide(why) => return Err(Attempt::Open(why)),
                    Isolated::Done { inserted, rejected } => (inserted, rejected),
                };
            let now = Instant::now();
            let judged = rows.len() as u64;
            if !rejected.is_empty() {
                if let Some(why) = sink.breaker.would_open(now, judged, rejected.len() as u64) {
                    return Err(Attempt::Open(why));
                }
                // Before the DLQ, the rejected rows are judged once more: a warehouse fixed
                // while the batch was being judged (a constraint dropped after refusing some
                // of it) takes them now.
                let at: HashSet<(i32, i64)> = rejected
                    .iter()
                    .map(|(m, _)| (m.partition, m.offset))
                    .collect();
                let again: Vec<(&Pending, &Exposure)> = rows
                    .iter()
                    .filter(|(m, _)| at.contains(&(m.partition, m.offset)))
                    .copied()
                    .collect();
                debug!(rows = again.len(), "judging the rejected rows once more");
                match write_isolating(&mut sink.wh, &again, None, &metrics)
                    .await
                    .map_err(|e| Attempt::Failed(e.to_string()))?
                {
                    Isolated::WarehouseWide(why) => return Err(Attempt::Open(why)),
                    Isolated::Done {
                        inserted: more,
                        rejected: still,
                    } => {
                        inserted += more;
                        rejected = still;
                    }
                }
                let sent = send_dlq(&producer, &rejected, &topic, &dlq_topic)
                    .await
                    .map_err(Attempt::Failed)?;
                metrics.dlq.inc_by(sent);
                metrics.rows_rejected.inc_by(sent);
            }
            let refused = rejected.len() as u64;
            sink.breaker.record(now, judged, refused);
            // The canary: a row the warehouse took, for the next batch with rejected rows.
            let refused_at: HashSet<(i32, i64)> = rejected
                .iter()
                .map(|(m, _)| (m.partition, m.offset))
                .collect();
            if let Some((_, e)) = rows
                .iter()
                .rev()
                .find(|(m, _)| !refused_at.contains(&(m.partition, m.offset)))
            {
                sink.canary = Some((*e).clone());
            }
            Ok(inserted)
        }
        .await;
        match result {
            Ok(inserted) => {
                metrics.write_latency.observe(started.elapsed());
                metrics.warehouse_ok();
                if metrics.breaker_closed() {
                    info!("the breaker closed: the warehouse takes the rows again; resuming");
                }
                metrics.batches.inc();
                metrics.rows_inserted.inc_by(inserted);
                metrics
                    .duplicates_skipped
                    .inc_by(total_rows.saturating_sub(inserted));
                let now = Utc::now();
                for (_, e) in &rows {
                    if let Some(t) = e.accepted_at {
                        if let Ok(d) = (now - t).to_std() {
                            metrics.end_to_end.observe(d);
                        }
                    }
                }
                debug!(rows = rows.len(), inserted, "batch written");
                return (sink, Outcome::Written { next, first_at });
            }
            Err(Attempt::Open(why)) => {
                attempt += 1;
                // The warehouse answered: it is its verdict on the rows that stops the consumer.
                metrics.warehouse_ok();
                metrics.warehouse_retries.inc();
                let delay = backoff(attempt);
                if metrics.breaker_opened(&why) {
                    error!(reason = %why, rows = rows.len(), "the breaker opened: consuming stops, nothing is sent to the DLQ or committed until the warehouse takes this batch");
                } else {
                    debug!(reason = %why, attempt, "the breaker stays open");
                }
                tokio::time::sleep(delay).await;
            }
            Err(Attempt::Failed(e)) => {
                attempt += 1;
                metrics.warehouse_retries.inc();
                metrics.warehouse_failed(&e);
                let delay = backoff(attempt);
                if attempt == 1 || attempt % 10 == 0 {
                    error!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "writing a batch failed; retrying without committing");
                } else {
                    warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "writing a batch failed; retrying");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What [`write_isolating`] made of a batch.
enum Isolated<'a> {
    /// Everything but `rejected` is written (`inserted` of it new).
    Done {
        inserted: u64,
        rejected: Vec<(&'a Pending, String)>,
    },
    /// The warehouse rejects the canary too: the fault is not the rows'. Some parts of the
    /// batch may be written; the rest is not tried.
    WarehouseWide(String),
}

/// Writes `rows`, each part in a transaction of its own. When the warehouse rejects a part's
/// data (not the connection: SQLSTATE classes 22 and 23), that part is halved, and halved
/// again, until each row it rejects is alone: those rows come back with the reason and
/// everything else is written. A batch with one bad row costs about 2·log2(n) more
/// transactions, once. Connection errors end the attempt; the caller retries the whole batch,
/// and rows written before are then skipped by the primary key.
///
/// At the first rejection, the `canary` (a row the warehouse took before) is tried under a
/// fresh `exposure_id` and rolled back: if the warehouse refuses that too, halving stops.
async fn write_isolating<'a>(
    wh: &mut Warehouse,
    rows: &[(&'a Pending, &'a Exposure)],
    canary: Option<&Exposure>,
    metrics: &Metrics,
) -> Result<Isolated<'a>, WarehouseError> {
    let mut inserted = 0;
    let mut rejected = Vec::new();
    let mut canary_tried = false;
    let mut parts = vec![rows];
    while let Some(part) = parts.pop() {
        let only: Vec<&Exposure> = part.iter().map(|(_, e)| *e).collect();
        match wh.write(&only).await {
            Ok(written) => {
                metrics.warehouse_ok();
                inserted += written.inserted;
                if written.staged {
                    metrics.staged_writes.inc();
                }
            }
            Err(e) if e.rejects_data => {
                // It answered: /health must not call a long judgement an outage.
                metrics.warehouse_ok();
                if let (false, Some(c)) = (canary_tried, canary) {
                    canary_tried = true;
                    let mut probe = c.clone();
                    probe.exposure_id = fresh_id();
                    match wh.try_write(&[&probe]).await {
                        Ok(()) => {}
                        Err(c) if c.rejects_data => {
                            return Ok(Isolated::WarehouseWide(format!(
                                "the warehouse rejects rows like those it took before: {c}"
                            )))
                        }
                        Err(c) => return Err(c),
                    }
                }
                if part.len() == 1 {
                    rejected.push((part[0].0, format!("the warehouse rejected the row: {e}")));
                } else {
                    debug!(rows = part.len(), error = %e, "the warehouse rejects part of the batch: halving it");
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Isolated::Done { inserted, rejected })
}

/// A random uuid-v4-shaped exposure_id for the canary (its transaction is rolled back).
fn fresh_id() -> String {
    let (a, b): (u64, u64) = (rand::random(), rand::random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Produces messages to the DLQ as they came, with why and where from, and waits for every
/// acknowledgement.
async fn send_dlq(
    producer: &DlqProducer,
    messages: &[(&Pending, impl AsRef<str>)],
    topic: &str,
    dlq_topic: &str,
) -> Result<u64, String> {
    let mut sends = Vec::new();
    for (m, error) in messages {
        let error = error.as_ref();
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(topic),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &m.value {
            record = record.payload(v.as_slice());
        }
        warn!(partition = m.partition, offset = m.offset, %error, "sending the message to the DLQ");
        sends.push(producer.send(record, Duration::from_secs(30)));
    }
    let n = sends.len();
    for r in futures_util::future::join_all(sends).await {
        r.map_err(|(e, _)| format!("producing to the DLQ {dlq_topic}: {e}"))?;
    }
    if n > 0 {
        info!(messages = n, "messages acknowledged by the DLQ");
    }
    Ok(n as u64)
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)].
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP, "{attempt}: {d:?}");
            assert!(d <= BACKOFF_BASE * 2u32.pow(attempt.min(16)));
        }
        let spread: HashSet<Duration> = (0..50).map(|_| backoff(20)).collect();
        assert!(spread.len() > 10);
    }

    #[test]
    fn overrides_cannot_turn_on_auto_commit() {
        let mut s = Settings::from_vars([
            ("KAFKA_BOOTSTRAP", "k:9092"),
            ("DATABASE_URL", "postgres://h/db"),
            ("RDKAFKA_ENABLE_AUTO_COMMIT", "true"),
            ("RDKAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("RDKAFKA_FETCH_WAIT_MAX_MS", "200"),
        ])
        .unwrap();
        s.rdkafka
            .insert("enable.auto.offset.store".into(), "true".into());
        let c = consumer_config(&s);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(
            c.get("fetch.wait.max.ms"),
            Some("200"),
            "a default, overridable"
        );
        assert_eq!(
            consumer_config(&Settings {
                rdkafka: Default::default(),
                ..s.clone()
            })
            .get("fetch.wait.max.ms"),
            Some("50")
        );
        let p = producer_config(&s);
        assert_eq!(p.get("session.timeout.ms"), None);
        assert_eq!(p.get("enable.auto.commit"), None);
        assert_eq!(p.get("enable.idempotence"), Some("true"));
    }
}
