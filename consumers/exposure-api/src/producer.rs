//! The one shared Kafka producer: idempotent, acks=all, keyed by `ds_user_id`. An event counts
//! as accepted only when its delivery future reports the broker's acknowledgement.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Mutex;
use tracing::{debug, error, warn};

use crate::config::Settings;
use crate::metrics::Metrics;

/// Why an event was not acknowledged. `TooLarge` is answered 413, every other variant 503
/// with `Retry-After`.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAcked {
    /// librdkafka's local queue is full.
    QueueFull,
    /// No acknowledgement within the produce timeout (broker down or slow).
    Timeout,
    /// The message at this index of the request is too large for the broker: the broker's
    /// `message.max.bytes` or the topic's `max.message.bytes` is below the producer's
    /// `message.max.bytes`. A retry would be refused again.
    TooLarge(usize),
    /// The broker or the client refused it.
    Failed(String),
}

impl std::fmt::Display for NotAcked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAcked::QueueFull => f.write_str("the producer queue is full"),
            NotAcked::Timeout => f.write_str("the broker did not acknowledge the event in time"),
            NotAcked::TooLarge(i) => write!(
                f,
                "the broker refused event {i} as too large for the topic (its max.message.bytes, \
                 or the broker's message.max.bytes, is below the producer's)"
            ),
            NotAcked::Failed(e) => write!(f, "the broker did not take the event: {e}"),
        }
    }
}

/// What librdkafka's error for the message at `index` of a request means for the client,
/// whether librdkafka refused the message when it was enqueued or the broker refused it.
pub fn not_acked(e: &KafkaError, index: usize) -> NotAcked {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => NotAcked::QueueFull,
        Some(RDKafkaErrorCode::MessageTimedOut) => NotAcked::Timeout,
        // The broker's MESSAGE_TOO_LARGE, and librdkafka's own refusal of a message over the
        // producer's message.max.bytes (which the API checks before producing).
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => NotAcked::TooLarge(index),
        _ => NotAcked::Failed(e.to_string()),
    }
}

pub struct Kafka {
    config: ClientConfig,
    producer: RwLock<Arc<FutureProducer<Quiet>>>,
    topic: String,
    timeout: Duration,
    health: Mutex<Option<(Instant, bool)>>,
    last_replaced: std::sync::Mutex<Option<Instant>>,
    brokers_lost_at: Arc<std::sync::Mutex<Option<Instant>>>,
    iam: Option<msk_iam::Signer>,
}

/// The producer's librdkafka settings.
pub fn client_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.kafka_bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            s.produce_timeout.as_millis().to_string(),
        )
        // Reconnect quickly after a broker restart.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        .set("socket.keepalive.enable", "true")
        // The topic is declared as code and made by `shoal topics apply`. A producer's
        // Metadata request may otherwise ask the broker to create a missing topic, with the
        // broker's defaults, where it auto-creates (Kafka with auto.create.topics.enable, nisshi).
        .set("allow.auto.create.topics", "false");
    if let Some(iam) = &s.iam {
        iam.apply(&mut c);
    }
    for (_, prop, value) in &s.rdkafka {
        c.set(prop, value);
    }
    c
}

/// Checks each `RDKAFKA_*` setting on its own, so a bad one is reported by its variable.
pub fn check_rdkafka_settings(s: &Settings) -> Result<(), (String, String)> {
    for (var, prop, value) in &s.rdkafka {
        let mut c = ClientConfig::new();
        c.set(prop, value);
        if let Err(e) = c.create_native_config() {
            return Err((var.clone(), e.to_string()));
        }
    }
    Ok(())
}

impl Kafka {
    /// `iam`: the token signer, with `KAFKA_AUTH=iam`.
    pub fn new(s: &Settings, iam: Option<msk_iam::Signer>) -> Result<Kafka, KafkaError> {
        let config = client_config(s);
        let brokers_lost_at = Arc::new(std::sync::Mutex::new(None));
        let producer: FutureProducer<Quiet> = config.create_with_context(Quiet {
            last: Default::default(),
            brokers_lost_at: brokers_lost_at.clone(),
            iam: iam.clone(),
        })?;
        Ok(Kafka {
            config,
            brokers_lost_at,
            iam,
            producer: RwLock::new(Arc::new(producer)),
            topic: s.topic.clone(),
            timeout: s.produce_timeout,
            health: Mutex::new(None),
            last_replaced: std::sync::Mutex::new(None),
        })
    }

