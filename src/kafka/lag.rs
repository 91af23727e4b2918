//! Consumer-group lag: per partition, end offset − committed offset.
//!
//! The group's committed offsets are read first (one OffsetFetch to the group coordinator),
//! then the end offsets (one ListOffsets per partition leader, through `offsets_for_times`
//! with "latest"), so that a message committed between the two reads can only make the lag
//! larger, never negative; what is negative anyway (a racing read) is clamped to 0 by the
//! policy. A partition the group never committed on has no committed offset; for it the
//! reader also reads the log-start offset, from which the policy counts its lag under
//! `auto.offset.reset = earliest`.
//!
//! The group's serving members come from DescribeGroups (librdkafka's group list, which
//! carries each member's assignment): the members that own partitions of the group's topics.
//! A broker that cannot answer (tansu 0.6 drops the connection) leaves them unknown, and the
//! autoscaler then takes the platform's running count instead (docs/autoscaler.md, "Members").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Connection, KafkaError, ShoalContext};

/// One partition's offsets as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct PartitionRead {
    /// The log end offset (the offset the next produced message will get).
    pub end_offset: i64,
    /// The group's committed offset; `None` when the group has never committed on this
    /// partition, which the group's reset policy handles: it is not lag.
    pub committed_offset: Option<i64>,
    /// The log-start offset (the oldest message still held), read only for a partition with
    /// no committed offset.
    pub log_start_offset: Option<i64>,
    /// When the offsets were read, in seconds on the same clock as [`Observation::at`].
    pub read_at: f64,
}

/// Where the count of a group's serving members came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberSource {
    /// The broker's DescribeGroups: the members that own partitions of the group's topics.
    Group,
    /// The platform's running count (ECS `runningCount`, or running containers), used when
    /// the broker cannot answer DescribeGroups. It also counts replicas that are still
    /// starting, so it can overstate the members serving for a start-up.
    Platform,
}

impl MemberSource {
    pub fn name(self) -> &'static str {
        match self {
            MemberSource::Group => "group",
            MemberSource::Platform => "platform",
        }
    }
}

/// How many members serve a group, and who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Members {
    pub count: u32,
    pub source: MemberSource,
}

/// One of the group's topics and how many partitions it has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicSpan {
    pub name: String,
    pub partitions: u32,
}

/// Everything one tick read about a consumer group on its topics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Observation {
    /// When the tick ran, in seconds (any monotonic origin).
    pub at: f64,
    /// The group's topics in order; [`Observation::partitions`] holds the first topic's
    /// partitions, then the next topic's, and so on.
    pub topics: Vec<TopicSpan>,
    /// Partitions, topic by topic, each in partition order.
    pub partitions: Vec<PartitionRead>,
    /// The members of the group that own partitions, when known. Used to measure the
    /// per-replica rate (only members whose partitions were all busy count) and to tell a
    /// stuck partition from an idle group.
    pub members: Option<Members>,
}

impl Observation {
    /// An observation of one topic whose partitions are `partitions`.
    pub fn one_topic(
        at: f64,
        topic: &str,
        partitions: Vec<PartitionRead>,
        members: Option<Members>,
    ) -> Observation {
        Observation {
            at,
            topics: vec![TopicSpan {
                name: topic.to_string(),
                partitions: partitions.len() as u32,
            }],
            partitions,
            members,
        }
    }

    /// The member count, when known.
    pub fn member_count(&self) -> Option<u32> {
        self.members.map(|m| m.count)
    }
}

