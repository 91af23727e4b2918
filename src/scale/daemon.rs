//! The autoscaler's tick: for every consumer with `[scaling]`, observe its group's lag,
//! decide with the pure policy, act (set the service's desired count) and publish metrics.
//! One tick is `observe → decide → act`; failures never scale: a lag read that fails is a
//! tick with no data, which the policy answers with "no change" (fail static).
//!
//! The three sides are traits so the loop runs with the same decisions against Kafka and
//! either platform: [`ReadLag`] here, [`Scale`] in `platform` (ECS services or local
//! containers), [`Publish`] here (CloudWatch, or nothing on the docker platform).

use std::collections::BTreeMap;
use std::future::Future;

use tracing::{info, warn};

use super::policy::{decide, Config, Decision, Observation, State};
use crate::aws::cloudwatch::{Metric, Unit};
use crate::aws::AwsError;
use crate::kafka::KafkaError;
use crate::platform::{Scale, ScaleError};

/// One consumer the autoscaler looks after.
#[derive(Debug, Clone)]
pub struct Target {
    pub consumer: String,
    /// The ECS service (or local container set) to scale.
    pub service: String,
    pub group: String,
    pub topic: String,
    pub config: Config,
}

/// Reads a group's offsets on a topic: the group's committed offsets first, then the end
/// offsets, so that racing reads give lag ≥ 0.
pub trait ReadLag {
    fn read(
        &self,
        group: &str,
        topic: &str,
    ) -> impl Future<Output = Result<Observation, KafkaError>> + Send;
}

/// Publishes metrics.
pub trait Publish {
    fn publish(&self, metrics: Vec<Metric>) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// What failed in one consumer's tick.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("lag: {0}")]
    Lag(#[source] KafkaError),
    #[error("update: {0}")]
    Update(#[source] ScaleError),
}

impl TickError {
    /// Whether AWS refused a call for its rate (the daemon then waits longer).
    pub fn is_throttling(&self) -> bool {
        match self {
            TickError::Lag(_) => false,
            TickError::Update(e) => e.is_throttling(),
        }
    }
}

/// What one tick did for one consumer.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub consumer: String,
    pub service: String,
    pub decision: Decision,
    /// The desired count was set (not in a dry run, and only when it changed).
    pub acted: bool,
    /// What failed, when something did: the lag read, the count read or the update. In JSON,
    /// its text.
    #[serde(serialize_with = "as_text")]
    pub error: Option<TickError>,
}

fn as_text<S: serde::Serializer>(error: &Option<TickError>, s: S) -> Result<S::Ok, S::Error> {
    match error {
        Some(e) => s.collect_str(e),
        None => s.serialize_none(),
    }
}

/// The autoscaler's memory: the policy state of each consumer.
#[derive(Debug, Default)]
pub struct Autoscaler {
    pub project: String,
    pub targets: Vec<Target>,
    states: BTreeMap<String, State>,
}

impl Autoscaler {
    pub fn new(project: &str, targets: Vec<Target>) -> Autoscaler {
        Autoscaler {
            project: project.to_string(),
            targets,
            states: BTreeMap::new(),
        }
    }

    /// One tick over every target. `dry_run` decides and logs but sets nothing.
    pub async fn tick<L: ReadLag, S: Scale, P: Publish>(
        &mut self,
        lag: &L,
        scale: &S,
        publish: &P,
        dry_run: bool,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut metrics = Vec::new();
        let unknown: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !self.states.contains_key(&t.consumer))
            .map(|t| t.service.clone())
            .collect();
        let counts = if unknown.is_empty() {
            BTreeMap::new()
        } else {
            scale.current_many(&unknown).await
        };
        // Every group's lag at once: the reads wait on brokers, not on each other.
        let reads = futures_util::future::join_all(
            self.targets.iter().map(|t| lag.read(&t.group, &t.topic)),
        )
        .await;
        for (t, read) in self.targets.iter().zip(reads) {
            let mut error = None;
            let observation = match read {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!(consumer = %t.consumer, group = %t.group, error = %e, "cannot read lag; changing nothing");
                    error = Some(TickError::Lag(e));
                    None
                }
            };
            let state = match self.states.get(&t.consumer) {
                Some(s) => s.clone(),
                None => match counts.get(&t.service) {
                    Some(n) => State::new(*n),
                    None => {
                        // Without the current count there is nothing to decide from: the
                        // next tick tries again.
                        warn!(consumer = %t.consumer, service = %t.service, "cannot read the desired count; skipping");
                        continue;
                    }
                },
            };
            let (decision, next) = decide(&t.config, &state, observation.as_ref());
            let mut acted = false;
            if decision.changed && !dry_run {
                match scale.set(&t.service, decision.desired).await {
                    Ok(()) => acted = true,
                    Err(e) => {
                        warn!(consumer = %t.consumer, error = %e, "cannot set the desired count");
                        error = Some(TickError::Update(e));
                    }
                }
            }
            info!(
                consumer = %t.consumer,
                from = state.current,
                to = decision.desired,
                lag = decision.lag,
                lag_seconds = decision.lag_seconds,
                stuck = ?decision.stuck,
                dry_run,
                reason = %decision.reason,
                "decided"
            );
            // A failed update leaves the policy's memory where the service is.
            if acted || !decision.changed || dry_run {
                self.states.insert(t.consumer.clone(), next);
            }
            if observation.is_some() {
                let m = |name, value, unit| Metric {
                    name,
                    project: self.project.clone(),
                    service: t.service.clone(),
                    value,
                    unit,
                };
                metrics.push(m("ConsumerLag", decision.lag as f64, Unit::Count));
                if let Some(s) = decision.lag_seconds {
                    metrics.push(m("ConsumerLagSeconds", s, Unit::Seconds));
                }
                metrics.push(m("DesiredCount", f64::from(decision.desired), Unit::Count));
            }
            outcomes.push(Outcome {
                consumer: t.consumer.clone(),
                service: t.service.clone(),
                decision,
                acted,
                error,
            });
        }
        if !metrics.is_empty() && !dry_run {
            if let Err(e) = publish.publish(metrics).await {
                warn!(error = %e, "cannot publish metrics");
            }
        }
        outcomes
    }
}