    fn quiet(&self) -> Quiet {
        Quiet {
            last: Default::default(),
            brokers_lost_at: self.brokers_lost_at.clone(),
            iam: self.iam.clone(),
        }
    }

    /// Whether librdkafka lost its broker connections within `window`.
    fn brokers_lost_within(&self, window: Duration) -> bool {
        self.brokers_lost_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    fn producer(&self) -> Arc<FutureProducer<Quiet>> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Produces every message (key, value) and waits until the broker acknowledged all of
    /// them, or until the first that was not acknowledged within the produce timeout.
    pub async fn produce(
        &self,
        messages: &[(&str, Vec<u8>)],
        metrics: &Metrics,
    ) -> Result<(), NotAcked> {
        let start = Instant::now();
        // librdkafka fails a message itself after message.timeout.ms; the margin only guards
        // against a lost callback.
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_millis(500);
        let producer = self.producer();
        let mut pending = Vec::with_capacity(messages.len());
        for (key, value) in messages {
            let record = FutureRecord::to(&self.topic).key(*key).payload(value);
            match producer.send_result(record) {
                Ok(delivery) => pending.push((delivery, InFlight::new(metrics))),
                Err((e, _)) => {
                    let refused = not_acked(&e, pending.len());
                    if let NotAcked::Failed(_) = refused {
                        self.check_fatal(&producer);
                    }
                    return Err(refused);
                }
            }
        }
        for (i, (delivery, in_flight)) in pending.into_iter().enumerate() {
            let out = tokio::time::timeout_at(deadline, delivery).await;
            drop(in_flight);
            metrics.observe_produce(start.elapsed());
            match out {
                Err(_) => return Err(NotAcked::Timeout),
                Ok(Err(_canceled)) => {
                    return Err(NotAcked::Failed("the producer was dropped".into()))
                }
                Ok(Ok(Ok(_delivery))) => {}
                Ok(Ok(Err((e, _msg)))) => {
                    let refused = not_acked(&e, i);
                    match refused {
                        NotAcked::Timeout => {
                            self.check_fatal(&producer);
                            // Timed-out events make an idempotent producer bump its epoch
                            // when the broker returns, which tansu cannot handle (it refuses
                            // every later event of that producer). When the broker is away,
                            // a new producer (new producer id) is used instead; its queue is
                            // purged, so events already answered 503 are not sent late.
                            if self.brokers_lost_within(self.timeout + Duration::from_secs(5)) {
                                self.replace_rate_limited(
                                    &producer,
                                    "events timed out while the brokers were unreachable",
                                );
                            }
                        }
                        // The event's fault, not the producer's: librdkafka bumps the
                        // producer's epoch itself, which Kafka accepts. Only the unit test
                        // covers this answer: tansu 0.6 (the local stack's broker) stores a
                        // topic's max.message.bytes and describes it, but does not enforce
                        // it (it took a 20 kB message on a topic with max.message.bytes=4000).
                        NotAcked::TooLarge(_) => {}
                        _ => self.replace_rate_limited(&producer, &format!("delivery failed: {e}")),
                    }
                    return Err(refused);
                }
            }
        }
        Ok(())
    }

    /// An idempotent producer can enter a fatal state; then it is replaced by a new one, so
    /// the process recovers without a restart.
    fn check_fatal(&self, producer: &Arc<FutureProducer<Quiet>>) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.replace(producer, &format!("fatal error {code:?}: {reason}"));
        }
    }

    /// Replaces the producer by a new one (new producer id, empty queue), at most once every
    /// 2 s: after events timed out while the brokers were away, and after a broker refused an
    /// event (a broker that refuses an idempotent producer's events keeps refusing them; tansu
    /// answers UNKNOWN_SERVER_ERROR to every event of a producer whose epoch was bumped).
    fn replace_rate_limited(&self, producer: &Arc<FutureProducer<Quiet>>, why: &str) {
        {
            let mut last = self.last_replaced.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(2)) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.replace(producer, why);
    }

    fn replace(&self, producer: &Arc<FutureProducer<Quiet>>, why: &str) {
        let old = {
            let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
            if !Arc::ptr_eq(&slot, producer) {
                return; // someone replaced it already
            }
            match self
                .config
                .create_with_context::<_, FutureProducer<Quiet>>(self.quiet())
            {
                Ok(p) => {
                    warn!(reason = why, "replacing the producer with a new one");
                    std::mem::replace(&mut *slot, Arc::new(p))
                }
                Err(e) => {
                    error!(error = %e, reason = why, "could not create a new producer");
                    return;
                }
            }
        };
        // Destroying a librdkafka client blocks until its threads end: not on the runtime.
        tokio::task::spawn_blocking(move || drop(old));
    }

    /// Messages in librdkafka's queue: waiting to be sent or for the broker's acknowledgement.
    pub fn queued(&self) -> usize {
        usize::try_from(self.producer().in_flight_count()).unwrap_or(0)
    }

    /// Whether a broker answered a metadata request within ~1 s; cached for 1 s.
    pub async fn broker_reachable(&self) -> bool {
        let mut cache = self.health.lock().await;
        if let Some((at, ok)) = *cache {
            if at.elapsed() < Duration::from_secs(1) {
                return ok;
            }
        }
        let producer = self.producer();
        let ok = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_millis(1000))
                .map(|m| !m.brokers().is_empty())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        *cache = Some((Instant::now(), ok));
        ok
    }

    /// Waits (off the runtime) until everything enqueued is delivered or fails.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer();
        let result = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "flushing the producer on shutdown"),
            Err(e) => warn!(error = %e, "flushing the producer on shutdown"),
        }
    }
}

