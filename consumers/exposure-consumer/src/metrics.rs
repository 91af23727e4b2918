//! Counters for /metrics and the facts /health decides on, shared between the consumer loop,
//! the rebalance callbacks and the HTTP server. The figures live in a prometheus-client
//! registry, which renders them in Prometheus' text format.

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label of the per-partition gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// A latency histogram over [`LATENCY_BUCKETS`], observed in seconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BUCKETS))
    }
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

pub struct Metrics {
    registry: Registry,
    pub rows_inserted: Counter,
    pub duplicates_skipped: Counter,
    pub batches: Counter,
    /// Writes whose COPY straight into the table met an exposure already there.
    pub staged_writes: Counter,
    pub messages: Counter,
    pub dlq: Counter,
    pub rows_rejected: Counter,
    pub warehouse_retries: Counter,
    pub commit_errors: Counter,
    pub rebalances: Counter,
    pub batch_latency: Latency,
    /// How long each written batch took to write, retries included.
    pub write_latency: Latency,
    pub end_to_end: Latency,
    committed: Family<PartitionLabel, Gauge>,
    lag: Family<PartitionLabel, Gauge>,
    /// Partitions assigned now.
    pub assigned: Gauge,
    /// Messages consumed and not yet handed to the warehouse.
    pub buffered: Gauge,
    /// 1 while the consumer holds its partitions paused ([`Metrics::set_paused`]).
    paused: Gauge,
    /// Seconds the partitions were held paused, and since when they are.
    paused_seconds: Counter<f64, AtomicU64>,
    paused_since: Mutex<Option<Instant>>,
    /// Times the breaker opened.
    pub breaker_trips: Counter,
    breaker_open: AtomicBool,
    breaker_gauge: Gauge,
    /// Why the breaker is open.
    breaker_reason: Mutex<Option<String>>,
    started: Instant,
    /// Milliseconds since `started` of the last good warehouse answer / consumer loop turn.
    warehouse_ok_ms: AtomicU64,
    warehouse_seen: AtomicU64,
    loop_ms: AtomicU64,
    pub last_warehouse_error: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None)
    }
}

