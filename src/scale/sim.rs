//! The simulator behind `shoal simulate`: runs the autoscaler's own tick
//! ([`super::daemon::Autoscaler::tick`], the code `shoal autoscale` runs) or the KEDA+HPA model
//! over a produce-rate trace, second by second, against a simulated broker and platform.
//!
//! The simulated system, the same for both policies:
//! - Arrivals: the trace's rate, split over the partitions by `partition_weights` (evenly
//!   without), so partition `i` has received `wᵢ × A(t)` messages, where `A` is the trace's
//!   cumulative curve; its queue is what lies between its consumed count and that curve, and
//!   its oldest message arrived in the first second whose curve passes that count.
//! - Replicas: a new one is paid for from its launch and joins the group `startup_seconds`
//!   later. Scaling in stops the newest replicas first. Each change in the group's members
//!   (replicas joining after their start-up, or leaving) is a rebalance that pauses the whole
//!   group for `rebalance_seconds` (eager assignor; 0 models cooperative-sticky); a change
//!   during a rebalance restarts it.
//! - Consumption: the members own partitions under the range assignor; each processes
//!   `per_replica_rate` messages per second over the partitions it owns, sharing it evenly
//!   and handing what a partition with a short queue leaves over to its others (a consumer
//!   polls whatever its partitions have). A stuck partition consumes nothing and takes its
//!   even share of its owner's rate with it (the owner keeps retrying the poison message).
//! - Commits: each member commits the offsets it has consumed every
//!   `commit_interval_seconds` from its join (librdkafka's `auto.commit.interval.ms`,
//!   5000 by default), and every member commits before a rebalance (on revocation). The
//!   first members' timers run half an interval out of step with the daemon's ticks, as two
//!   unrelated clocks would. A partition nothing was consumed from has never been committed.
//! - Lag seconds at the end of each second = the age of the oldest unconsumed message over
//!   the partitions that are not stuck at that moment (no policy can fix a stuck partition,
//!   and it would hide every other difference). KEDA still sees the stuck partition's lag,
//!   as it does in production.
//!
//! What each policy sees:
//! - shoal: every `interval_seconds` the daemon's tick reads a [`SimBroker`] and a
//!   [`SimPlatform`]. The broker answers what the production reader reads: each partition's
//!   end offset, its committed offset as last committed (the log-start offset, 0, where the
//!   group never committed), and the members by the chosen [`MemberSource`]: with `Group`,
//!   the replicas that joined; with `Platform`, none (the broker cannot say), and the
//!   platform's running count, which includes replicas still starting (as ECS
//!   `runningCount` does), stands in. Its metrics go nowhere.
//! - KEDA: the model in [`super::keda`], every second on the same committed offsets (the
//!   end offset for a partition never committed: KEDA's lag under `earliest`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures_util::FutureExt;

use super::daemon::{Autoscaler, ReadLag, Target};
use super::keda::Keda;
use super::policy::{self, Config, Decision, MemberSource, Members, Observation, PartitionRead};
use crate::aws::cloudwatch::Metric;
use crate::aws::AwsError;
use crate::kafka::KafkaError;
use crate::platform::Publish;
use crate::platform::{Counts, Scale, ScaleError};

/// A produce-rate trace: `t_seconds,produce_rate[,stuck]` rows, and the partitions' weights
/// when a `# partition-weights: W0,W1,…` line gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub file: PathBuf,
    pub rows: Vec<Row>,
    /// The weights and the line that gave them.
    pub partition_weights: Option<(usize, Vec<f64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: usize,
    pub t: f64,
    pub rate: f64,
    /// Partitions stuck from this row's time until the next row.
    pub stuck: Vec<u32>,
}