/// Counts one enqueued event in the in-flight gauge until it resolves or is given up.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> InFlight<'a> {
        metrics.in_flight(1);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight(-1);
    }
}

/// librdkafka's logs and errors, at most one warning per kind every 10 s: while the broker is
/// away, librdkafka reports every reconnect attempt, many times a second.
pub struct Quiet {
    last: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// When librdkafka last said it lost its brokers (shared with [`Kafka`]).
    brokers_lost_at: Arc<std::sync::Mutex<Option<Instant>>>,
    /// With `KAFKA_AUTH=iam`, what makes librdkafka's OAUTHBEARER tokens.
    iam: Option<msk_iam::Signer>,
}

impl Quiet {
    fn loud(&self, kind: &str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(kind) {
            Some(at) if at.elapsed() < Duration::from_secs(10) => false,
            _ => {
                last.insert(kind.to_string(), Instant::now());
                true
            }
        }
    }
}

impl ClientContext for Quiet {
    // librdkafka asks for a token only when the client uses OAUTHBEARER (`KAFKA_AUTH=iam`).
    msk_iam::answer_token_requests!(iam);

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let serious = (level as i32) <= (RDKafkaLogLevel::Warning as i32);
        if serious && self.loud(fac) {
            warn!(target: "librdkafka", facility = fac, "{message}");
        } else {
            debug!(target: "librdkafka", facility = fac, "{message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // Only "all brokers down": one broker of a cluster restarting is handled by librdkafka
        // (and by Kafka's epoch bumps) without a new producer.
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            *self
                .brokers_lost_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        let kind = format!("{code:?}");
        if self.loud(&kind) {
            warn!(target: "librdkafka", %error, "{reason}");
        } else {
            debug!(target: "librdkafka", %error, "{reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_too_large_for_the_broker_is_the_events_fault() {
        let delivery = |code| KafkaError::MessageProduction(code);
        assert_eq!(
            not_acked(&delivery(RDKafkaErrorCode::MessageSizeTooLarge), 3),
            NotAcked::TooLarge(3)
        );
        assert_eq!(
            not_acked(&delivery(RDKafkaErrorCode::MessageTimedOut), 3),
            NotAcked::Timeout
        );
        assert_eq!(
            not_acked(&delivery(RDKafkaErrorCode::QueueFull), 0),
            NotAcked::QueueFull
        );
        let other = not_acked(&delivery(RDKafkaErrorCode::Unknown), 0);
        assert!(matches!(other, NotAcked::Failed(_)), "{other:?}");
        assert!(NotAcked::TooLarge(3).to_string().contains("event 3"));
    }
}
