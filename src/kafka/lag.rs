//! Consumer-group lag: per partition, end offset − committed offset.
//!
//! A tick reads every group it looks after at once ([`LagReader::read_all`]), on one client
//! for the whole environment, so the brokers get a few requests per tick rather than a few
//! per group:
//!
//! 1. each topic's partition count: one Metadata per topic, however many groups read it;
//! 2. every group's committed offsets: ListConsumerGroupOffsets ([`super::ffi`]), one
//!    OffsetFetch per group to its coordinator, all in flight together. rdkafka's own call
//!    reads only a consumer's `group.id`, which took a client per group;
//! 3. then the end offsets of every partition read, of every topic and group: one ListOffsets
//!    per partition leader (`offsets_for_times` with "latest"); and the log-start offsets of
//!    the partitions some group never committed on, one more ListOffsets per leader;
//! 4. the members of every group: one ListGroups and one DescribeGroups per broker.
//!
//! Every committed offset is read before any end offset, so that a message committed between
//! the two reads can only make the lag larger, never negative; what is negative anyway (a
//! racing read) is clamped to 0 by the policy. A partition the group never committed on has
//! no committed offset; for it the reader gives the log-start offset, from which the policy
//! counts its lag under `auto.offset.reset = earliest`. A failure fails only the reads that
//! needed what failed: a missing topic fails the groups that read it, a group whose
//! coordinator cannot answer fails that group.
//!
//! The group's serving members come from DescribeGroups (librdkafka's group list, which
//! carries each member's assignment): the members that own partitions of the group's topics.
//! A stable group whose broker leaves every assignment out (nisshi 0.8) counts its members,
//! at most one per partition. A broker that cannot answer (tansu 0.6 drops the connection)
//! leaves them unknown, and the autoscaler then takes the platform's running count instead
//! (docs/autoscaler.md, "Members").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::ffi::{self, CommittedOffset};
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
#[serde(rename_all = "kebab-case")]
pub enum MemberSource {
    /// The broker's DescribeGroups: the members that own partitions of the group's topics.
    Group,
    /// The broker's DescribeGroups of a stable group without any member's assignment (nisshi
    /// 0.8 leaves them all out; Kafka sends one to every member of a stable group): every
    /// member that joined, at most one per partition of the group's topics. It overstates
    /// the serving members of a group that also reads other topics.
    GroupList,
    /// The platform's running count (ECS `runningCount`, or running containers), used when
    /// the broker cannot answer DescribeGroups. It also counts replicas that are still
    /// starting, so it can overstate the members serving for a start-up.
    Platform,
}

impl MemberSource {
    /// The source's name in `shoal lag` and its JSON.
    pub fn name(self) -> &'static str {
        match self {
            MemberSource::Group => "group",
            MemberSource::GroupList => "group-list",
            MemberSource::Platform => "platform",
        }
    }

    /// Where the count came from, as a decision's reason says it.
    pub fn described(self) -> &'static str {
        match self {
            MemberSource::Group => "the group",
            MemberSource::GroupList => "the group's member list, which has no assignments",
            MemberSource::Platform => "the platform",
        }
    }

    /// Whether the count holds only members that joined the group, not replicas that are
    /// still starting.
    pub fn joined(self) -> bool {
        matches!(self, MemberSource::Group | MemberSource::GroupList)
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

/// Reads lag for the groups of one environment, on one client made on first use and kept. It
/// has no `group.id`: it never joins a group, never commits, and reads any group's committed
/// offsets through the admin API.
pub struct LagReader {
    config: rdkafka::config::ClientConfig,
    context: ShoalContext,
    client: Mutex<Option<Arc<Client>>>,
    bootstrap: String,
    timeout: Duration,
    /// When DescribeGroups last failed, if it did.
    describe_failed: Mutex<Option<Instant>>,
}

/// How long a reader goes without asking DescribeGroups after the broker failed to answer.
const DESCRIBE_RETRY: Duration = Duration::from_secs(300);

type Client = BaseConsumer<ShoalContext>;

/// A partition: its topic and number.
type Partition = (String, i32);

/// One offset per partition; a partition the broker gave none for is missing.
type Offsets = BTreeMap<Partition, i64>;

/// What failed in one step of a batch: the Kafka call and its error. Every read that needed
/// that step's answer fails with it.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    op: &'static str,
    message: String,
}

impl Failure {
    fn new(op: &'static str, message: impl std::fmt::Display) -> Failure {
        Failure {
            op,
            message: message.to_string(),
        }
    }
}

