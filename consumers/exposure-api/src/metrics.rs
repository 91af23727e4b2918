//! Prometheus metrics, rendered in the text exposition format (no extra crate needed for a
//! handful of counters and one histogram).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the produce latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    accepted: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: AtomicI64,
    buckets: [AtomicU64; BUCKETS.len()],
    produce_count: AtomicU64,
    produce_sum_micros: AtomicU64,
    /// With `KAFKA_AUTH=iam`, the token signer, whose counts are rendered too.
    iam: Option<msk_iam::Signer>,
}

impl Metrics {
    pub fn new(iam: Option<msk_iam::Signer>) -> Metrics {
        Metrics {
            iam,
            ..Metrics::default()
        }
    }

    pub fn request(&self, route: &str, method: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
    }

    pub fn accepted(&self, n: usize) {
        self.accepted.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `reason`: `invalid`, `unauthorized`, `too_large` or `not_acked`.
    pub fn rejected(&self, reason: &'static str, n: usize) {
        let mut m = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += n as u64;
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn observe_produce(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.produce_count.fetch_add(1, Ordering::Relaxed);
        self.produce_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP exposure_api_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE exposure_api_http_requests_total counter");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "exposure_api_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(
            out,
            "# HELP exposure_api_events_accepted_total Events the broker acknowledged."
        );
        let _ = writeln!(out, "# TYPE exposure_api_events_accepted_total counter");
        let _ = writeln!(
            out,
            "exposure_api_events_accepted_total {}",
            self.accepted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP exposure_api_events_rejected_total Events not accepted, by reason."
        );
        let _ = writeln!(out, "# TYPE exposure_api_events_rejected_total counter");
        let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        for reason in [
            "invalid",
            "too_large",
            "unauthorized",
            "overloaded",
            "not_acked",
        ] {
            let n = rejected.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "exposure_api_events_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        drop(rejected);
        let _ = writeln!(out, "# HELP exposure_api_produce_in_flight Events waiting for the broker's acknowledgement.");
        let _ = writeln!(out, "# TYPE exposure_api_produce_in_flight gauge");
        let _ = writeln!(
            out,
            "exposure_api_produce_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP exposure_api_produce_duration_seconds Time from enqueue to the broker's acknowledgement (or failure).");
        let _ = writeln!(
            out,
            "# TYPE exposure_api_produce_duration_seconds histogram"
        );
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "exposure_api_produce_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.produce_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "exposure_api_produce_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "exposure_api_produce_duration_seconds_sum {}",
            self.produce_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "exposure_api_produce_duration_seconds_count {total}");
        out.push_str(&msk_iam::prometheus(self.iam.as_ref(), "exposure_api"));
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new(None);
        m.request("/exposure", "POST", 202);
        m.request("/exposure", "POST", 202);
        m.accepted(2);
        m.rejected("invalid", 1);
        m.observe_produce(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains(
            "exposure_api_http_requests_total{route=\"/exposure\",method=\"POST\",status=\"202\"} 2"
        ));
        assert!(text.contains("exposure_api_events_accepted_total 2"));
        assert!(text.contains("exposure_api_events_rejected_total{reason=\"invalid\"} 1"));
        assert!(text.contains("exposure_api_produce_duration_seconds_bucket{le=\"0.002\"} 0"));
        assert!(text.contains("exposure_api_produce_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("exposure_api_produce_duration_seconds_bucket{le=\"+Inf\"} 1"));
    }
}