impl Metrics {
    /// `iam`: with `KAFKA_AUTH=iam`, the token signer, whose counts are rendered too.
    pub fn new(iam: Option<msk_iam::Signer>) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            rows_inserted: Counter::default(),
            duplicates_skipped: Counter::default(),
            batches: Counter::default(),
            staged_writes: Counter::default(),
            messages: Counter::default(),
            dlq: Counter::default(),
            rows_rejected: Counter::default(),
            warehouse_retries: Counter::default(),
            commit_errors: Counter::default(),
            rebalances: Counter::default(),
            batch_latency: Latency::default(),
            write_latency: Latency::default(),
            end_to_end: Latency::default(),
            committed: Family::default(),
            lag: Family::default(),
            assigned: Gauge::default(),
            buffered: Gauge::default(),
            paused: Gauge::default(),
            paused_seconds: Counter::default(),
            paused_since: Mutex::new(None),
            breaker_trips: Counter::default(),
            breaker_open: AtomicBool::new(false),
            breaker_gauge: Gauge::default(),
            breaker_reason: Mutex::new(None),
            started: Instant::now(),
            warehouse_ok_ms: AtomicU64::new(0),
            warehouse_seen: AtomicU64::new(0),
            loop_ms: AtomicU64::new(0),
            last_warehouse_error: Mutex::new(None),
            registry: Registry::default(),
        };
        let counters = [
            ("messages", "Kafka messages consumed", &m.messages),
            ("rows_inserted", "Rows inserted into the warehouse", &m.rows_inserted),
            ("duplicates_skipped", "Exposures skipped because their exposure_id was already written (or repeated in the batch)", &m.duplicates_skipped),
            ("batches", "Warehouse transactions committed", &m.batches),
            ("staged_writes", "Writes whose COPY straight into the table met an exposure_id already there, and which went through the staging table's INSERT ... ON CONFLICT", &m.staged_writes),
            ("dlq", "Messages produced to the DLQ: poison messages, and rows the warehouse rejected", &m.dlq),
            ("rows_rejected", "Rows the warehouse rejected (a data error, alone in their transaction), sent to the DLQ", &m.rows_rejected),
            ("warehouse_retries", "Failed warehouse attempts that were retried", &m.warehouse_retries),
            ("commit_errors", "Offset commits that failed", &m.commit_errors),
            ("rebalances", "Partition assignments and revocations", &m.rebalances),
            ("breaker_trips", "Times the breaker opened: the warehouse rejected rows across the board", &m.breaker_trips),
        ];
        for (name, help, counter) in counters {
            registry.register(format!("exposure_consumer_{name}"), help, counter.clone());
        }
        let gauges = [
            ("breaker_open", "1 while the breaker is open: consuming stopped, nothing committed or sent to the DLQ", &m.breaker_gauge),
            ("buffered_messages", "Messages consumed and not yet handed to the warehouse", &m.buffered),
            ("paused", "1 while the consumer holds its partitions paused (buffer full for over 2 s, or breaker open)", &m.paused),
            ("assigned_partitions", "Partitions assigned to this consumer", &m.assigned),
        ];
        for (name, help, gauge) in gauges {
            registry.register(format!("exposure_consumer_{name}"), help, gauge.clone());
        }
        registry.register(
            "exposure_consumer_batch_seconds",
            "Time from a batch's first message to its offsets being committed",
            m.batch_latency.0.clone(),
        );
        registry.register(
            "exposure_consumer_paused_seconds",
            "Time the consumer held its partitions paused (buffer full for over 2 s, or breaker open), \
             counted when it resumes",
            m.paused_seconds.clone(),
        );
        registry.register(
            "exposure_consumer_write_seconds",
            "Time each written batch took to write (its warehouse transactions, DLQ sends and \
             retries); the sum over wall time is the share of it the consumer spent writing",
            m.write_latency.0.clone(),
        );
        registry.register(
            "exposure_consumer_end_to_end_seconds",
            "Time from exposure-api's accepted_at to the row being committed",
            m.end_to_end.0.clone(),
        );
        registry.register(
            "exposure_consumer_committed_offset",
            "Offset last committed (sent to the group coordinator), per partition",
            m.committed.clone(),
        );
        registry.register(
            "exposure_consumer_lag",
            "Messages behind the partition's end, as librdkafka last reported",
            m.lag.clone(),
        );
        if let Some(signer) = iam {
            signer.register(&mut registry, "exposure_consumer");
        }
        Metrics { registry, ..m }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records the partitions being paused or resumed: the gauge, and the paused time.
    pub fn set_paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
        if let Ok(mut since) = self.paused_since.lock() {
            match (paused, *since) {
                (true, None) => *since = Some(Instant::now()),
                (false, Some(t)) => {
                    self.paused_seconds.inc_by(t.elapsed().as_secs_f64());
                    *since = None;
                }
                _ => {}
            }
        }
    }

    pub fn warehouse_ok(&self) {
        self.warehouse_ok_ms.store(self.now_ms(), Relaxed);
        self.warehouse_seen.store(1, Relaxed);
        if let Ok(mut e) = self.last_warehouse_error.lock() {
            *e = None;
        }
    }

    pub fn warehouse_failed(&self, error: &str) {
        if let Ok(mut e) = self.last_warehouse_error.lock() {
            *e = Some(error.to_string());
        }
    }

    pub fn breaker_is_open(&self) -> bool {
        self.breaker_open.load(Relaxed)
    }

    /// Opens the breaker (or updates why it is open); true when it was closed.
    pub fn breaker_opened(&self, why: &str) -> bool {
        if let Ok(mut r) = self.breaker_reason.lock() {
            *r = Some(why.to_string());
        }
        let was_open = self.breaker_open.swap(true, Relaxed);
        self.breaker_gauge.set(1);
        if !was_open {
            self.breaker_trips.inc();
        }
        !was_open
    }

    /// Closes the breaker; true when it was open.
    pub fn breaker_closed(&self) -> bool {
        let was_open = self.breaker_open.swap(false, Relaxed);
        self.breaker_gauge.set(0);
        if was_open {
            if let Ok(mut r) = self.breaker_reason.lock() {
                *r = None;
            }
        }
        was_open
    }

    pub fn loop_turned(&self) {
        self.loop_ms.store(self.now_ms(), Relaxed);
    }

    pub fn set_committed(&self, partition: i32, offset: i64) {
        self.committed
            .get_or_create(&PartitionLabel { partition })
            .set(offset);
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabel { partition })
            .set(lag);
    }

    /// `None` when healthy, else why not. Healthy: the consumer loop turned within 15 s (it is
    /// joining, assigned, or idle with nothing assigned), the warehouse answered within 15 s
    /// (or, during the first 15 s, has not failed yet) and the breaker is closed.
    pub fn unhealthy(&self) -> Option<serde_json::Value> {
        let now = self.now_ms();
        let mut why = Vec::new();
        let loop_age = now.saturating_sub(self.loop_ms.load(Relaxed));
        if loop_age > 15_000 {
            why.push(format!(
                "the consumer loop has not run for {}s",
                loop_age / 1000
            ));
        }
        let error = self
            .last_warehouse_error
            .lock()
            .ok()
            .and_then(|e| e.clone());
        let seen = self.warehouse_seen.load(Relaxed) == 1;
        let wh_age = now.saturating_sub(self.warehouse_ok_ms.load(Relaxed));
        if (seen || now > 15_000) && wh_age > 15_000 {
            why.push(match &error {
                Some(e) => format!("the warehouse has not answered for {}s: {e}", wh_age / 1000),
                None => format!("the warehouse has not answered for {}s", wh_age / 1000),
            });
        } else if !seen && error.is_some() {
            why.push(format!(
                "the warehouse is not reachable yet: {}",
                error.unwrap_or_default()
            ));
        }
        if self.breaker_is_open() {
            let reason = self
                .breaker_reason
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .unwrap_or_default();
            why.push(format!(
                "the breaker is open, consuming is stopped and nothing is committed: {reason}"
            ));
        }
        if why.is_empty() {
            None
        } else {
            Some(serde_json::json!({ "status": "unhealthy", "reasons": why }))
        }
    }

    /// The figures in Prometheus' text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.rows_inserted.inc_by(5);
        m.batch_latency.observe(Duration::from_millis(30));
        m.write_latency.observe(Duration::from_millis(250));
        m.set_committed(3, 42);
        m.set_lag(3, 7);
        let text = m.render();
        assert!(text.contains("exposure_consumer_rows_inserted_total 5\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_count 1\n"));
        assert!(text.contains("exposure_consumer_write_seconds_sum 0.25\n"));
        assert!(text.contains("exposure_consumer_write_seconds_count 1\n"));
        assert!(text.contains("exposure_consumer_paused 0\n"));
        assert!(text.contains("exposure_consumer_paused_seconds_total 0.0\n"));
        assert!(text.contains("exposure_consumer_committed_offset{partition=\"3\"} 42\n"));
        assert!(text.contains("exposure_consumer_lag{partition=\"3\"} 7\n"));
    }

    #[test]
    fn paused_time_is_counted_when_the_partitions_resume() {
        let m = Metrics::default();
        m.set_paused(true);
        std::thread::sleep(Duration::from_millis(20));
        m.set_paused(true);
        assert!(m.render().contains("exposure_consumer_paused 1\n"));
        assert!(m
            .render()
            .contains("exposure_consumer_paused_seconds_total 0.0\n"));
        m.set_paused(false);
        m.set_paused(false);
        assert!(m.render().contains("exposure_consumer_paused 0\n"));
        let paused = m.paused_seconds.get();
        assert!((0.02..5.0).contains(&paused), "{paused} s paused");
    }

    #[test]
    fn health() {
        let m = Metrics::default();
        m.loop_turned();
        assert!(m.unhealthy().is_none());
        m.warehouse_failed("connection refused");
        let why = m.unhealthy().unwrap();
        assert!(why.to_string().contains("connection refused"), "{why}");
        m.warehouse_ok();
        assert!(m.unhealthy().is_none());
        assert!(m.breaker_opened("the warehouse rejected 12 of 12 rows"));
        assert!(!m.breaker_opened("the warehouse rejected 24 of 24 rows"));
        let why = m.unhealthy().unwrap().to_string();
        assert!(
            why.contains("the breaker is open") && why.contains("24 of 24"),
            "{why}"
        );
        assert!(m.render().contains("exposure_consumer_breaker_open 1\n"));
        assert!(m
            .render()
            .contains("exposure_consumer_breaker_trips_total 1\n"));
        assert!(m.breaker_closed());
        assert!(!m.breaker_closed());
        assert!(m.unhealthy().is_none());
        assert!(m.render().contains("exposure_consumer_breaker_open 0\n"));
    }
}
