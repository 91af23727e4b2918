//! The autoscaler's tick: for every consumer with `[scaling]`, observe its group's lag,
//! decide with the pure policy, act (set the service's desired count) and publish metrics.
//! One tick is `observe → decide → act → publish`; failures never scale: a lag read that
//! fails is a tick with no data, which the policy answers with "no change" (fail static).
//!
//! Where a consumer's `[alarms]` watch a dead-letter topic, the tick also reads that
//! topic's end offsets and publishes their sum as `DlqEndOffset`, which the `dlq` alarm
//! compares minute to minute.
//!
//! Every tick reads each service's desired and running counts first (one DescribeServices per
//! ten services on ECS). The desired count is where the policy starts from, so a count that a
//! deploy or a person changed is taken as it is, within the manifest's bounds, rather than
//! fought. The running count is the group's member count when the broker cannot answer
//! DescribeGroups (docs/autoscaler.md, "Members").
//!
//! `shoal simulate` runs this same tick, against a simulated broker and platform that
//! implement the same traits (`super::sim`).
//!
//! The three sides are traits so the loop runs with the same decisions against Kafka and
//! either platform: [`ReadLag`] here, [`Scale`] and [`Publish`] in `platform` (ECS services
//! and CloudWatch, or local containers and nothing).

use std::collections::BTreeMap;
use std::future::Future;

use tracing::{info, warn};

use super::policy::{decide, Config, Decision, Observation, State};
use crate::aws::cloudwatch::{Metric, Unit};
use crate::aws::AwsError;
use crate::kafka::lag::{MemberSource, Members};
use crate::kafka::KafkaError;
use crate::platform::{Counts, Publish, Scale, ScaleError};

/// One consumer the autoscaler looks after.
#[derive(Debug, Clone)]
pub struct Target {
    pub consumer: String,
    /// The ECS service (or local container set) to scale.
    pub service: String,
    pub group: String,
    /// Every topic the group consumes.
    pub topics: Vec<String>,
    pub config: Config,
    /// The dead-letter topic the consumer's `dlq` alarm watches: its end offsets are published
    /// as `DlqEndOffset`.
    pub dlq_topic: Option<String>,
}

/// One lag read of a tick: a consumer group and the topics to read it on.
pub type GroupRead = (String, Vec<String>);

/// Reads a group's offsets on its topics: the group's committed offsets first, then the end
/// offsets, so that racing reads give lag ≥ 0; and the group's members where the broker can
/// say.
pub trait ReadLag: Sync {
    fn read(
        &self,
        group: &str,
        topics: &[String],
    ) -> impl Future<Output = Result<Observation, KafkaError>> + Send;

    /// Every `(group, topics)` of a tick, one result per read in order. By default each is
    /// read on its own, all at once; the production reader reads them as one batch, with a
    /// few requests per broker for the whole tick (`kafka::lag::LagReader::read_all`).
    fn read_all(
        &self,
        reads: Vec<GroupRead>,
    ) -> impl Future<Output = Vec<Result<Observation, KafkaError>>> + Send {
        async move {
            let each = reads.iter().map(|(group, topics)| self.read(group, topics));
            futures_util::future::join_all(each).await
        }
    }
}