impl LagReader {
    /// A reader for a resolved connection (`deploy::Session::kafka` resolves an
    /// environment's).
    pub fn with(conn: Connection, timeout: Duration) -> LagReader {
        LagReader {
            bootstrap: conn.bootstrap().to_string(),
            config: conn.config,
            context: conn.context,
            client: Mutex::default(),
            timeout,
            describe_failed: Mutex::default(),
        }
    }

    /// The brokers this reader reads from (`bootstrap.servers`).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The reader's client, made on first use.
    fn client(&self) -> Result<Arc<Client>, KafkaError> {
        let mut slot = self
            .client
            .lock()
            .map_err(|_| self.broker("client", "a lag read panicked"))?;
        if let Some(c) = slot.as_ref() {
            self.serve_token_refresh(c, false);
            return Ok(c.clone());
        }
        let client: Client = self
            .config
            .create_with_context(self.context.clone())
            .map_err(|e| KafkaError::Client {
                bootstrap: self.bootstrap.clone(),
                message: e.to_string(),
            })?;
        self.serve_token_refresh(&client, true);
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// With MSK IAM, librdkafka asks for a token (on start, and before the last one expires)
    /// through an event that only a poll serves; this client never subscribes, so a poll
    /// returns no message (with no `group.id` it polls librdkafka's main queue, where the
    /// event lands). A new client waits (up to 5 s) for its first token; a known one only
    /// serves a pending refresh.
    fn serve_token_refresh(&self, client: &Client, new: bool) {
        if !self.context.is_iam() {
            return;
        }
        if !new {
            let _ = client.poll(Duration::ZERO);
            return;
        }
        let before = self.context.tokens_made();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.context.tokens_made() == before && Instant::now() < deadline {
            let _ = client.poll(Duration::from_millis(100));
        }
    }

    fn broker(&self, op: &'static str, e: impl std::fmt::Display) -> KafkaError {
        KafkaError::Broker {
            op,
            bootstrap: self.bootstrap.clone(),
            message: e.to_string(),
        }
    }

    /// Reads one group's offsets on its topics: [`LagReader::read_all`] for one read.
    pub fn read(&self, group: &str, topics: &[String]) -> Result<Observation, KafkaError> {
        self.read_all(&[(group.to_string(), topics.to_vec())])
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(self.broker("read", "no answer for the group")))
    }

