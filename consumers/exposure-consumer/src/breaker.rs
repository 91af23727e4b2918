//! The breaker: tells a warehouse-wide fault (a new NOT NULL column, a CHECK constraint every
//! row breaks) from bad rows, before any rejected row goes to the DLQ.
//!
//! Two signals, either one opens it:
//! - **the canary**: when a batch has a rejected row, a copy of the last row the warehouse
//!   accepted, under a fresh `exposure_id`, is written in a transaction that is rolled back.
//!   When the warehouse rejects that too, the fault is the warehouse's, not the rows'.
//! - **the share**: more than `BREAKER_SHARE` of the rows the warehouse judged within the last
//!   `BREAKER_WINDOW_SECS` (the batch at hand included) were rejected, and at least
//!   `BREAKER_MIN_REJECTED` of them.
//!
//! While it is open the consumer pauses its partitions, reports unhealthy, commits nothing of
//! the batch at hand and sends none of its rows to the DLQ; it retries the batch with backoff
//! and closes when the batch goes through.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The breaker's thresholds (settings `BREAKER_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Open when more than this share of the judged rows were rejected (0 < share ≤ 1).
    pub share: f64,
    /// ... and at least this many rows were rejected.
    pub min_rejected: u64,
    /// Over the rows judged within this long.
    pub window: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            share: 0.5,
            min_rejected: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Rows judged by the warehouse, per batch, within the window.
#[derive(Debug)]
pub struct Breaker {
    thresholds: Thresholds,
    /// (when, rows judged, rows rejected), oldest first.
    batches: VecDeque<(Instant, u64, u64)>,
}

impl Breaker {
    pub fn new(thresholds: Thresholds) -> Breaker {
        Breaker {
            thresholds,
            batches: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.batches.front() {
            if now.saturating_duration_since(*at) > self.thresholds.window {
                self.batches.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether a batch of `judged` rows with `rejected` of them refused would open the breaker,
    /// and why, counting the window's earlier batches too. Nothing is recorded.
    pub fn would_open(&mut self, now: Instant, judged: u64, rejected: u64) -> Option<String> {
        self.expire(now);
        let (all, bad) = self
            .batches
            .iter()
            .fold((judged, rejected), |(a, b), (_, j, r)| (a + j, b + r));
        let t = self.thresholds;
        (bad >= t.min_rejected && all > 0 && bad as f64 > t.share * all as f64).then(|| {
            format!(
                "the warehouse rejected {bad} of the {all} rows it judged in the last {}s (more than {}%)",
                t.window.as_secs(),
                t.share * 100.0
            )
        })
    }

    /// Records a batch that went through.
    pub fn record(&mut self, now: Instant, judged: u64, rejected: u64) {
        self.expire(now);
        self.batches.push_back((now, judged, rejected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(Thresholds {
            share: 0.5,
            min_rejected: 10,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_few_bad_rows_do_not_open_it() {
        let mut b = breaker();
        let t = Instant::now();
        assert_eq!(b.would_open(t, 5, 5), None, "under the minimum count");
        assert_eq!(b.would_open(t, 100, 9), None);
        b.record(t, 100, 1);
        assert_eq!(b.would_open(t, 30, 20), None, "20 of 130 rejected");
    }

    #[test]
    fn most_rows_rejected_opens_it() {
        let mut b = breaker();
        let t = Instant::now();
        let why = b.would_open(t, 20, 11).expect("11 of 20");
        assert_eq!(
            why,
            "the warehouse rejected 11 of the 20 rows it judged in the last 60s (more than 50%)"
        );
        b.record(t, 10, 6);
        assert!(
            b.would_open(t, 10, 6).is_some(),
            "12 of 20 over two batches"
        );
    }

    #[test]
    fn the_window_forgets() {
        let mut b = breaker();
        let t = Instant::now();
        b.record(t, 1000, 0);
        assert_eq!(b.would_open(t + Duration::from_secs(30), 100, 100), None);
        assert!(b
            .would_open(t + Duration::from_secs(61), 100, 100)
            .is_some());
    }
}