/// What failed in one consumer's tick.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("lag: {0}")]
    Lag(#[source] KafkaError),
    #[error("counts: {0}")]
    Counts(#[source] std::sync::Arc<ScaleError>),
    #[error("update: {0}")]
    Update(#[source] ScaleError),
}

impl TickError {
    /// Whether AWS refused a call for its rate (the daemon then waits longer).
    pub fn is_throttling(&self) -> bool {
        match self {
            TickError::Lag(_) => false,
            TickError::Counts(e) => e.is_throttling(),
            TickError::Update(e) => e.is_throttling(),
        }
    }
}

/// What one tick did: an outcome per consumer, and whether publishing the metrics failed.
#[derive(Debug)]
pub struct Tick {
    pub outcomes: Vec<Outcome>,
    pub publish_error: Option<AwsError>,
}

impl Tick {
    /// Whether AWS refused any of the tick's calls for its rate: DescribeServices,
    /// UpdateService or PutMetricData.
    pub fn throttled(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| o.error.as_ref().is_some_and(TickError::is_throttling))
            || self
                .publish_error
                .as_ref()
                .is_some_and(AwsError::is_throttling)
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
    ) -> Tick {
        let services: Vec<String> = self.targets.iter().map(|t| t.service.clone()).collect();
        // Every group's lag in one batch: each target's topics, then the dead-letter topics
        // of the targets that have one.
        let mut wanted: Vec<GroupRead> = self
            .targets
            .iter()
            .map(|t| (t.group.clone(), t.topics.clone()))
            .collect();
        wanted.extend(
            self.targets
                .iter()
                .filter_map(|t| Some((t.group.clone(), vec![t.dlq_topic.clone()?]))),
        );
        // The counts and the lag at once: the reads wait on AWS and the brokers, not on each
        // other.
        let (counts, mut reads) =
            futures_util::future::join(scale.counts_many(&services), lag.read_all(wanted)).await;
        let mut dlq_reads = reads
            .split_off(self.targets.len().min(reads.len()))
            .into_iter();
        let counts = counts.map_err(std::sync::Arc::new);
        let mut outcomes = Vec::new();
        let mut metrics = Vec::new();
        for (t, read) in self.targets.iter().zip(reads) {
            let dlq = t.dlq_topic.as_ref().and_then(|_| dlq_reads.next());
            match dlq {
                Some(Ok(o)) => metrics.push(Metric {
                    name: "DlqEndOffset",
                    project: self.project.clone(),
                    service: t.service.clone(),
                    value: o.partitions.iter().map(|p| p.end_offset).sum::<i64>() as f64,
                    unit: Unit::Count,
                }),
                Some(Err(e)) => {
                    warn!(consumer = %t.consumer, topic = ?t.dlq_topic, error = %e, "cannot read the dead-letter topic's end offsets")
                }
                None => {}
            }
            let live = match &counts {
                Ok(all) => match all.get(&t.service) {
                    Some(c) => *c,
                    None => {
                        // Not deployed (yet): nothing to scale, and no error to report.
                        warn!(consumer = %t.consumer, service = %t.service, "no such service; skipping");
                        continue;
                    }
                },
                Err(e) => {
                    warn!(consumer = %t.consumer, error = %e, "cannot read the desired count; changing nothing");
                    let current = self.states.get(&t.consumer).map_or(0, |s| s.current);
                    outcomes.push(Outcome {
                        consumer: t.consumer.clone(),
                        service: t.service.clone(),
                        decision: Decision::hold(
                            current,
                            format!(
                                "cannot read the service's counts: keeping {current} (fail static)"
                            ),
                        ),
                        acted: false,
                        error: Some(TickError::Counts(e.clone())),
                    });
                    continue;
                }
            };
            let mut error = None;
            let observation = match read {
                Ok(o) => Some(with_members(o, live)),
                Err(e) => {
                    warn!(consumer = %t.consumer, group = %t.group, error = %e, "cannot read lag; changing nothing");
                    error = Some(TickError::Lag(e));
                    None
                }
            };
            let state = match self.states.remove(&t.consumer) {
                Some(s) => s.with_current(live.desired),
                None => State::new(live.desired),
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
            self.states.insert(
                t.consumer.clone(),
                if acted || !decision.changed || dry_run {
                    next
                } else {
                    state
                },
            );
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
        let mut publish_error = None;
        if !metrics.is_empty() && !dry_run {
            if let Err(e) = publish.publish(metrics).await {
                warn!(error = %e, "cannot publish metrics");
                publish_error = Some(e);
            }
        }
        Tick {
            outcomes,
            publish_error,
        }
    }
}

/// The observation with its member count: the group's own when the broker gave it, else
/// the platform's running count.
fn with_members(mut o: Observation, live: Counts) -> Observation {
    if o.members.is_none() {
        o.members = Some(Members {
            count: live.running,
            source: MemberSource::Platform,
        });
    }
    o
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
        async fn read(&self, _group: &str, _topics: &[String]) -> Result<Observation, KafkaError> {
            self.0.clone().ok_or_else(|| KafkaError::Broker {
                op: "ListOffsets",
                bootstrap: "b:9092".into(),
                message: "broker down".into(),
            })
        }
    }

    /// An AWS refusal with this error code, as ECS or CloudWatch would answer.
    fn refusal(operation: &'static str, code: &str) -> AwsError {
        AwsError::Service {
            service: "ECS",
            operation,
            code: code.into(),
            message: "Rate exceeded".into(),
        }
    }

    struct FakeScale {
        sets: Mutex<Vec<(String, u32)>>,
        /// The counts the platform reports; a set changes `desired`.
        counts: Mutex<Counts>,
        /// The error code every update fails with.
        refuse: Option<&'static str>,
        /// The error code every count read fails with.
        refuse_counts: Option<&'static str>,
    }
    impl Default for FakeScale {
        fn default() -> FakeScale {
            FakeScale {
                sets: Mutex::default(),
                counts: Mutex::new(Counts {
                    desired: 1,
                    running: 1,
                }),
                refuse: None,
                refuse_counts: None,
            }
        }
    }
    impl Scale for FakeScale {
        async fn counts(&self, _service: &str) -> Result<Counts, ScaleError> {
            if let Some(code) = self.refuse_counts {
                return Err(refusal("DescribeServices", code).into());
            }
            Ok(*self.counts.lock().expect("lock"))
        }
        async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
            if let Some(code) = self.refuse {
                return Err(refusal("UpdateService", code).into());
            }
            self.counts.lock().expect("lock").desired = count;
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
        /// The error code every publish fails with.
        refuse: Option<&'static str>,
    }
    impl Publish for FakeMetrics {
        async fn publish(&self, metrics: Vec<Metric>) -> Result<(), AwsError> {
            if let Some(code) = self.refuse {
                return Err(refusal("PutMetricData", code));
            }
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
                topics: vec!["t".into()],
                config,
                dlq_topic: None,
            }],
        )
    }

    /// 12 partitions, each 2000 messages behind: well over the fallback threshold for one
    /// replica.
    fn backlog() -> Observation {
        Observation::one_topic(
            0.0,
            "t",
            (0..12)
                .map(|_| PartitionRead {
                    end_offset: 2500,
                    committed_offset: Some(500),
                    log_start_offset: None,
                    read_at: 0.0,
                })
                .collect(),
            None,
        )
    }

    #[tokio::test]
    async fn a_backlog_scales_out_and_publishes_the_three_metrics() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await
            .outcomes;
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
    async fn a_watched_dead_letter_topic_publishes_its_end_offsets() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let mut a = autoscaler();
        a.targets[0].dlq_topic = Some("t.dlq".into());
        a.tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await;
        let published = metrics.published.lock().expect("lock").clone();
        let dlq: Vec<&Metric> = published
            .iter()
            .filter(|m| m.name == "DlqEndOffset")
            .collect();
        assert_eq!(dlq.len(), 1, "{published:?}");
        assert_eq!(dlq[0].value, 12.0 * 2500.0);
        assert_eq!(dlq[0].service, "c");
    }

    /// A lag read that answers a whole tick in one batch, and keeps each batch it was asked:
    /// every partition's end offset is the length of its topic's name, so each answer says
    /// which topic it read.
    #[derive(Default)]
    struct BatchLag(Mutex<Vec<Vec<GroupRead>>>);
    impl ReadLag for BatchLag {
        async fn read(&self, _group: &str, _topics: &[String]) -> Result<Observation, KafkaError> {
            Err(KafkaError::Broker {
                op: "read",
                bootstrap: "b:9092".into(),
                message: "the tick reads in one batch".into(),
            })
        }
        async fn read_all(&self, reads: Vec<GroupRead>) -> Vec<Result<Observation, KafkaError>> {
            self.0.lock().expect("lock").push(reads.clone());
            reads
                .iter()
                .map(|(_, topics)| {
                    let read = PartitionRead {
                        end_offset: topics[0].len() as i64,
                        committed_offset: Some(0),
                        ..PartitionRead::default()
                    };
                    Ok(Observation::one_topic(0.0, &topics[0], vec![read], None))
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn a_tick_reads_every_group_and_dead_letter_topic_in_one_batch() {
        let (scale, metrics, lag) = (
            FakeScale::default(),
            FakeMetrics::default(),
            BatchLag::default(),
        );
        let mut a = autoscaler();
        let target = a.targets[0].clone();
        a.targets = [
            ("a", Some("a-dead-letters")),
            ("b", None),
            ("c", Some("c-dlq")),
        ]
        .into_iter()
        .map(|(name, dlq)| Target {
            consumer: name.to_string(),
            service: name.to_string(),
            group: format!("{name}-group"),
            topics: vec![format!("{name}-events")],
            dlq_topic: dlq.map(String::from),
            ..target.clone()
        })
        .collect();
        let out = a.tick(&lag, &scale, &metrics, false).await.outcomes;
        assert!(out.iter().all(|o| o.error.is_none()), "{out:?}");
        let read = |g: &str, t: &str| (format!("{g}-group"), vec![t.to_string()]);
        assert_eq!(
            *lag.0.lock().expect("lock"),
            vec![vec![
                read("a", "a-events"),
                read("b", "b-events"),
                read("c", "c-events"),
                read("a", "a-dead-letters"),
                read("c", "c-dlq"),
            ]]
        );
        assert_eq!(
            out.iter().map(|o| o.decision.lag).collect::<Vec<_>>(),
            vec![8, 8, 8],
            "each target's own topics"
        );
        let dlq: Vec<(String, f64)> = metrics
            .published
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m.name == "DlqEndOffset")
            .map(|m| (m.service.clone(), m.value))
            .collect();
        assert_eq!(dlq, vec![("a".into(), 14.0), ("c".into(), 5.0)]);
    }

    #[tokio::test]
    async fn an_unreadable_lag_changes_nothing_and_says_why() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(None), &scale, &metrics, false)
            .await
            .outcomes;
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
            .await
            .outcomes;
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
            .await
            .outcomes;
        assert!(out[0].error.as_ref().is_some_and(|e| !e.is_throttling()));
    }

    #[tokio::test]
    async fn a_dry_run_decides_but_sets_nothing() {
        let (scale, metrics) = (FakeScale::default(), FakeMetrics::default());
        let out = autoscaler()
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, true)
            .await
            .outcomes;
        assert!(out[0].decision.changed && !out[0].acted);
        assert!(scale.sets.lock().expect("lock").is_empty());
        let json = serde_json::to_value(&out[0]).expect("json");
        assert!(json["error"].is_null(), "{json}");
    }

    #[tokio::test]
    async fn a_throttled_count_read_or_publish_makes_the_tick_throttled() {
        let counts_refused = FakeScale {
            refuse_counts: Some("ThrottlingException"),
            ..FakeScale::default()
        };
        let tick = autoscaler()
            .tick(
                &FakeLag(Some(backlog())),
                &counts_refused,
                &FakeMetrics::default(),
                false,
            )
            .await;
        assert!(tick.throttled(), "{tick:?}");
        let o = &tick.outcomes[0];
        assert!(!o.decision.changed && !o.acted, "{o:?}");
        assert!(matches!(o.error, Some(TickError::Counts(_))), "{o:?}");
        assert!(counts_refused.sets.lock().expect("lock").is_empty());

        let publish_refused = FakeMetrics {
            refuse: Some("Throttling"),
            ..FakeMetrics::default()
        };
        let tick = autoscaler()
            .tick(
                &FakeLag(Some(backlog())),
                &FakeScale::default(),
                &publish_refused,
                false,
            )
            .await;
        assert!(tick.throttled(), "{tick:?}");
        assert!(tick.outcomes[0].acted, "the count is still set");

        let denied = FakeMetrics {
            refuse: Some("AccessDenied"),
            ..FakeMetrics::default()
        };
        let tick = autoscaler()
            .tick(
                &FakeLag(Some(backlog())),
                &FakeScale::default(),
                &denied,
                false,
            )
            .await;
        assert!(tick.publish_error.is_some() && !tick.throttled());
    }

    #[tokio::test]
    async fn each_tick_starts_from_the_count_the_platform_reports() {
        let scale = FakeScale::default();
        let metrics = FakeMetrics::default();
        let mut a = autoscaler();
        let first = a
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await;
        let raised = first.outcomes[0].decision.desired;
        assert!(raised > 1, "{:?}", first.outcomes[0]);
        // A person sets 4 between two ticks: the next tick starts from 4, so the backlog
        // that still needs `raised` is a change to set again, not "no change" from the
        // daemon's own memory.
        scale.counts.lock().expect("lock").desired = 4;
        let next = a
            .tick(&FakeLag(Some(backlog())), &scale, &metrics, false)
            .await;
        let o = &next.outcomes[0];
        assert!(o.decision.changed && o.acted, "{o:?}");
        assert_eq!(o.decision.desired, raised, "{o:?}");
        assert_eq!(scale.counts.lock().expect("lock").desired, raised);
        // Above the manifest's max (12), a person's count is brought back within it.
        scale.counts.lock().expect("lock").desired = 20;
        let next = a.tick(&FakeLag(None), &scale, &metrics, false).await;
        let o = &next.outcomes[0];
        assert_eq!((o.decision.desired, o.acted), (12, true), "{o:?}");
    }

    #[tokio::test]
    async fn without_the_groups_members_the_running_count_is_used_and_named() {
        let scale = FakeScale::default();
        *scale.counts.lock().expect("lock") = Counts {
            desired: 3,
            running: 2,
        };
        let tick = autoscaler()
            .tick(
                &FakeLag(Some(backlog())),
                &scale,
                &FakeMetrics::default(),
                true,
            )
            .await;
        let reason = &tick.outcomes[0].decision.reason;
        assert!(reason.contains("2 member(s) from the platform"), "{reason}");
        let mut from_group = backlog();
        from_group.members = Some(Members {
            count: 3,
            source: MemberSource::Group,
        });
        let tick = autoscaler()
            .tick(
                &FakeLag(Some(from_group)),
                &scale,
                &FakeMetrics::default(),
                true,
            )
            .await;
        let reason = &tick.outcomes[0].decision.reason;
        assert!(reason.contains("3 member(s) from the group"), "{reason}");
    }
}