    /// Reads every `(group, topics)` at once: the partition counts, then every group's
    /// committed offsets, then the end offsets (and the log-start offsets of partitions with
    /// no commit), then the members. One observation per read, in order; a read fails only
    /// when something it needed failed. A group may come more than once (its topics and its
    /// dead-letter topic): its committed offsets are still asked once.
    pub fn read_all(
        &self,
        reads: &[(String, Vec<String>)],
    ) -> Vec<Result<Observation, KafkaError>> {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                return reads
                    .iter()
                    .map(|_| {
                        Err(KafkaError::Client {
                            bootstrap: self.bootstrap.clone(),
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
        };
        let batch = self.batch(&client, reads);
        reads
            .iter()
            .map(|(group, topics)| {
                batch
                    .observation(group, topics)
                    .map_err(|f| self.broker(f.op, f.message))
            })
            .collect()
    }

    /// Reads what `reads` need from the brokers, in the order the module describes.
    fn batch(&self, client: &Client, reads: &[(String, Vec<String>)]) -> Batch {
        let topics: BTreeSet<&String> = reads.iter().flat_map(|(_, t)| t).collect();
        let partitions = self.partition_counts(client, topics);
        // Each group's partitions: those of every topic any of its reads names.
        let mut wanted: BTreeMap<&str, BTreeSet<Partition>> = BTreeMap::new();
        for (group, topics) in reads {
            let of_group = wanted.entry(group.as_str()).or_default();
            for t in topics {
                if let Some(Ok(n)) = partitions.get(t) {
                    of_group.extend((0..*n as i32).map(|p| (t.clone(), p)));
                }
            }
        }
        let committed = self.committed(client, &wanted);
        let every: BTreeSet<Partition> = wanted.values().flatten().cloned().collect();
        let ends = self.list_offsets(client, &every, Offset::End);
        let uncommitted: BTreeSet<Partition> = wanted
            .iter()
            .filter_map(|(g, ps)| Some((committed.get(*g)?.as_ref().ok()?, ps)))
            .flat_map(|(c, ps)| ps.iter().filter(|p| !c.contains_key(*p)))
            .cloned()
            .collect();
        let starts = self.list_offsets(client, &uncommitted, Offset::Beginning);
        let read_at = now();
        tracing::debug!(
            groups = wanted.len(),
            topics = partitions.len(),
            partitions = every.len(),
            uncommitted = uncommitted.len(),
            "read the groups' offsets"
        );
        Batch {
            partitions,
            committed,
            ends,
            starts,
            members: self.members(client, wanted.keys().copied().collect()),
            read_at,
        }
    }

    /// Each topic's partition count (one Metadata each). Once a request itself fails (the
    /// brokers cannot be reached), the topics after it fail with it rather than waiting for
    /// the same timeout again.
    fn partition_counts(
        &self,
        client: &Client,
        topics: BTreeSet<&String>,
    ) -> BTreeMap<String, Result<u32, Failure>> {
        let mut down: Option<Failure> = None;
        let mut out = BTreeMap::new();
        for topic in topics {
            let count = match &down {
                Some(f) => Err(f.clone()),
                None => match client.fetch_metadata(Some(topic), self.timeout) {
                    Ok(md) => partition_count(
                        topic,
                        md.topics()
                            .iter()
                            .find(|t| t.name() == topic)
                            .map(|t| (t.error(), t.partitions().len())),
                    ),
                    Err(e) => {
                        let f = Failure::new("Metadata", e);
                        down = Some(f.clone());
                        Err(f)
                    }
                },
            };
            out.insert(topic.clone(), count);
        }
        out
    }

    /// Each group's committed offsets on its partitions, all groups at once on this client
    /// (ListConsumerGroupOffsets). A group with no partition to ask about is not asked.
    fn committed(
        &self,
        client: &Client,
        wanted: &BTreeMap<&str, BTreeSet<Partition>>,
    ) -> BTreeMap<String, Result<Offsets, Failure>> {
        let mut asked = Vec::new();
        let mut out = BTreeMap::new();
        for (group, partitions) in wanted {
            if partitions.is_empty() {
                out.insert(group.to_string(), Ok(Offsets::new()));
                continue;
            }
            let mut tpl = TopicPartitionList::with_capacity(partitions.len());
            for (t, p) in partitions {
                tpl.add_partition(t, *p);
            }
            asked.push((*group, tpl));
        }
        let requests: Vec<(&str, &TopicPartitionList)> =
            asked.iter().map(|(g, tpl)| (*g, tpl)).collect();
        let answers = ffi::list_consumer_group_offsets(client.client(), &requests, self.timeout);
        for ((group, _), answer) in asked.iter().zip(answers) {
            let offsets = answer
                .map_err(|e| Failure::new("OffsetFetch", format!("group {group}: {e}")))
                .and_then(|list| committed_offsets(group, list));
            out.insert(group.to_string(), offsets);
        }
        out
    }

    /// One offset per partition of `partitions`, at `at` (the end, or the log start): one
    /// ListOffsets per partition leader for all of them.
    fn list_offsets(
        &self,
        client: &Client,
        partitions: &BTreeSet<Partition>,
        at: Offset,
    ) -> Result<Offsets, Failure> {
        if partitions.is_empty() {
            return Ok(Offsets::new());
        }
        let mut query = TopicPartitionList::with_capacity(partitions.len());
        for (t, p) in partitions {
            query
                .add_partition_offset(t, *p, at)
                .map_err(|e| Failure::new("ListOffsets", e))?;
        }
        let answer = client
            .offsets_for_times(query, self.timeout)
            .map_err(|e| Failure::new("ListOffsets", e))?;
        Ok(answer
            .elements()
            .iter()
            .filter(|e| e.error().is_ok())
            .filter_map(|e| {
                let offset = e.offset().to_raw().filter(|o| *o >= 0)?;
                Some(((e.topic().to_string(), e.partition()), offset))
            })
            .collect())
    }

    /// The members' assignments of each of `groups`, from one ListGroups and one
    /// DescribeGroups per broker (librdkafka's group list of the whole cluster, of which only
    /// these groups are kept); `None` when the broker cannot answer. After a failure the
    /// reader does not ask again for [`DESCRIBE_RETRY`], so a broker without the call costs
    /// one timeout per retry, not one per tick.
    fn members(&self, client: &Client, groups: BTreeSet<&str>) -> Option<Assignments> {
        if groups.is_empty() {
            return None;
        }
        let mut failed = self.describe_failed.lock().ok()?;
        if failed.is_some_and(|at| at.elapsed() < DESCRIBE_RETRY) {
            return None;
        }
        match client.fetch_group_list(None, self.timeout) {
            Ok(list) => {
                *failed = None;
                let mut out = Assignments::new();
                for g in list.groups().iter().filter(|g| groups.contains(g.name())) {
                    let listing = out.entry(g.name().to_string()).or_default();
                    listing.stable = g.state() == "Stable";
                    listing.assignments.extend(
                        g.members()
                            .iter()
                            .map(|m| m.assignment().map(<[u8]>::to_vec)),
                    );
                }
                Some(out)
            }
            Err(e) => {
                tracing::info!(
                    groups = groups.len(),
                    bootstrap = %self.bootstrap,
                    error = %e,
                    "the broker cannot describe the groups; the member counts come from the platform's running counts"
                );
                *failed = Some(Instant::now());
                None
            }
        }
    }
}

/// Each group's listing, as DescribeGroups gave it; a group the broker does not list has no
/// members.
type Assignments = BTreeMap<String, Listing>;

/// A group's state and its members' assignments (a member with none has `None`).
#[derive(Debug, Clone, Default)]
struct Listing {
    stable: bool,
    assignments: Vec<Option<Vec<u8>>>,
}

/// A topic's partition count from its Metadata entry: its error, and how many partitions it
/// has (`None` when the broker left the topic out).
fn partition_count(
    topic: &str,
    entry: Option<(Option<rdkafka::types::RDKafkaRespErr>, usize)>,
) -> Result<u32, Failure> {
    match entry {
        None => Err(Failure::new("Metadata", format!("no topic {topic}"))),
        Some((Some(err), _)) => Err(Failure::new("Metadata", format!("topic {topic}: {err:?}"))),
        Some((None, n)) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// A group's committed offsets as its coordinator answered: a negative offset is no commit,
/// and is left out; a partition's own error fails the group's read (an offset it cannot
/// give is not "no commit", which would count from the log start).
fn committed_offsets(group: &str, list: Vec<CommittedOffset>) -> Result<Offsets, Failure> {
    let mut out = Offsets::new();
    for c in list {
        if let Some(e) = c.error {
            return Err(Failure::new(
                "OffsetFetch",
                format!("group {group}: {}[{}]: {e}", c.topic, c.partition),
            ));
        }
        if c.offset >= 0 {
            out.insert((c.topic, c.partition), c.offset);
        }
    }
    Ok(out)
}

/// What one batch read from the brokers, before it is split into each read's observation.
#[derive(Debug)]
struct Batch {
    partitions: BTreeMap<String, Result<u32, Failure>>,
    /// Each group's committed offsets; a partition missing from them has no commit.
    committed: BTreeMap<String, Result<Offsets, Failure>>,
    ends: Result<Offsets, Failure>,
    /// The log-start offsets of the partitions some group has no commit on.
    starts: Result<Offsets, Failure>,
    members: Option<Assignments>,
    read_at: f64,
}

impl Batch {
    /// The observation of `group` on `topics`, or the first failure it met.
    fn observation(&self, group: &str, topics: &[String]) -> Result<Observation, Failure> {
        let mut spans = Vec::with_capacity(topics.len());
        for t in topics {
            let partitions = self
                .partitions
                .get(t)
                .cloned()
                .unwrap_or_else(|| Err(Failure::new("Metadata", format!("no topic {t}"))))?;
            spans.push(TopicSpan {
                name: t.clone(),
                partitions,
            });
        }
        let committed = self
            .committed
            .get(group)
            .cloned()
            .unwrap_or_else(|| Ok(Offsets::new()))?;
        let ends = self.ends.as_ref().map_err(Clone::clone)?;
        let missing =
            |t: &str, p: i32| Failure::new("ListOffsets", format!("no offset for {t}[{p}]"));
        let mut reads = Vec::new();
        for span in &spans {
            for p in 0..span.partitions as i32 {
                let key = (span.name.clone(), p);
                let end_offset = *ends.get(&key).ok_or_else(|| missing(&span.name, p))?;
                let committed_offset = committed.get(&key).copied();
                let log_start_offset = match committed_offset {
                    Some(_) => None,
                    None => Some(
                        *self
                            .starts
                            .as_ref()
                            .map_err(Clone::clone)?
                            .get(&key)
                            .ok_or_else(|| missing(&span.name, p))?,
                    ),
                };
                reads.push(PartitionRead {
                    end_offset,
                    committed_offset,
                    log_start_offset,
                    read_at: self.read_at,
                });
            }
        }
        let members = self.members.as_ref().and_then(|all| {
            let listing = all.get(group).cloned().unwrap_or_default();
            let total = spans.iter().map(|s| s.partitions).sum();
            let members = serving_members(&listing, topics, total);
            if members.is_none() {
                tracing::debug!(
                    group,
                    "the group's members have no assignment while it rebalances; the member count comes from the platform's running count"
                );
            }
            members
        });
        Ok(Observation {
            at: self.read_at,
            topics: spans,
            partitions: reads,
            members,
        })
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

/// How many of a group's members serve `topics` (of `partitions` partitions in all), and
/// from which source. With assignments, the members that own a partition of `topics`. A
/// stable group in which not one member has an assignment is a broker that leaves them out
/// (nisshi 0.8; Kafka gives every member of a stable group one): every member counts, at
/// most one per partition. `None` for a rebalancing group whose members have none yet: that
/// does not say how many serve, so the count is left to the platform's running count, not
/// taken as 0.
fn serving_members(listing: &Listing, topics: &[String], partitions: u32) -> Option<Members> {
    let members = u32::try_from(listing.assignments.len()).unwrap_or(u32::MAX);
    let assigned = listing.assignments.iter().any(Option::is_some);
    let (count, source) = if members == 0 || assigned {
        let owning = listing
            .assignments
            .iter()
            .filter(|a| owns_partitions(a.as_deref(), topics))
            .count();
        (
            u32::try_from(owning).unwrap_or(u32::MAX),
            MemberSource::Group,
        )
    } else if listing.stable {
        (members.min(partitions), MemberSource::GroupList)
    } else {
        return None;
    };
    Some(Members { count, source })
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

    fn listing(stable: bool, assignments: &[Option<&[u8]>]) -> Listing {
        Listing {
            stable,
            assignments: assignments.iter().map(|a| a.map(<[u8]>::to_vec)).collect(),
        }
    }

    #[test]
    fn members_count_from_their_assignments_or_a_stable_groups_list() {
        let topics = vec!["orders".to_string()];
        let owns = assignment(&[("orders", &[0])]);
        let idle = assignment(&[("orders", &[])]);
        let count = |l: &Listing, partitions| serving_members(l, &topics, partitions);
        let group = |count| {
            Some(Members {
                count,
                source: MemberSource::Group,
            })
        };
        assert_eq!(count(&listing(true, &[Some(&owns), None]), 4), group(1));
        assert_eq!(count(&listing(true, &[Some(&idle)]), 4), group(0));
        assert_eq!(count(&listing(true, &[]), 4), group(0), "an empty group");
        assert_eq!(
            count(&listing(false, &[None, None]), 4),
            None,
            "a rebalance: the assignments are not out yet"
        );
        let list = |count| {
            Some(Members {
                count,
                source: MemberSource::GroupList,
            })
        };
        assert_eq!(
            count(&listing(true, &[None, None]), 4),
            list(2),
            "a stable group without assignments: a broker that leaves them out"
        );
        assert_eq!(
            count(&listing(true, &[None, None, None]), 2),
            list(2),
            "at most one member per partition serves"
        );
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

    fn offsets(list: &[(&str, i32, i64)]) -> Offsets {
        list.iter()
            .map(|(t, p, o)| ((t.to_string(), *p), *o))
            .collect()
    }

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|t| t.to_string()).collect()
    }

    /// Two groups share topic `orders` (2 partitions); `billing` also reads `refunds` (1
    /// partition). `billing` committed on every partition, `audit` only on `orders`[0].
    fn batch() -> Batch {
        Batch {
            partitions: [("orders", Ok(2)), ("refunds", Ok(1))]
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            committed: [
                (
                    "billing",
                    Ok(offsets(&[
                        ("orders", 0, 3),
                        ("orders", 1, 9),
                        ("refunds", 0, 1),
                    ])),
                ),
                ("audit", Ok(offsets(&[("orders", 0, 5)]))),
            ]
            .into_iter()
            .map(|(g, c)| (g.to_string(), c))
            .collect(),
            ends: Ok(offsets(&[
                ("orders", 0, 10),
                ("orders", 1, 12),
                ("refunds", 0, 4),
            ])),
            starts: Ok(offsets(&[("orders", 1, 2)])),
            members: None,
            read_at: 7.0,
        }
    }

    fn reads(o: &Observation) -> Vec<(i64, Option<i64>, Option<i64>)> {
        o.partitions
            .iter()
            .map(|p| (p.end_offset, p.committed_offset, p.log_start_offset))
            .collect()
    }

    #[test]
    fn a_batch_gives_each_group_its_own_commits_on_the_shared_end_offsets() {
        let b = batch();
        let billing = b
            .observation("billing", &topics(&["orders", "refunds"]))
            .expect("billing");
        assert_eq!(
            reads(&billing),
            vec![(10, Some(3), None), (12, Some(9), None), (4, Some(1), None)]
        );
        let spans: Vec<(&str, u32)> = billing
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions))
            .collect();
        assert_eq!(spans, vec![("orders", 2), ("refunds", 1)]);
        assert_eq!((billing.at, billing.partitions[0].read_at), (7.0, 7.0));
        let audit = b.observation("audit", &topics(&["orders"])).expect("audit");
        assert_eq!(
            reads(&audit),
            vec![(10, Some(5), None), (12, None, Some(2))],
            "no commit on orders[1]: its log start"
        );
    }

    #[test]
    fn a_failure_fails_only_the_reads_that_needed_it() {
        let mut b = batch();
        b.partitions.insert(
            "gone".into(),
            Err(Failure::new(
                "Metadata",
                "topic gone: UnknownTopicOrPartition",
            )),
        );
        b.committed.insert(
            "stuck".into(),
            Err(Failure::new("OffsetFetch", "group stuck: timed out")),
        );
        assert_eq!(
            b.observation("billing", &topics(&["orders", "gone"]))
                .expect_err("a missing topic")
                .op,
            "Metadata"
        );
        assert_eq!(
            b.observation("stuck", &topics(&["orders"]))
                .expect_err("its coordinator")
                .op,
            "OffsetFetch"
        );
        assert!(b.observation("billing", &topics(&["orders"])).is_ok());

        b.starts = Err(Failure::new("ListOffsets", "timed out"));
        assert!(
            b.observation("billing", &topics(&["orders"])).is_ok(),
            "billing needs no log start"
        );
        assert_eq!(
            b.observation("audit", &topics(&["orders"]))
                .expect_err("audit does")
                .op,
            "ListOffsets"
        );

        let mut b = batch();
        b.ends = Ok(offsets(&[("orders", 0, 10)]));
        let err = b
            .observation("audit", &topics(&["orders"]))
            .expect_err("no end offset for orders[1]");
        assert_eq!(err.message, "no offset for orders[1]");
    }

    #[test]
    fn members_are_counted_per_group_from_one_listing() {
        let mut b = batch();
        assert_eq!(
            b.observation("billing", &topics(&["orders"]))
                .expect("read")
                .members,
            None,
            "not described"
        );
        let owns = assignment(&[("orders", &[0, 1])]);
        let idle = assignment(&[("orders", &[])]);
        b.members = Some(
            [(
                "billing".to_string(),
                listing(true, &[Some(&owns), Some(&owns), Some(&idle)]),
            )]
            .into_iter()
            .collect(),
        );
        let count = |group: &str| {
            b.observation(group, &topics(&["orders"]))
                .expect("read")
                .member_count()
        };
        assert_eq!(count("billing"), Some(2));
        assert_eq!(count("audit"), Some(0), "a group the broker does not list");
    }

    #[test]
    fn a_negative_committed_offset_is_no_commit_and_a_partition_error_fails_the_group() {
        let c = |topic: &str, partition, offset, error: Option<&str>| CommittedOffset {
            topic: topic.into(),
            partition,
            offset,
            error: error.map(Into::into),
        };
        assert_eq!(
            committed_offsets("g", vec![c("t", 0, 4, None), c("t", 1, -1001, None)]),
            Ok(offsets(&[("t", 0, 4)]))
        );
        let err = committed_offsets(
            "g",
            vec![
                c("t", 0, 4, None),
                c("t", 1, -1, Some("Broker: Unstable offset commit")),
            ],
        )
        .expect_err("a partition error");
        assert_eq!(err.op, "OffsetFetch");
        assert_eq!(err.message, "group g: t[1]: Broker: Unstable offset commit");
    }

    #[test]
    fn a_topic_the_broker_leaves_out_or_refuses_has_no_partition_count() {
        use rdkafka::types::RDKafkaRespErr;
        assert_eq!(partition_count("t", Some((None, 24))), Ok(24));
        assert_eq!(
            partition_count("t", None),
            Err(Failure::new("Metadata", "no topic t"))
        );
        let refused = partition_count(
            "t",
            Some((
                Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
                0,
            )),
        )
        .expect_err("refused");
        assert!(refused.message.starts_with("topic t: "), "{refused:?}");
    }
}