/// Metrics to CloudWatch.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics(pub aws_sdk_cloudwatch::Client);

impl Publish for CloudWatchMetrics {
    async fn publish(&self, metrics: Vec<Metric>) -> Result<(), AwsError> {
        crate::aws::cloudwatch::publish(&self.0, &metrics)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    //! The tick's wiring, with test doubles in place of Kafka, ECS and CloudWatch (named as
    //! such: `FakeLag`, `FakeScale`, `FakeMetrics`). The policy itself is the real one.

    use std::sync::Mutex;

    use super::*;
    use crate::manifest::Scaling;
    use crate::scale::policy::PartitionRead;

    /// A lag read that gives this observation, or fails as a broker that cannot be reached.
    struct FakeLag(Option<Observation>);
    impl ReadLag for FakeLag {
        async fn read(&self, _group: &str, _topic: &str) -> Result<Observation, KafkaError> {
            self.0.clone().ok_or_else(|| KafkaError::Broker {
                op: "ListOffsets",
                bootstrap: "b:9092".into(),
                message: "broker down".into(),
            })
        }
    }

    #[derive(Default)]
    struct FakeScale {
        sets: Mutex<Vec<(String, u32)>>,
        /// The error code every update fails with, as ECS would answer.
        refuse: Option<&'static str>,
    }
    impl Scale for FakeScale {
        async fn current(&self, _service: &str) -> Result<u32, ScaleError> {
            Ok(1)
        }
        async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
            if let Some(code) = self.refuse {
                return Err(ScaleError::Aws(AwsError::Service {
                    service: "ECS",
                    operation: "UpdateService",
                    code: code.into(),
                    message: "Rate exceeded".into(),
                }));
            }
            self.sets
                .lock()
                .expect("lock")
                .push((service.to_string(), count));
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeMetrics {
        published: Mutex<Vec<Metric>>,
    }
    impl Publish for FakeMetrics {
        async fn publish(&self, metrics: Vec<Metric>) -> Result<(), AwsError> {
            self.published.lock().expect("lock").extend(metrics);
            Ok(())
        }
    }

    fn autoscaler() -> Autoscaler {
        let config = Config::new(Scaling {
            min: 1,
            max: 12,
            max_lag_seconds: 30.0,
            duty_cycle: true,
        });
        Autoscaler::new(
            "p",
            vec![Target {
                consumer: "c".into(),
                service: "c".into(),
                group: "g".into(),
                topic: "t".into(),
                config,
            }],
        )
    }

    /// 12 partitions, each 2000 messages behind: well over the fallback threshold for one
    /// replica.
    fn backlog() -> Observation {
        Observation {
            at: 0.0,
            partitions: (0..12)
                .map(|_| PartitionRead {
                    end_offset: 2500,
                    committed_offset: Some(500),
                    read_at: 0.0,
                })
                .collect(),
            consumers: None,
        }
    }

    #[tokio::test]
    async fn a_backlog_scales_out_and_publishes_the_three_metrics() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await;
        assert!(out[0].acted, "{:?}", out[0]);
        let sets = scale.sets.lock().expect("lock").clone();
        assert_eq!(sets.len(), 1);
        assert!(sets[0].1 > 1, "{sets:?}");
        let names: Vec<&str> = metrics
            .published
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"ConsumerLag") && names.contains(&"DesiredCount"));
    }

    #[tokio::test]
    async fn an_unreadable_lag_changes_nothing_and_says_why() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(None), &scale, &metrics, false)
            .await;
        assert!(!out[0].decision.changed);
        assert_eq!(out[0].decision.desired, 1);
        let error = out[0].error.as_ref().expect("an error");
        assert!(
            matches!(error, TickError::Lag(KafkaError::Broker { .. })),
            "{error:?}"
        );
        assert!(!error.is_throttling());
        let json = serde_json::to_value(&out[0]).expect("json");
        assert_eq!(
            json["error"],
            "lag: ListOffsets against b:9092 failed: broker down"
        );
        assert!(scale.sets.lock().expect("lock").is_empty());
        assert!(metrics.published.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_throttled_update_is_kept_typed_and_written_as_text() {
        let metrics = FakeMetrics::default();
        let scale = FakeScale {
            refuse: Some("ThrottlingException"),
            ..FakeScale::default()
        };
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await;
        assert!(out[0].decision.changed && !out[0].acted);
        let error = out[0].error.as_ref().expect("an error");
        assert!(error.is_throttling(), "{error:?}");
        let json = serde_json::to_value(&out[0]).expect("json");
        assert_eq!(
            json["error"],
            "update: ECS UpdateService failed: ThrottlingException: Rate exceeded"
        );
        let refused = FakeScale {
            refuse: Some("AccessDeniedException"),
            ..FakeScale::default()
        };
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &refused, &metrics, false)
            .await;
        assert!(out[0].error.as_ref().is_some_and(|e| !e.is_throttling()));
    }

    #[tokio::test]
    async fn a_dry_run_decides_but_sets_nothing() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, true)
            .await;
        assert!(out[0].decision.changed && !out[0].acted);
        assert!(scale.sets.lock().expect("lock").is_empty());
        let json = serde_json::to_value(&out[0]).expect("json");
        assert!(json["error"].is_null(), "{json}");
    }
}
