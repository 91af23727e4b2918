//! Consumer-group lag: per partition, end offset − committed offset.
//!
//! The group's committed offsets are read first (one OffsetFetch to the group coordinator),
//! then the end offsets (one ListOffsets per partition leader, through `offsets_for_times`
//! with "latest"), so that a message committed between the two reads can only make the lag
//! larger, never negative; what is negative anyway (a racing read) is clamped to 0 by the
//! policy. A partition the group never committed on has no committed offset: the group's
//! `auto.offset.reset` decides where it starts, and it is not counted as lag.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Connection, KafkaError, ShoalContext};
use crate::manifest::Environment;

/// One partition's offsets as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PartitionRead {
    /// The log end offset (the offset the next produced message will get).
    pub end_offset: i64,
    /// The group's committed offset; `None` when the group has never committed on this
    /// partition, which the group's reset policy handles: it is not lag.
    pub committed_offset: Option<i64>,
    /// When the offsets were read, in seconds on the same clock as [`Observation::at`].
    pub read_at: f64,
}

/// Everything one tick read about a consumer group on one topic.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Observation {
    /// When the tick ran, in seconds (any monotonic origin).
    pub at: f64,
    /// Partitions in partition order (index = partition number).
    pub partitions: Vec<PartitionRead>,
    /// Members of the consumer group that own partitions, when known. Used to measure the
    /// per-replica rate (only members whose partitions were all busy count).
    pub consumers: Option<u32>,
}

/// Reads lag for groups of one environment: one client per group (rdkafka reads committed
/// offsets only for a consumer's own `group.id`), made on first use and kept.
pub struct LagReader {
    config: rdkafka::config::ClientConfig,
    context: ShoalContext,
    consumers: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<Client>>>,
    bootstrap: String,
    timeout: Duration,
}

type Client = BaseConsumer<ShoalContext>;

impl LagReader {
    /// Resolves an environment's brokers ([`super::connect_config`]) and makes a reader.
    pub async fn open(env: &Environment, timeout: Duration) -> Result<LagReader, KafkaError> {
        Ok(LagReader::with(super::connect_config(env).await?, timeout))
    }

    /// A reader for a resolved connection.
    pub fn with(conn: Connection, timeout: Duration) -> LagReader {
        LagReader {
            bootstrap: conn.bootstrap().to_string(),
            config: conn.config,
            context: conn.context,
            consumers: Default::default(),
            timeout,
        }
    }

    /// The group's client. It never subscribes, so it never joins the group: it only asks
    /// for offsets, and never commits.
    fn consumer(&self, group: &str) -> Result<std::sync::Arc<Client>, KafkaError> {
        let mut map = self
            .consumers
            .lock()
            .map_err(|_| self.broker("client", "a lag read panicked"))?;
        if let Some(c) = map.get(group) {
            self.serve_token_refresh(c, false);
            return Ok(c.clone());
        }
        let consumer: Client = self
            .config
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create_with_context(self.context.clone())
            .map_err(|e| KafkaError::Client {
                bootstrap: self.bootstrap.clone(),
                message: e.to_string(),
            })?;
        self.serve_token_refresh(&consumer, true);
        let consumer = std::sync::Arc::new(consumer);
        map.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// With MSK IAM, librdkafka asks for a token (on start, and before the last one expires)
    /// through an event that only a poll serves; this client never subscribes, so a poll
    /// returns no message. A new client waits (up to 5 s) for its first token; a known one
    /// only serves a pending refresh.
    fn serve_token_refresh(&self, consumer: &Client, new: bool) {
        if !self.context.is_iam() {
            return;
        }
        if !new {
            let _ = consumer.poll(Duration::ZERO);
            return;
        }
        let before = self.context.tokens_made();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.context.tokens_made() == before && std::time::Instant::now() < deadline {
            let _ = consumer.poll(Duration::from_millis(100));
        }
    }

    fn broker(&self, op: &'static str, e: impl std::fmt::Display) -> KafkaError {
        KafkaError::Broker {
            op,
            bootstrap: self.bootstrap.clone(),
            message: e.to_string(),
        }
    }

    /// The partition count of a topic.
    fn partitions(&self, consumer: &Client, topic: &str) -> Result<i32, KafkaError> {
        let md = consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.broker("Metadata", e))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| self.broker("Metadata", format!("no topic {topic}")))?;
        if let Some(err) = t.error() {
            return Err(self.broker("Metadata", format!("topic {topic}: {err:?}")));
        }
        Ok(t.partitions().len() as i32)
    }

    /// Reads a group's offsets on a topic: committed first, then end offsets.
    pub fn read(&self, group: &str, topic: &str) -> Result<Observation, KafkaError> {
        let consumer = self.consumer(group)?;
        let partitions = self.partitions(&consumer, topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = self.committed(&consumer, &tpl)?;
        let mut latest = TopicPartitionList::new();
        for p in 0..partitions {
            latest
                .add_partition_offset(topic, p, Offset::End)
                .map_err(|e| self.broker("ListOffsets", e))?;
        }
        let ends = consumer
            .offsets_for_times(latest, self.timeout)
            .map_err(|e| self.broker("ListOffsets", e))?;
        let read_at = now();
        let mut reads = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let end = ends
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
                .ok_or_else(|| {
                    self.broker("ListOffsets", format!("no end offset for {topic}[{p}]"))
                })?;
            reads.push(PartitionRead {
                end_offset: end,
                committed_offset: committed.get(p as usize).copied().flatten(),
                read_at,
            });
        }
        Ok(Observation {
            at: read_at,
            partitions: reads,
            // DescribeGroups (the member count) fails on tansu's SQLite engine; the policy
            // measures the per-replica rate from the desired count instead.
            consumers: None,
        })
    }

    fn committed(
        &self,
        consumer: &Client,
        tpl: &TopicPartitionList,
    ) -> Result<Vec<Option<i64>>, KafkaError> {
        let answer = consumer
            .committed_offsets(tpl.clone(), self.timeout)
            .map_err(|e| self.broker("OffsetFetch", e))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| {
                answer
                    .find_partition(e.topic(), e.partition())
                    .and_then(|c| match c.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    })
            })
            .collect())
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