/// A problem in a trace file, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// Reads and parses a trace file.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| TraceError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read the trace: {e}"),
        })?;
        Trace::parse(path, &text)
    }

    /// Parses `t_seconds,produce_rate[,stuck]` rows. A first row that does not start with a
    /// number is a header; blank lines and `#` comments are skipped, except a
    /// `# partition-weights: W0,W1,…` line, which gives the partitions' weights (as
    /// `--partition-weights`, which overrides it). Times must not go backwards (repeat a time
    /// to make a step). `stuck` is empty, `-`, or partition numbers separated by spaces.
    pub fn parse(path: &Path, text: &str) -> Result<Trace, TraceError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let err = |line: usize, message: String| TraceError {
            file: path.to_path_buf(),
            line: Some(line),
            message,
        };
        let mut rows: Vec<Row> = Vec::new();
        let mut partition_weights = None;
        let mut seen_data_or_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if let Some(w) = l.strip_prefix(WEIGHTS_LINE) {
                if partition_weights.is_some() {
                    return Err(err(line, format!("a second `{WEIGHTS_LINE}` line")));
                }
                let w = parse_partition_weights(w.trim())
                    .map_err(|e| err(line, e.replacen("--partition-weights", WEIGHTS_LINE, 1)))?;
                partition_weights = Some((line, w));
                continue;
            }
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            if !seen_data_or_header {
                seen_data_or_header = true;
                if fields[0].parse::<f64>().is_err() {
                    continue; // the header
                }
            }
            if fields.len() < 2 || fields.len() > 3 {
                return Err(err(
                    line,
                    format!(
                        "expected `t_seconds,produce_rate` or `t_seconds,produce_rate,stuck`, found {} field{}",
                        fields.len(),
                        if fields.len() == 1 { "" } else { "s" }
                    ),
                ));
            }
            let number = |name: &str, s: &str| -> Result<f64, TraceError> {
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                    Ok(_) => Err(err(
                        line,
                        format!("{name} must be a finite number ≥ 0, found {s:?}"),
                    )),
                    Err(_) => Err(err(line, format!("{name} is not a number: {s:?}"))),
                }
            };
            let t = number("t_seconds", fields[0])?;
            let rate = number("produce_rate", fields[1])?;
            if let Some(prev) = rows.last() {
                if t < prev.t {
                    return Err(err(
                        line,
                        format!(
                            "t_seconds {t} is before the previous row's {} (line {}); times must not go backwards",
                            prev.t, prev.line
                        ),
                    ));
                }
            }
            let stuck = match fields.get(2).copied() {
                None | Some("" | "-") => Vec::new(),
                Some(s) => s
                    .split_whitespace()
                    .map(|p| {
                        p.parse::<u32>().map_err(|_| {
                            err(
                                line,
                                format!("stuck must be partition numbers separated by spaces, found {p:?}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            rows.push(Row {
                line,
                t,
                rate,
                stuck,
            });
        }
        let Some(last) = rows.last() else {
            return Err(TraceError {
                file: path.to_path_buf(),
                line: None,
                message: "no data rows; expected `t_seconds,produce_rate` lines".to_string(),
            });
        };
        if last.t > MAX_SECONDS {
            return Err(err(
                last.line,
                format!(
                    "the trace lasts {} s; the simulator runs at most {MAX_SECONDS} s (7 days)",
                    last.t
                ),
            ));
        }
        if last.t < 1.0 {
            return Err(err(
                last.line,
                "the trace must last at least 1 second (the last t_seconds is below 1)".into(),
            ));
        }
        Ok(Trace {
            file: path.to_path_buf(),
            rows,
            partition_weights,
        })
    }

    /// Checks the stuck partitions and the weights against the partition count.
    pub fn check(&self, partitions: u32) -> Result<(), TraceError> {
        if let Some((line, w)) = &self.partition_weights {
            if w.len() != partitions as usize {
                return Err(TraceError {
                    file: self.file.clone(),
                    line: Some(*line),
                    message: format!(
                        "`{WEIGHTS_LINE}` has {} weight{} for {partitions} partitions; give one weight per partition (or --partition-weights)",
                        w.len(),
                        if w.len() == 1 { "" } else { "s" },
                    ),
                });
            }
            if w.iter().sum::<f64>() <= 0.0 {
                return Err(TraceError {
                    file: self.file.clone(),
                    line: Some(*line),
                    message: format!(
                        "`{WEIGHTS_LINE}` weights are all 0; at least one partition must get traffic"
                    ),
                });
            }
        }
        for row in &self.rows {
            if let Some(p) = row.stuck.iter().find(|&&p| p >= partitions) {
                return Err(TraceError {
                    file: self.file.clone(),
                    line: Some(row.line),
                    message: format!(
                        "stuck partition {p} does not exist with {partitions} partitions (0..{})",
                        partitions.saturating_sub(1)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Seconds simulated: the last row's time, rounded up.
    pub fn duration(&self) -> u64 {
        self.rows.last().map_or(0, |r| r.t.ceil() as u64)
    }

    /// The produce rate at `t`, interpolated linearly between rows (a repeated time is a step).
    pub fn rate_at(&self, t: f64) -> f64 {
        let i = self.rows.partition_point(|r| r.t <= t);
        if i == 0 {
            return self.rows.first().map_or(0.0, |r| r.rate);
        }
        let a = &self.rows[i - 1];
        match self.rows.get(i) {
            None => a.rate,
            Some(b) => a.rate + (b.rate - a.rate) * (t - a.t) / (b.t - a.t),
        }
    }

    /// The partitions stuck at `t` (step: from a row's time until the next row's).
    pub fn stuck_at(&self, t: f64) -> &[u32] {
        let i = self.rows.partition_point(|r| r.t <= t);
        if i == 0 {
            return &[];
        }
        &self.rows[i - 1].stuck
    }
}

/// The simulated system and the target both policies get.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub partitions: u32,
    pub startup_seconds: u64,
    pub per_replica_rate: f64,
    pub max_lag_seconds: f64,
    pub min: u32,
    pub max: u32,
    /// KEDA's lagThreshold; default per-replica rate × max lag seconds.
    pub lag_threshold: Option<f64>,
    /// How often shoal's tick runs.
    pub interval_seconds: u64,
    /// Whether shoal's policy may alternate between two useful counts.
    pub duty_cycle: bool,
    /// Seconds the whole group pauses for each change in its members (0: cooperative-sticky).
    pub rebalance_seconds: u64,
    /// Seconds between a member's commits (librdkafka's `auto.commit.interval.ms` / 1000).
    pub commit_interval_seconds: u64,
    /// Where shoal's tick gets the group's member count.
    pub members: MemberSource,
    /// One weight per partition: each gets its weight's share of the trace's rate. `None`:
    /// evenly.
    pub partition_weights: Option<Vec<f64>>,
}

impl Default for Setup {
    /// The CLI's defaults: 12 partitions, 60 s start-up, 100 msg/s per replica, 60 s target,
    /// 1..12 replicas, KEDA's threshold from the target, 30 s ticks, 10 s rebalances, commits
    /// every 5 s, members from the group, even partitions.
    fn default() -> Setup {
        Setup {
            partitions: 12,
            startup_seconds: 60,
            per_replica_rate: 100.0,
            max_lag_seconds: 60.0,
            min: 1,
            max: 12,
            lag_threshold: None,
            interval_seconds: 30,
            duty_cycle: true,
            rebalance_seconds: 10,
            commit_interval_seconds: 5,
            members: MemberSource::Group,
            partition_weights: None,
        }
    }
}

/// The comment line that gives a trace's partition weights.
pub const WEIGHTS_LINE: &str = "# partition-weights:";

/// Parses `--partition-weights`: numbers ≥ 0 separated by commas, one per partition.
pub fn parse_partition_weights(text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .enumerate()
        .map(|(i, w)| {
            let w = w.trim();
            match w.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                Ok(_) => Err(format!(
                    "--partition-weights: the weight of partition {i} is {w}; weights must be finite numbers ≥ 0"
                )),
                Err(_) if w.is_empty() => Err(format!(
                    "--partition-weights: the weight of partition {i} is empty; give numbers separated by commas, e.g. 4,1,1,1"
                )),
                Err(_) => Err(format!(
                    "--partition-weights: the weight of partition {i} is not a number: {w:?}"
                )),
            }
        })
        .collect()
}

impl Setup {
    pub fn lag_threshold(&self) -> f64 {
        self.lag_threshold
            .unwrap_or(self.per_replica_rate * self.max_lag_seconds)
    }

    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.partitions == 0 || self.partitions > 10_000 {
            return Err("--partitions must be between 1 and 10000".into());
        }
        if !(self.per_replica_rate.is_finite() && self.per_replica_rate > 0.0) {
            return Err("--per-replica-rate must be a number above 0".into());
        }
        if !(self.max_lag_seconds.is_finite() && self.max_lag_seconds > 0.0) {
            return Err("--max-lag-seconds must be a number above 0".into());
        }
        if self.max == 0 || self.min > self.max {
            return Err(format!(
                "--min {} and --max {}: need 0 ≤ min ≤ max and max ≥ 1",
                self.min, self.max
            ));
        }
        if self
            .lag_threshold
            .is_some_and(|t| !(t.is_finite() && t > 0.0))
        {
            return Err("--lag-threshold must be a number above 0".into());
        }
        if self.interval_seconds == 0 {
            return Err("--interval must be at least 1 second".into());
        }
        if self.commit_interval_seconds == 0 {
            return Err("--commit-interval must be at least 1 second".into());
        }
        if let Some(w) = &self.partition_weights {
            if w.len() != self.partitions as usize {
                return Err(format!(
                    "--partition-weights has {} weight{} for {} partitions; give one weight per partition",
                    w.len(),
                    if w.len() == 1 { "" } else { "s" },
                    self.partitions
                ));
            }
            if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(format!(
                    "--partition-weights: the weight of partition {i} is {}; weights must be finite numbers ≥ 0",
                    w[i]
                ));
            }
            if w.iter().sum::<f64>() <= 0.0 {
                return Err(
                    "--partition-weights are all 0; at least one partition must get traffic".into(),
                );
            }
        }
        Ok(())
    }

    /// The weights in force for a trace: `--partition-weights`, else the trace's own, else
    /// none (even).
    pub fn weights<'a>(&'a self, trace: &'a Trace) -> Option<&'a [f64]> {
        self.partition_weights
            .as_deref()
            .or(trace.partition_weights.as_ref().map(|(_, w)| w.as_slice()))
    }

    /// Each partition's share of the trace's rate, summing to 1.
    pub fn shares(&self, trace: &Trace) -> Vec<f64> {
        let p = self.partitions.max(1) as usize;
        match self.weights(trace) {
            Some(w) if w.len() == p && w.iter().sum::<f64>() > 0.0 => {
                let total: f64 = w.iter().sum();
                w.iter().map(|v| v / total).collect()
            }
            _ => vec![1.0 / p as f64; p],
        }
    }

    /// shoal's policy settings for this setup: the same bounds and target as KEDA, and
    /// KEDA's lagThreshold as the fallback until rates are known.
    pub fn policy_config(&self) -> Config {
        Config::new(crate::manifest::Scaling {
            min: self.min,
            max: self.max,
            max_lag_seconds: self.max_lag_seconds,
            duty_cycle: self.duty_cycle,
        })
        .with_fallback_lag_per_replica(self.lag_threshold())
        .with_stale_after_seconds(3.0 * self.interval_seconds as f64)
        .with_interval_seconds(self.interval_seconds as f64)
        .with_startup_seconds(self.startup_seconds as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Shoal,
    Keda,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Shoal => "shoal",
            Which::Keda => "keda",
        }
    }
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    pub peak_lag_seconds: f64,
    pub p99_lag_seconds: f64,
    pub replica_seconds: u64,
    pub scale_actions: u32,
    /// Seconds the group spent paused in rebalances.
    pub rebalance_seconds: u64,
    /// `[t_seconds, desired, serving]` at t = 0 and at every change.
    pub timeline: Vec<[u64; 3]>,
    /// Per second: (lag seconds, desired, serving). For plots; not printed.
    #[serde(skip)]
    pub seconds: Vec<(f64, u32, u32)>,
    /// shoal's ticks: what the simulated broker and platform answered, and what the
    /// daemon's tick decided. For tests; not printed.
    #[serde(skip)]
    pub ticks: Vec<SimTick>,
}

/// One of shoal's ticks in the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTick {
    /// The observation the simulated broker handed the tick.
    pub observation: Observation,
    /// The counts the simulated platform reported.
    pub counts: Counts,
    pub decision: Decision,
}

/// Messages below this are rounding, not lag.
const EPSILON: f64 = 1e-6;

/// The longest trace simulated: 7 days of seconds.
pub const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// The group, topic and service names the simulated tick uses.
pub const SIMULATED: &str = "simulated";

/// The simulated broker: answers the daemon's lag read with this tick's observation, holding
/// only what the production reader reads.
#[derive(Debug, Clone)]
pub struct SimBroker {
    pub observation: Observation,
}

impl ReadLag for SimBroker {
    async fn read(&self, _group: &str, _topics: &[String]) -> Result<Observation, KafkaError> {
        Ok(self.observation.clone())
    }
}

/// The simulated platform: reports the simulated service's counts and keeps the count the
/// tick sets, which the simulator then applies.
#[derive(Debug)]
pub struct SimPlatform {
    pub counts: Counts,
    pub set_to: OnceLock<u32>,
}

impl Scale for SimPlatform {
    async fn counts(&self, service: &str) -> Result<Counts, ScaleError> {
        if service == SIMULATED {
            Ok(self.counts)
        } else {
            Err(ScaleError::NoService {
                service: service.to_string(),
                cluster: SIMULATED.to_string(),
            })
        }
    }

    async fn set(&self, _service: &str, count: u32) -> Result<(), ScaleError> {
        let _ = self.set_to.set(count);
        Ok(())
    }
}

/// Metrics that go nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Publish for Discard {
    async fn publish(&self, _metrics: Vec<Metric>) -> Result<(), AwsError> {
        Ok(())
    }
}

/// The autoscaler `shoal simulate` ticks: one target, the simulated service, with the
/// setup's policy settings.
pub fn autoscaler(setup: &Setup) -> Autoscaler {
    Autoscaler::new(
        SIMULATED,
        vec![Target {
            consumer: SIMULATED.to_string(),
            service: SIMULATED.to_string(),
            group: SIMULATED.to_string(),
            topics: vec![SIMULATED.to_string()],
            config: setup.policy_config(),
            dlq_topic: None,
        }],
    )
}

struct Replica {
    /// When it joins the group (its launch + the start-up delay).
    joins_at: u64,
    /// Its commit timer: it commits at the end of second `t` when
    /// `(t + 1 + commit_phase) % commit_interval == 0`.
    commit_phase: u64,
}

/// The simulated group and topic, shared by both policies' runs.
struct World {
    shares: Vec<f64>,
    /// `arrived[s]`: the trace's cumulative messages up to the end of second `s` (partition
    /// `i` has received `shares[i]` of it).
    arrived: Vec<f64>,
    consumed: Vec<f64>,
    committed: Vec<Option<i64>>,
    replicas: Vec<Replica>,
    /// Members at the end of the last second.
    members: u32,
    /// The group consumes nothing before this second (a rebalance).
    paused_until: u64,
}

impl World {
    fn total_arrived(&self) -> f64 {
        self.arrived.last().copied().unwrap_or(0.0)
    }

    fn end_offset(&self, i: usize) -> i64 {
        (self.shares[i] * self.total_arrived() + EPSILON).floor() as i64
    }

    fn backlog(&self, i: usize) -> f64 {
        (self.shares[i] * self.total_arrived() - self.consumed[i]).max(0.0)
    }

    fn joined(&self, t: u64) -> u32 {
        self.replicas.iter().filter(|r| r.joins_at <= t).count() as u32
    }

    /// Commits partition `i`'s consumed offset, if anything was consumed from it.
    fn commit(&mut self, i: usize) {
        let offset = (self.consumed[i] + EPSILON).floor() as i64;
        if offset > 0 || self.committed[i].is_some() {
            self.committed[i] = Some(offset);
        }
    }

    /// What the production reader would read at second `t`.
    fn read(&self, t: u64, source: MemberSource) -> Observation {
        let partitions = (0..self.shares.len())
            .map(|i| PartitionRead {
                end_offset: self.end_offset(i),
                committed_offset: self.committed[i],
                log_start_offset: self.committed[i].is_none().then_some(0),
                read_at: t as f64,
            })
            .collect();
        let members = match source {
            MemberSource::Group | MemberSource::GroupList => Some(Members {
                count: self.joined(t),
                source,
            }),
            MemberSource::Platform => None,
        };
        Observation::one_topic(t as f64, SIMULATED, partitions, members)
    }

    /// The lag KEDA's scaler computes from the same offsets: end − committed, or the end
    /// offset where the group never committed (its lag under `earliest`).
    fn keda_lag(&self) -> f64 {
        (0..self.shares.len())
            .map(|i| {
                let end = self.end_offset(i);
                (end - self.committed[i].unwrap_or(0)).max(0) as f64
            })
            .sum()
    }
}

/// Splits one member's `capacity` for a second over the partitions it owns (`owned`): each
/// gets an even share, a stuck one wastes its share, and what a short queue leaves over goes
/// to the others. Adds what each consumes to `consumed`.
fn serve(world: &mut World, owned: std::ops::Range<usize>, stuck: &[u32], capacity: f64) {
    if owned.is_empty() {
        return;
    }
    let even = capacity / owned.len() as f64;
    let mut live: Vec<(f64, usize)> = owned
        .filter(|&i| !stuck.contains(&(i as u32)))
        .map(|i| (world.backlog(i), i))
        .collect();
    let mut left = even * live.len() as f64;
    live.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = live.len();
    for (k, (need, i)) in live.into_iter().enumerate() {
        let take = need.min(left / (n - k) as f64);
        world.consumed[i] += take;
        left -= take;
    }
}

/// Runs one policy over a trace. The trace must have passed [`Trace::check`] and the setup
/// [`Setup::check`].
pub fn simulate(trace: &Trace, setup: &Setup, which: Which) -> Run {
    let p = setup.partitions as usize;
    let duration = trace.duration();
    let start = setup.min.min(setup.max);
    let commit_every = setup.commit_interval_seconds.max(1);
    let mut world = World {
        shares: setup.shares(trace),
        arrived: Vec::with_capacity(duration as usize),
        consumed: vec![0.0; p],
        committed: vec![None; p],
        replicas: (0..start)
            .map(|_| Replica {
                joins_at: 0,
                commit_phase: commit_every / 2,
            })
            .collect(),
        members: start,
        paused_until: 0,
    };
    let mut keda = Keda::new(
        setup.partitions,
        setup.lag_threshold(),
        setup.min,
        setup.max,
    );
    let mut shoal = autoscaler(setup);
    let mut desired = start;
    let mut run = Run {
        peak_lag_seconds: 0.0,
        p99_lag_seconds: 0.0,
        replica_seconds: 0,
        scale_actions: 0,
        rebalance_seconds: 0,
        timeline: Vec::new(),
        seconds: Vec::with_capacity(duration as usize),
        ticks: Vec::new(),
    };
    for t in 0..duration {
        // Decide at the start of the second, on what has happened so far.
        let next = match which {
            Which::Shoal if t % setup.interval_seconds == 0 => {
                let broker = SimBroker {
                    observation: world.read(t, setup.members),
                };
                let platform = SimPlatform {
                    counts: Counts {
                        desired,
                        running: world.replicas.len() as u32,
                    },
                    set_to: OnceLock::new(),
                };
                // Every simulated answer is ready at once, so the tick completes on its first
                // poll.
                let tick = shoal
                    .tick(&broker, &platform, &Discard, false)
                    .now_or_never();
                if let Some(decision) = tick.and_then(|mut tick| tick.outcomes.pop()) {
                    run.ticks.push(SimTick {
                        observation: broker.observation,
                        counts: platform.counts,
                        decision: decision.decision,
                    });
                }
                platform.set_to.get().copied().unwrap_or(desired)
            }
            Which::Shoal => desired,
            Which::Keda => keda.step(t, world.keda_lag()),
        };
        if next != desired {
            run.scale_actions += 1;
            desired = next;
        }
        while (world.replicas.len() as u32) < desired {
            world.replicas.push(Replica {
                joins_at: t + setup.startup_seconds,
                commit_phase: (commit_every - (t + setup.startup_seconds) % commit_every)
                    % commit_every,
            });
        }
        world.replicas.truncate(desired as usize);

        // A change in the members is a rebalance: every member commits on revocation, and the
        // group pauses.
        let members = world.joined(t);
        if members != world.members {
            for i in 0..p {
                world.commit(i);
            }
            world.paused_until = t + setup.rebalance_seconds;
            world.members = members;
        }

        // Arrivals.
        let total = world.total_arrived() + trace.rate_at(t as f64);
        world.arrived.push(total);
        // Consumption, and each member's commits at the end of the second.
        let stuck = trace.stuck_at(t as f64);
        let paused = t < world.paused_until;
        if paused {
            run.rebalance_seconds += 1;
        }
        let mut first = 0usize;
        let assignment = policy::range_assignment(setup.partitions, members);
        for (m, owned) in assignment.into_iter().enumerate() {
            let range = first..first + owned as usize;
            first += owned as usize;
            if !paused {
                serve(&mut world, range.clone(), stuck, setup.per_replica_rate);
            }
            let phase = world.replicas[m].commit_phase;
            if (t + 1 + phase) % commit_every == 0 {
                for i in range {
                    world.commit(i);
                }
            }
        }
        // Time lag at the end of the second: the oldest unconsumed message arrived in the
        // first second whose curve passes the partition's consumed count.
        let lag = (0..p)
            .filter(|&i| !stuck.contains(&(i as u32)))
            .filter(|&i| world.backlog(i) > EPSILON)
            .map(|i| {
                let (share, done) = (world.shares[i], world.consumed[i]);
                let oldest = world
                    .arrived
                    .partition_point(|&a| share * a <= done + EPSILON)
                    as u64;
                (t + 1 - oldest.min(t)) as f64
            })
            .fold(0.0, f64::max);
        run.replica_seconds += world.replicas.len() as u64;
        run.peak_lag_seconds = run.peak_lag_seconds.max(lag);
        run.seconds.push((lag, desired, members));
        let point = [t, u64::from(desired), u64::from(members)];
        if run
            .timeline
            .last()
            .is_none_or(|last| last[1] != point[1] || last[2] != point[2])
        {
            run.timeline.push(point);
        }
    }
    run.p99_lag_seconds = p99(run.seconds.iter().map(|s| s.0).collect());
    run
}

/// The 99th percentile (nearest rank).
pub fn p99(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64) * 0.99).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(text: &str) -> Result<Trace, TraceError> {
        Trace::parse(Path::new("t.csv"), text)
    }

    #[test]
    fn parses_with_and_without_header_and_interpolates_linearly() {
        let a = trace("t_seconds,produce_rate\n0,100\n10,200\n").expect("parses");
        let b = trace("# comment\n0,100\n\n10,200\n").expect("parses");
        assert_eq!(a.rows.len(), 2);
        assert_eq!(b.rows.len(), 2);
        assert_eq!(a.rate_at(5.0), 150.0);
        assert_eq!(a.rate_at(20.0), 200.0);
        assert_eq!(a.duration(), 10);
    }

    #[test]
    fn a_repeated_time_is_a_step() {
        let t = trace("0,100\n10,100\n10,500\n20,500\n").expect("parses");
        assert_eq!(t.rate_at(9.0), 100.0);
        assert_eq!(t.rate_at(10.0), 500.0);
    }

    #[test]
    fn stuck_column_is_a_step() {
        let t = trace("t,rate,stuck\n0,100,\n10,100,3\n20,100,-\n30,100\n").expect("parses");
        assert_eq!(t.stuck_at(5.0), &[] as &[u32]);
        assert_eq!(t.stuck_at(15.0), &[3]);
        assert_eq!(t.stuck_at(25.0), &[] as &[u32]);
        assert!(t.check(4).is_ok());
        let e = t.check(3).expect_err("partition 3 of 3");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn broken_traces_name_the_line() {
        let cases = [
            ("0,100\n10,abc\n", 2, "produce_rate is not a number"),
            ("0,100\n10,-5\n", 2, "must be a finite number"),
            ("t,r\n10,100\n5,100\n", 3, "before the previous row"),
            ("0,100,1,2\n", 1, "found 4 fields"),
            ("0,100\n9\n", 2, "found 1 field"),
            ("0,1,x\n5,1\n", 1, "stuck must be partition numbers"),
            ("0,100\n", 1, "at least 1 second"),
        ];
        for (text, line, what) in cases {
            let e = trace(text).expect_err(text);
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.to_string().contains(what), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("t.csv:{line}: ")), "{e}");
        }
        assert!(trace("# nothing\n").is_err());
    }

    #[test]
    fn p99_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p99(v), 99.0);
        assert_eq!(p99(vec![5.0]), 5.0);
        assert_eq!(p99(Vec::new()), 0.0);
    }

    fn setup() -> Setup {
        Setup::default()
    }

    #[test]
    fn new_replicas_cost_from_launch_and_serve_after_startup() {
        let t = trace("0,1000\n300,1000\n").expect("parses");
        let run = simulate(&t, &setup(), Which::Shoal);
        let first_change = run.timeline[1];
        // Desired rises before serving does, by the start-up delay.
        let serving_up = run
            .timeline
            .iter()
            .find(|p| p[2] > 1)
            .expect("serving rises");
        assert_eq!(serving_up[0], first_change[0] + 60, "{:?}", run.timeline);
        assert!(run.replica_seconds > 300);
    }

    #[test]
    fn capacity_follows_the_busiest_replica() {
        // 5 replicas on 12 partitions: owners of 3 partitions give each 33.3 msg/s, so 35 msg/s
        // per partition (420 msg/s) builds lag although 5 × 100 > 420.
        let t = trace("0,420\n3600,420\n").expect("parses");
        let mut s = setup();
        s.min = 5;
        s.max = 5;
        let run = simulate(&t, &s, Which::Shoal);
        assert!(run.peak_lag_seconds > 150.0, "{}", run.peak_lag_seconds);
        s.min = 6;
        s.max = 6;
        let run = simulate(&t, &s, Which::Shoal);
        assert!(run.peak_lag_seconds <= 1.0, "{}", run.peak_lag_seconds);
    }
}
