//! Prometheus metrics in a prometheus-client registry, rendered in Prometheus' text format.

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Upper bounds of the produce latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why events were not accepted; each is rendered, at 0 until it happens.
const REJECTED: [&str; 5] = [
    "invalid",
    "too_large",
    "unauthorized",
    "overloaded",
    "not_acked",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    accepted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    in_flight: Gauge,
    produce: Histogram,
}

impl Metrics {
    /// `iam`: with `KAFKA_AUTH=iam`, the token signer, whose counts are rendered too.
    pub fn new(iam: Option<msk_iam::Signer>) -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let accepted = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let in_flight = Gauge::default();
        let produce = Histogram::new(BUCKETS);
        let mut registry = Registry::default();
        registry.register(
            "exposure_api_http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "exposure_api_events_accepted",
            "Events the broker acknowledged",
            accepted.clone(),
        );
        for reason in REJECTED {
            rejected.get_or_create_owned(&ReasonLabel { reason });
        }
        registry.register(
            "exposure_api_events_rejected",
            "Events not accepted, by reason",
            rejected.clone(),
        );
        registry.register(
            "exposure_api_produce_in_flight",
            "Events waiting for the broker's acknowledgement",
            in_flight.clone(),
        );
        registry.register(
            "exposure_api_produce_duration_seconds",
            "Time from enqueue to the broker's acknowledgement (or failure)",
            produce.clone(),
        );
        if let Some(signer) = iam {
            signer.register(&mut registry, "exposure_api");
        }
        Metrics {
            registry,
            requests,
            accepted,
            rejected,
            in_flight,
            produce,
        }
    }

    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
    }

    pub fn accepted(&self, n: usize) {
        self.accepted.inc_by(n as u64);
    }

    /// `reason`: one of [`REJECTED`].
    pub fn rejected(&self, reason: &'static str, n: usize) {
        self.rejected
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n as u64);
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    pub fn observe_produce(&self, d: Duration) {
        self.produce.observe(d.as_secs_f64());
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
