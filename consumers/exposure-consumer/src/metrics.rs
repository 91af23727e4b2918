//! Counters for /metrics and the facts /health decides on, shared between the consumer loop,
//! the rebalance callbacks and the HTTP server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A Prometheus histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Relaxed));
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Per partition: the offset last committed and the consumer lag librdkafka last reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionState {
    pub committed: Option<i64>,
    pub lag: Option<i64>,
}

pub struct Metrics {
    pub rows_inserted: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    pub dlq: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub warehouse_retries: AtomicU64,
    pub commit_errors: AtomicU64,
    pub rebalances: AtomicU64,
    pub batch_latency: Histogram,
    pub end_to_end: Histogram,
    pub partitions: Mutex<BTreeMap<i32, PartitionState>>,
    /// Partitions assigned now.
    pub assigned: AtomicU64,
    /// Messages consumed and not yet handed to the warehouse.
    pub buffered: AtomicU64,
    /// 1 while the consumer holds its partitions paused.
    pub paused: AtomicU64,
    /// Times the breaker opened.
    pub breaker_trips: AtomicU64,
    breaker_open: AtomicBool,
    /// Why the breaker is open.
    breaker_reason: Mutex<Option<String>>,
    started: Instant,
    /// Milliseconds since `started` of the last good warehouse answer / consumer loop turn.
    warehouse_ok_ms: AtomicU64,
    warehouse_seen: AtomicU64,
    loop_ms: AtomicU64,
    pub last_warehouse_error: Mutex<Option<String>>,
    /// With `KAFKA_AUTH=iam`, the token signer, whose counts are rendered too.
    pub iam: Option<msk_iam::Signer>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            rows_inserted: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            dlq: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            warehouse_retries: AtomicU64::new(0),
            commit_errors: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            batch_latency: Histogram::new(LATENCY_BUCKETS),
            end_to_end: Histogram::new(LATENCY_BUCKETS),
            partitions: Mutex::new(BTreeMap::new()),
            assigned: AtomicU64::new(0),
            buffered: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            breaker_trips: AtomicU64::new(0),
            breaker_open: AtomicBool::new(false),
            breaker_reason: Mutex::new(None),
            started: Instant::now(),
            warehouse_ok_ms: AtomicU64::new(0),
            warehouse_seen: AtomicU64::new(0),
            loop_ms: AtomicU64::new(0),
            last_warehouse_error: Mutex::new(None),
            iam: None,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
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
        if !was_open {
            self.breaker_trips.fetch_add(1, Relaxed);
        }
        !was_open
    }

    /// Closes the breaker; true when it was open.
    pub fn breaker_closed(&self) -> bool {
        let was_open = self.breaker_open.swap(false, Relaxed);
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
        if let Ok(mut p) = self.partitions.lock() {
            p.entry(partition).or_default().committed = Some(offset);
        }
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        if let Ok(mut p) = self.partitions.lock() {
            p.entry(partition).or_default().lag = Some(lag);
        }
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            &mut out,
            "exposure_consumer_messages_total",
            "Kafka messages consumed.",
            &self.messages,
        );
        counter(
            &mut out,
            "exposure_consumer_rows_inserted_total",
            "Rows inserted into the warehouse.",
            &self.rows_inserted,
        );
        counter(&mut out, "exposure_consumer_duplicates_skipped_total", "Exposures skipped because their exposure_id was already written (or repeated in the batch).", &self.duplicates_skipped);
        counter(
            &mut out,
            "exposure_consumer_batches_total",
            "Warehouse transactions committed.",
            &self.batches,
        );
        counter(
            &mut out,
            "exposure_consumer_dlq_total",
            "Messages produced to the DLQ: poison messages, and rows the warehouse rejected.",
            &self.dlq,
        );
        counter(
            &mut out,
            "exposure_consumer_rows_rejected_total",
            "Rows the warehouse rejected (a data error, alone in their transaction), sent to the DLQ.",
            &self.rows_rejected,
        );
        counter(
            &mut out,
            "exposure_consumer_warehouse_retries_total",
            "Failed warehouse attempts that were retried.",
            &self.warehouse_retries,
        );
        counter(
            &mut out,
            "exposure_consumer_commit_errors_total",
            "Offset commits that failed.",
            &self.commit_errors,
        );
        counter(
            &mut out,
            "exposure_consumer_rebalances_total",
            "Partition assignments and revocations.",
            &self.rebalances,
        );
        counter(
            &mut out,
            "exposure_consumer_breaker_trips_total",
            "Times the breaker opened: the warehouse rejected rows across the board.",
            &self.breaker_trips,
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "exposure_consumer_breaker_open",
            "1 while the breaker is open: consuming stopped, nothing committed or sent to the DLQ.",
            u64::from(self.breaker_is_open()),
        );
        gauge(
            &mut out,
            "exposure_consumer_buffered_messages",
            "Messages consumed and not yet handed to the warehouse.",
            self.buffered.load(Relaxed),
        );
        gauge(
            &mut out,
            "exposure_consumer_paused",
            "1 while the consumer holds its partitions paused (buffer over budget, or breaker open).",
            self.paused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP exposure_consumer_assigned_partitions Partitions assigned to this consumer.\n# TYPE exposure_consumer_assigned_partitions gauge\nexposure_consumer_assigned_partitions {}",
            self.assigned.load(Relaxed)
        );
        self.batch_latency.render(
            &mut out,
            "exposure_consumer_batch_seconds",
            "Time from a batch's first message to its offsets being committed.",
        );
        self.end_to_end.render(
            &mut out,
            "exposure_consumer_end_to_end_seconds",
            "Time from exposure-api's accepted_at to the row being committed.",
        );
        if let Ok(parts) = self.partitions.lock() {
            let _ = writeln!(out, "# HELP exposure_consumer_committed_offset Offset last committed (sent to the group coordinator), per partition.\n# TYPE exposure_consumer_committed_offset gauge");
            for (p, s) in parts.iter() {
                if let Some(c) = s.committed {
                    let _ = writeln!(
                        out,
                        "exposure_consumer_committed_offset{{partition=\"{p}\"}} {c}"
                    );
                }
            }
            let _ = writeln!(out, "# HELP exposure_consumer_lag Messages behind the partition's end, as librdkafka last reported.\n# TYPE exposure_consumer_lag gauge");
            for (p, s) in parts.iter() {
                if let Some(l) = s.lag {
                    let _ = writeln!(out, "exposure_consumer_lag{{partition=\"{p}\"}} {l}");
                }
            }
        }
        out.push_str(&msk_iam::prometheus(self.iam.as_ref(), "exposure_consumer"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.rows_inserted.fetch_add(5, Relaxed);
        m.batch_latency.observe(Duration::from_millis(30));
        m.set_committed(3, 42);
        m.set_lag(3, 7);
        let text = m.render();
        assert!(text.contains("exposure_consumer_rows_inserted_total 5\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("exposure_consumer_batch_seconds_count 1\n"));
        assert!(text.contains("exposure_consumer_committed_offset{partition=\"3\"} 42\n"));
        assert!(text.contains("exposure_consumer_lag{partition=\"3\"} 7\n"));
    }

    #[test]
    fn health() {
        let m = Metrics::new();
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