/// Reads lag for groups of one environment: one client per group (rdkafka reads committed
/// offsets only for a consumer's own `group.id`), made on first use and kept.
pub struct LagReader {
    config: rdkafka::config::ClientConfig,
    context: ShoalContext,
    consumers: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<Client>>>,
    bootstrap: String,
    timeout: Duration,
    /// When DescribeGroups last failed, if it did.
    describe_failed: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a reader goes without asking DescribeGroups after the broker failed to answer.
const DESCRIBE_RETRY: Duration = Duration::from_secs(300);

type Client = BaseConsumer<ShoalContext>;

impl LagReader {
    /// A reader for a resolved connection (`deploy::Session::kafka` resolves an
    /// environment's).
    pub fn with(conn: Connection, timeout: Duration) -> LagReader {
        LagReader {
            bootstrap: conn.bootstrap().to_string(),
            config: conn.config,
            context: conn.context,
            consumers: Default::default(),
            timeout,
            describe_failed: Default::default(),
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

    /// Reads a group's offsets on its topics: committed first, then end offsets (and the
    /// log-start offsets of partitions with no commit), then the members.
    pub fn read(&self, group: &str, topics: &[String]) -> Result<Observation, KafkaError> {
        let consumer = self.consumer(group)?;
        let mut spans = Vec::with_capacity(topics.len());
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let partitions = self.partitions(&consumer, topic)?;
            for p in 0..partitions {
                tpl.add_partition(topic, p);
            }
            spans.push(TopicSpan {
                name: topic.clone(),
                partitions: partitions as u32,
            });
        }
        let committed = self.committed(&consumer, &tpl)?;
        let ends = self.list_offsets(&consumer, &tpl, Offset::End)?;
        let mut uncommitted = TopicPartitionList::new();
        for (e, _) in tpl
            .elements()
            .iter()
            .zip(&committed)
            .filter(|(_, c)| c.is_none())
        {
            uncommitted.add_partition(e.topic(), e.partition());
        }
        let starts = if uncommitted.count() == 0 {
            Vec::new()
        } else {
            self.list_offsets(&consumer, &uncommitted, Offset::Beginning)?
        };
        let read_at = now();
        let mut reads = Vec::with_capacity(tpl.count());
        for ((e, end), committed_offset) in tpl.elements().iter().zip(ends).zip(committed) {
            let log_start_offset = starts
                .iter()
                .find(|(t, p, _)| t == e.topic() && *p == e.partition())
                .map(|(_, _, o)| *o);
            reads.push(PartitionRead {
                end_offset: end.2,
                committed_offset,
                log_start_offset,
                read_at,
            });
        }
        Ok(Observation {
            at: read_at,
            topics: spans,
            partitions: reads,
            members: self.members(&consumer, group, topics),
        })
    }

    /// One offset per partition of `tpl`, at `at` (the end, or the log start), as
    /// `(topic, partition, offset)` in `tpl`'s order.
    fn list_offsets(
        &self,
        consumer: &Client,
        tpl: &TopicPartitionList,
        at: Offset,
    ) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let mut query = TopicPartitionList::new();
        for e in tpl.elements() {
            query
                .add_partition_offset(e.topic(), e.partition(), at)
                .map_err(|e| self.broker("ListOffsets", e))?;
        }
        let answer = consumer
            .offsets_for_times(query, self.timeout)
            .map_err(|e| self.broker("ListOffsets", e))?;
        tpl.elements()
            .iter()
            .map(|e| {
                let (topic, p) = (e.topic(), e.partition());
                answer
                    .find_partition(topic, p)
                    .and_then(|o| o.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .map(|o| (topic.to_string(), p, o))
                    .ok_or_else(|| {
                        self.broker("ListOffsets", format!("no offset for {topic}[{p}]"))
                    })
            })
            .collect()
    }

    /// The group's members that own partitions of `topics`, from DescribeGroups; `None` when
    /// the broker cannot answer it, or answers with no member's assignment
    /// ([`count_members`]). After a failure the reader does not ask again for
    /// [`DESCRIBE_RETRY`], so a broker without the call costs one timeout per retry, not
    /// one per tick.
    fn members(&self, consumer: &Client, group: &str, topics: &[String]) -> Option<Members> {
        let mut failed = self.describe_failed.lock().ok()?;
        if failed.is_some_and(|at| at.elapsed() < DESCRIBE_RETRY) {
            return None;
        }
        match consumer.fetch_group_list(Some(group), self.timeout) {
            Ok(list) => {
                *failed = None;
                let assignments = list
                    .groups()
                    .iter()
                    .filter(|g| g.name() == group)
                    .flat_map(|g| g.members())
                    .map(|m| m.assignment());
                let count = count_members(assignments, topics);
                if count.is_none() {
                    tracing::debug!(
                        group,
                        "the group's members have no assignment (rebalancing, or a broker that leaves it out); the member count comes from the platform's running count"
                    );
                }
                count.map(|count| Members {
                    count,
                    source: MemberSource::Group,
                })
            }
            Err(e) => {
                tracing::info!(
                    group,
                    bootstrap = %self.bootstrap,
                    error = %e,
                    "the broker cannot describe the group; the member count comes from the platform's running count"
                );
                *failed = Some(std::time::Instant::now());
                None
            }
        }
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

/// Whether a member's assignment (Kafka's consumer protocol: a version, then topics, each a
/// name and partition numbers) holds a partition of one of `topics`. An assignment that
/// cannot be read counts as owning partitions: the member is there, and counting it errs
/// towards a lower per-replica rate, which errs towards more replicas.
fn owns_partitions(assignment: Option<&[u8]>, topics: &[String]) -> bool {
    let Some(bytes) = assignment else {
        return false;
    };
    parse_assignment(bytes).is_none_or(|owned| {
        owned
            .iter()
            .any(|(topic, n)| *n > 0 && topics.iter().any(|t| t == topic))
    })
}

/// How many of a group's members (given by their assignments) own a partition of `topics`;
/// `None` when there are members and not one has an assignment. Kafka sends none while the
/// group rebalances, and some brokers (nisshi 0.8) never send one; neither says how many
/// members serve, so the count is left to the platform's running count, not taken as 0.
fn count_members<'a>(
    assignments: impl Iterator<Item = Option<&'a [u8]>>,
    topics: &[String],
) -> Option<u32> {
    let (mut members, mut with_assignment, mut owning) = (0u32, 0u32, 0u32);
    for a in assignments {
        members += 1;
        with_assignment += u32::from(a.is_some());
        owning += u32::from(owns_partitions(a, topics));
    }
    (members == 0 || with_assignment > 0).then_some(owning)
}

/// The topics of a consumer-protocol assignment and how many partitions of each, or `None`
/// when the bytes are not one.
fn parse_assignment(bytes: &[u8]) -> Option<Vec<(String, usize)>> {
    let mut r = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = r.split_at_checked(n)?;
        r = rest;
        Some(head)
    };
    let _version = take(2)?;
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = String::from_utf8(take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
        let partitions = i32::from_be_bytes(take(4)?.try_into().ok()?);
        let partitions = usize::try_from(partitions).ok()?;
        take(partitions.checked_mul(4)?)?;
        out.push((name, partitions));
    }
    Some(out)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consumer-protocol assignment (version 0) of these topics and partitions.
    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 0];
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn a_member_counts_when_it_owns_a_partition_of_the_groups_topics() {
        let topics = vec!["orders".to_string(), "refunds".to_string()];
        let owns = assignment(&[("other", &[0]), ("refunds", &[2, 3])]);
        assert_eq!(
            parse_assignment(&owns),
            Some(vec![("other".into(), 1), ("refunds".into(), 2)])
        );
        assert!(owns_partitions(Some(&owns), &topics));
        let idle = assignment(&[("orders", &[])]);
        assert!(!owns_partitions(Some(&idle), &topics));
        let elsewhere = assignment(&[("other", &[0, 1])]);
        assert!(!owns_partitions(Some(&elsewhere), &topics));
        assert!(!owns_partitions(None, &topics));
    }

    #[test]
    fn members_without_any_assignment_leave_the_count_unknown() {
        let topics = vec!["orders".to_string()];
        let owns = assignment(&[("orders", &[0])]);
        let idle = assignment(&[("orders", &[])]);
        assert_eq!(
            count_members([Some(&owns[..]), None].into_iter(), &topics),
            Some(1)
        );
        assert_eq!(
            count_members([Some(&idle[..])].into_iter(), &topics),
            Some(0)
        );
        assert_eq!(
            count_members(std::iter::empty(), &topics),
            Some(0),
            "an empty group"
        );
        assert_eq!(count_members([None, None].into_iter(), &topics), None);
    }

    #[test]
    fn an_assignment_that_cannot_be_read_counts_as_a_member() {
        let topics = vec!["orders".to_string()];
        let mut cut = assignment(&[("orders", &[0, 1])]);
        cut.truncate(12);
        assert_eq!(parse_assignment(&cut), None);
        assert!(owns_partitions(Some(&cut), &topics));
        assert!(owns_partitions(Some(&[0xff]), &topics));
    }
}
