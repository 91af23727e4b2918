//! shoal's scaling policy: a pure function from one tick's offset reads and the state kept
//! between ticks to a desired replica count and the reason for it.
//!
//! It works in time, not messages: arrival rates per partition and the per-replica processing
//! rate are estimated from offset deltas between ticks, and the policy picks the smallest
//! useful replica count that keeps every partition's time lag under `max_lag_seconds`. Until
//! the processing rate has been measured (it can only be measured while replicas are busy) it
//! falls back to a lag-per-replica threshold.

use std::fmt::Write as _;

use crate::manifest::{OffsetReset, Scaling};

pub use crate::kafka::lag::{MemberSource, Members, Observation, PartitionRead, TopicSpan};

/// The policy's settings. [`Config::new`] is the one constructor: it takes the manifest's
/// `[scaling]` bounds, and the `with_*` methods change the defaults it picks for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub min: u32,
    pub max: u32,
    pub max_lag_seconds: f64,
    /// Scale in only after the recommendation has stayed below the current count this long.
    pub scale_in_window_seconds: f64,
    /// A read older than this (relative to the tick) is stale: no change.
    pub stale_after_seconds: f64,
    /// A partition with lag whose committed offset has not moved for this many ticks is stuck.
    pub stuck_ticks: u32,
    /// With `min = 0` and no replicas, scale to one when total lag exceeds this many messages.
    pub activation_lag: u64,
    /// Messages of lag per replica, used until the per-replica rate is known.
    pub fallback_lag_per_replica: f64,
    /// The highest share of a replica's rate a partition's arrivals may take after a
    /// scale-in.
    pub target_utilisation: f64,
    /// The share of `max_lag_seconds` the projected lag may use before scaling out.
    pub lag_budget: f64,
    /// Seconds between ticks: how long until the next decision.
    pub interval_seconds: f64,
    /// Seconds from launching a replica until it consumes.
    pub startup_seconds: f64,
    /// Seconds the whole group is taken to pause for the rebalance each scale action causes
    /// (an eager assignor's; the policy cannot read the assignor, so it budgets for one
    /// either way). A change of count must keep the lag within the budget through it.
    pub rebalance_seconds: f64,
    /// May scale in to the count just below the fewest that keep up, spending the lag budget
    /// there (see [`decide`]); off, it settles at a count that keeps up.
    pub duty_cycle: bool,
    /// Where the group starts on a partition it never committed on (`[kafka] offset_reset`):
    /// where such a partition's lag is counted from.
    pub offset_reset: OffsetReset,
    /// How far ahead a scale-out looks while arrivals keep rising ([`ramp_growth`]): it sizes
    /// the new count for the arrivals this many seconds on, so a ramp takes fewer, larger
    /// steps.
    pub ramp_lookahead_seconds: f64,
}

impl Config {
    /// Defaults around the manifest's bounds: a 120 s scale-in window, reads stale after 90 s,
    /// stuck after 3 ticks, activation on any lag, 1000 messages per replica as fallback,
    /// 95 % utilisation after a scale-in, 70 % of the lag target as budget, 30 s ticks, a
    /// 60 s start-up and a 10 s rebalance.
    pub fn new(scaling: Scaling) -> Config {
        Config {
            min: scaling.min,
            max: scaling.max,
            max_lag_seconds: scaling.max_lag_seconds,
            scale_in_window_seconds: 120.0,
            stale_after_seconds: 90.0,
            stuck_ticks: 3,
            activation_lag: 0,
            fallback_lag_per_replica: 1000.0,
            target_utilisation: 0.95,
            lag_budget: 0.7,
            interval_seconds: 30.0,
            startup_seconds: 60.0,
            rebalance_seconds: 10.0,
            duty_cycle: scaling.duty_cycle,
            offset_reset: OffsetReset::Earliest,
            ramp_lookahead_seconds: RAMP_LOOKAHEAD_SECONDS,
        }
    }

    /// The same settings for a group that starts from `reset` where it never committed.
    #[must_use]
    pub fn with_offset_reset(self, reset: OffsetReset) -> Config {
        Config {
            offset_reset: reset,
            ..self
        }
    }

    /// The same settings with `seconds` between ticks.
    #[must_use]
    pub fn with_interval_seconds(self, seconds: f64) -> Config {
        Config {
            interval_seconds: seconds,
            ..self
        }
    }

    /// The same settings with a scale-in window of `seconds`.
    #[must_use]
    pub fn with_scale_in_window_seconds(self, seconds: f64) -> Config {
        Config {
            scale_in_window_seconds: seconds,
            ..self
        }
    }

    /// The same settings with reads stale after `seconds`.
    #[must_use]
    pub fn with_stale_after_seconds(self, seconds: f64) -> Config {
        Config {
            stale_after_seconds: seconds,
            ..self
        }
    }

    /// The same settings with `messages` of lag per replica as the fallback.
    #[must_use]
    pub fn with_fallback_lag_per_replica(self, messages: f64) -> Config {
        Config {
            fallback_lag_per_replica: messages,
            ..self
        }
    }

    /// The same settings with replicas consuming `seconds` after their launch.
    #[must_use]
    pub fn with_startup_seconds(self, seconds: f64) -> Config {
        Config {
            startup_seconds: seconds,
            ..self
        }
    }
}

/// What the policy remembers between ticks. Start with [`State::new`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// The replica count last decided.
    pub current: u32,
    /// The last good observation.
    pub prev: Option<Observation>,
    /// Arrival rate per partition (messages per second) over the last interval.
    pub arrival: Option<Vec<f64>>,
    /// Measured processing rate of one replica (messages per second).
    pub per_replica_rate: Option<f64>,
    /// Consecutive ticks each partition had lag and an unmoved committed offset.
    pub unmoved_ticks: Vec<u32>,
    /// Since when the recommendation has been below `current`, and the highest one since.
    pub below_since: Option<(f64, u32)>,
    /// When the policy last scaled out (its new replicas may still be starting).
    pub scaled_out_at: Option<f64>,
    /// When the policy last changed the count, either way.
    pub changed_at: Option<f64>,
    /// The end offset of each partition at the first read (see [`first_end_offsets`]).
    pub first_end: Vec<i64>,
    /// The live arrival totals of the last [`RAMP_READS`] intervals, with the time of the
    /// read that ended each, oldest first ([`ramp_growth`]).
    pub arrivals: Vec<(f64, f64)>,
}

impl State {
    pub fn new(current: u32) -> State {
        State {
            current,
            ..State::default()
        }
    }

    /// The same memory, starting from the count the platform reports now. A count changed
    /// behind the policy's back (a deploy, a person) restarts the scale-in window.
    #[must_use]
    pub fn with_current(self, current: u32) -> State {
        if current == self.current {
            return self;
        }
        State {
            current,
            below_since: None,
            ..self
        }
    }
}

/// The outcome of one tick.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    pub desired: u32,
    /// Whether `desired` differs from the count before this tick.
    pub changed: bool,
    pub reason: String,
    /// Total lag in messages over the partitions that are not stuck.
    pub lag: u64,
    /// The highest estimated time lag over the partitions that are not stuck, when rates are
    /// known.
    pub lag_seconds: Option<f64>,
    /// Partitions reported stuck: lag, and a committed offset that does not move.
    pub stuck: Vec<u32>,
}

/// How a group's partitions lie over its topics. Kafka's range assignor splits each topic on
/// its own: with `n` members, member `m` gets the `m`-th range of every topic, and the first
/// `p % n` members get one partition more of a topic with `p` partitions. So member 0 is the
/// busiest, and members beyond the largest topic's partition count own nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Partitions per topic, in the order of [`Observation::partitions`].
    sizes: Vec<u32>,
}

impl Layout {
    /// One topic of `p` partitions.
    pub fn one(p: u32) -> Layout {
        Layout { sizes: vec![p] }
    }

    /// The read's topics; one topic of all its partitions when they do not add up.
    pub fn of(obs: &Observation) -> Layout {
        let p = obs.partitions.len() as u32;
        let sizes: Vec<u32> = obs.topics.iter().map(|t| t.partitions).collect();
        if sizes.is_empty() || sizes.iter().sum::<u32>() != p {
            return Layout::one(p);
        }
        Layout { sizes }
    }

    /// All partitions, over every topic.
    pub fn partitions(&self) -> u32 {
        self.sizes.iter().sum()
    }

    /// The most members that can own a partition: the largest topic's partition count.
    pub fn most_members(&self) -> u32 {
        self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Each member's partitions (indices into the read's partitions) under the range
    /// assignor with `n` members, in member order.
    pub fn assignment(&self, n: u32) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); n as usize];
        let mut first = 0usize;
        for &p in &self.sizes {
            let mut start = first;
            for (m, owned) in range_assignment(p, n).into_iter().enumerate() {
                members[m].extend(start..start + owned as usize);
                start += owned as usize;
            }
            first += p as usize;
        }
        members
    }

    /// `owner_share(n)[i]`: how many partitions the owner of partition `i` owns, over every
    /// topic, with `n` members (0 each with none).
    pub fn owner_share(&self, n: u32) -> Vec<u32> {
        let mut out = vec![0; self.partitions() as usize];
        for owned in self.assignment(n) {
            for &i in &owned {
                out[i] = owned.len() as u32;
            }
        }
        out
    }

    /// Replica counts worth paying for: those where the busiest member's share (the sum over
    /// topics of ceil(p/n)) drops. For one topic of 12 partitions: 1, 2, 3, 4, 6, 12.
    pub fn useful_counts(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut last = u32::MAX;
        for n in 1..=self.most_members() {
            let k: u32 = self.sizes.iter().map(|p| p.div_ceil(n)).sum();
            if k < last {
                out.push(n);
                last = k;
            }
        }
        out
    }
}

/// [`Layout::useful_counts`] of one topic with `p` partitions.
pub fn useful_counts(p: u32) -> Vec<u32> {
    Layout::one(p).useful_counts()
}

/// [`Layout::owner_share`] of one topic with `p` partitions: the first `p % n` members own one
/// more.
pub fn owner_share(p: u32, n: u32) -> Vec<u32> {
    Layout::one(p).owner_share(n)
}

/// Partitions per member under the range assignor on one topic, in member order.
pub fn range_assignment(p: u32, n: u32) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    (0..n).map(|i| p / n + u32::from(i < p % n)).collect()
}

/// Decides one tick. `obs` is `None` when the lag could not be read.
///
/// The steps, in order: [`check_read`] (fail static on a missing, empty or stale read),
/// [`partition_lag`], [`find_stuck`], [`measure_rates`], [`recommend`], then
/// [`activate_from_zero`] or [`apply_scale_in_window`], and last the [`Bounds`].
pub fn decide(cfg: &Config, state: &State, obs: Option<&Observation>) -> (Decision, State) {
    let current = state.current;
    let obs = match check_read(cfg, current, obs) {
        Ok(obs) => obs,
        Err(reason) => return hold_within_bounds(cfg, state, reason),
    };
    let layout = Layout::of(obs);
    let first_end = first_end_offsets(state, obs);
    let lag = partition_lag(cfg, obs, &first_end);
    let prev = comparable_prev(state, obs);
    let stuck = find_stuck(cfg, prev, obs, &lag, &state.unmoved_ticks);
    let mut rates = measure_rates(
        prev,
        obs,
        &layout,
        &lag,
        &stuck.unmoved_ticks,
        state.per_replica_rate,
    );
    if state.per_replica_rate.is_some()
        && prev.is_some_and(|prev| disturbed_between(cfg, state, obs, prev.at))
    {
        rates.per_replica = state.per_replica_rate;
    }
    let bounds = Bounds::new(cfg, &layout);
    let rec = recommend(cfg, state, obs, &lag, &stuck.partitions, &rates, &bounds);
    let arrivals = arrival_history(state, obs, &rates, &stuck.partitions);

    let mut reason = rec.reason;
    if let Some(m) = obs.members {
        let _ = write!(
            reason,
            " [{} member(s) from {}]",
            m.count,
            m.source.described()
        );
    }
    if !stuck.partitions.is_empty() {
        let _ = write!(
            reason,
            "; not scaling for stuck partitions {:?}",
            stuck.partitions
        );
    }
    let step = if current == 0 {
        activate_from_zero(cfg, rec.lag, rec.count, &bounds)
    } else {
        apply_scale_in_window(cfg, current, state.below_since, obs.at, rec.count)
    };
    reason.push_str(&step.note);
    let desired = step.desired.clamp(bounds.lo, bounds.hi);
    if desired != step.desired {
        let _ = write!(reason, "; kept within the manifest's bounds: {desired}");
    }

    let next = State {
        current: desired,
        prev: Some(obs.clone()),
        arrival: rates.arrival,
        per_replica_rate: rates.per_replica,
        unmoved_ticks: stuck.unmoved_ticks,
        below_since: step.below_since,
        scaled_out_at: if desired > current {
            Some(obs.at)
        } else {
            state.scaled_out_at
        },
        changed_at: if desired != current {
            Some(obs.at)
        } else {
            state.changed_at
        },
        first_end,
        arrivals,
    };
    let decision = Decision {
        desired,
        changed: desired != current,
        reason,
        lag: rec.lag,
        lag_seconds: rec.lag_seconds,
        stuck: stuck.partitions,
    };
    (decision, next)
}

/// A tick with no read to decide on keeps the current count, unless it is outside the
/// manifest's bounds (a person or a deploy set it so): then the nearest bound, which needs no
/// read.
fn hold_within_bounds(cfg: &Config, state: &State, reason: String) -> (Decision, State) {
    let current = state.current;
    let desired = current.clamp(cfg.min, cfg.max.max(cfg.min));
    if desired == current {
        return (Decision::hold(current, reason), state.clone());
    }
    let mut decision = Decision::hold(desired, reason);
    decision.changed = true;
    let _ = write!(
        decision.reason,
        "; but {current} is outside the manifest's bounds {}..={}: setting {desired}",
        cfg.min, cfg.max
    );
    let next = State {
        current: desired,
        below_since: None,
        ..state.clone()
    };
    (decision, next)
}

/// The end offset each partition had when the policy first read it (kept in
/// [`State::first_end`]), for counting the lag of a partition with no commit under
/// `offset_reset = "latest"`. Starts again when the partition count changes.
fn first_end_offsets(state: &State, obs: &Observation) -> Vec<i64> {
    if state.first_end.len() == obs.partitions.len() {
        state.first_end.clone()
    } else {
        obs.partitions.iter().map(|r| r.end_offset).collect()
    }
}

/// Checks that a tick's read can be decided on. Takes the read (`None` when the lag could not
/// be read) and the current count; returns the read, or the reason the tick keeps `current`:
/// no read, no partitions, or a partition read more than `stale_after_seconds` before the
/// tick (or at a time that is not a number).
fn check_read<'a>(
    cfg: &Config,
    current: u32,
    obs: Option<&'a Observation>,
) -> Result<&'a Observation, String> {
    let Some(obs) = obs else {
        return Err(format!(
            "no lag reading this tick: keeping {current} (fail static)"
        ));
    };
    if obs.partitions.is_empty() {
        return Err(format!(
            "the read returned no partitions: keeping {current} (fail static)"
        ));
    }
    if let Some(old) = obs
        .partitions
        .iter()
        .map(|r| obs.at - r.read_at)
        .filter(|age| !age.is_finite() || *age > cfg.stale_after_seconds)
        .reduce(f64::max)
    {
        return Err(format!(
            "offsets read {old:.0}s ago (stale after {:.0}s): keeping {current} (fail static)",
            cfg.stale_after_seconds
        ));
    }
    Ok(obs)
}

impl Decision {
    /// The decision of a tick that keeps `current` for `reason`, with no figures.
    pub fn hold(current: u32, reason: String) -> Decision {
        Decision {
            desired: current,
            changed: false,
            reason,
            lag: 0,
            lag_seconds: None,
            stuck: Vec::new(),
        }
    }
}

/// Each partition's lag in messages: its end offset less its committed offset, never below
/// 0. A partition the group never committed on starts where its `offset_reset` says: from the
/// log-start offset under `earliest` (0 when the read has none), from the end offset the
/// policy first saw (`first_end`) under `latest`. Its lag counts like any other, so a group
/// scaled to zero that never committed still activates when messages arrive.
fn partition_lag(cfg: &Config, obs: &Observation, first_end: &[i64]) -> Vec<u64> {
    obs.partitions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let from = match (r.committed_offset, cfg.offset_reset) {
                (Some(c), _) => c,
                (None, OffsetReset::Earliest) => r.log_start_offset.unwrap_or(0),
                (None, OffsetReset::Latest) => first_end.get(i).copied().unwrap_or(r.end_offset),
            };
            u64::try_from(r.end_offset.saturating_sub(from)).unwrap_or(0)
        })
        .collect()
}

/// The last good read from `state`, when deltas can be taken against it: it has as many
/// partitions as `obs` and was read before it. `None` otherwise.
fn comparable_prev<'a>(state: &'a State, obs: &Observation) -> Option<&'a Observation> {
    state
        .prev
        .as_ref()
        .filter(|prev| prev.partitions.len() == obs.partitions.len() && obs.at - prev.at > 0.0)
}

/// Messages a partition's committed offset moved on between two reads: 0 unless both reads
/// have one, and never below 0.
fn committed_delta(now: &PartitionRead, before: &PartitionRead) -> i64 {
    match (now.committed_offset, before.committed_offset) {
        (Some(a), Some(b)) => a.saturating_sub(b).max(0),
        _ => 0,
    }
}

/// Whether a change of count the policy made may have disturbed the group between `from`
/// and this read: a scale-in's rebalance (taken to last `rebalance_seconds` from the change),
/// or a scale-out's rebalance when its replicas join, a start-up later. With members that do
/// not come from the group (the platform's running count includes replicas still starting),
/// the whole start-up too. What the members committed over such an interval understates
/// their rate, so once a rate is known none is measured from it (the first estimate takes
/// what it can: an underestimate errs towards more replicas).
fn disturbed_between(cfg: &Config, state: &State, obs: &Observation, from: f64) -> bool {
    let rebalance = cfg.rebalance_seconds.max(0.0);
    let overlaps = |start: f64, end: f64| start < obs.at && end > from;
    let from_group = obs.members.is_some_and(|m| m.source.joined());
    let scaled_out = state.scaled_out_at;
    let scaled_in = state.changed_at.filter(|&at| Some(at) != scaled_out);
    let joined = |at: f64| at + cfg.startup_seconds;
    scaled_out.is_some_and(|at| {
        let start = if from_group { joined(at) } else { at };
        overlaps(start, joined(at) + rebalance)
    }) || scaled_in.is_some_and(|at| overlaps(at, at + rebalance))
}

/// What [`find_stuck`] finds.
#[derive(Debug, Clone, PartialEq)]
struct Stuck {
    /// Consecutive ticks each partition had lag and an unmoved committed offset (kept in
    /// [`State::unmoved_ticks`]).
    unmoved_ticks: Vec<u32>,
    /// The partitions unmoved for `stuck_ticks` ticks or more, in order.
    partitions: Vec<u32>,
}

/// Finds stuck partitions: lag with a committed offset that does not move. Takes the
/// comparable previous read (see [`comparable_prev`]), this read, each partition's lag and
/// the unmoved-tick counts from the last tick. A partition's count goes up by one on a tick
/// where it has lag, the group has members, and its committed offset (which the previous read
/// had too) did not move; otherwise, and for every partition when there is no previous read,
/// it is 0. Returns the new counts and the partitions whose count has reached `stuck_ticks`
/// (at least 1).
fn find_stuck(
    cfg: &Config,
    prev: Option<&Observation>,
    obs: &Observation,
    lag: &[u64],
    unmoved_before: &[u32],
) -> Stuck {
    let consumers = obs.member_count().unwrap_or(0);
    let unmoved_ticks: Vec<u32> = match prev {
        Some(prev) => obs
            .partitions
            .iter()
            .zip(&prev.partitions)
            .enumerate()
            .map(|(i, (now, before))| {
                let unmoved = lag[i] > 0
                    && consumers > 0
                    && before.committed_offset.is_some()
                    && committed_delta(now, before) == 0;
                if unmoved {
                    unmoved_before.get(i).copied().unwrap_or(0) + 1
                } else {
                    0
                }
            })
            .collect(),
        None => vec![0; obs.partitions.len()],
    };
    let partitions = (0..obs.partitions.len() as u32)
        .filter(|&i| unmoved_ticks[i as usize] >= cfg.stuck_ticks.max(1))
        .collect();
    Stuck {
        unmoved_ticks,
        partitions,
    }
}

/// What [`measure_rates`] measures.
#[derive(Debug, Clone, PartialEq)]
struct Rates {
    /// Messages per second that arrived on each partition over the interval; `None` without
    /// a previous read.
    arrival: Option<Vec<f64>>,
    /// Messages per second one replica processes: the known rate averaged with this
    /// interval's measurement, or the known rate when nothing could be measured.
    per_replica: Option<f64>,
}

/// Seconds of arrivals a partition's lag must exceed for its member to count as busy: twice
/// librdkafka's default auto-commit interval (5 s). Committed offsets trail what a member has
/// processed by up to a commit interval, so a member that keeps up always shows some lag; only
/// more than that says it is behind.
pub const BUSY_LAG_SECONDS: f64 = 10.0;

/// Measures rates from the offset deltas since the previous read. Takes the comparable
/// previous read (see [`comparable_prev`]), this read, each partition's lag, the unmoved-tick
/// counts from [`find_stuck`] and the per-replica rate known so far.
///
/// Arrivals are each partition's end-offset delta over the interval. A member's rate is what
/// it committed over the interval, counted only when it was busy: the same members at both
/// reads (until there is a first estimate, an interval in which members joined counts too, as
/// if the most members had served all along), every partition it owns under the range
/// assignor not unmoved and committed at both reads or at neither, and one of them committed at both reads and behind by more than
/// [`BUSY_LAG_SECONDS`] of its arrivals at both (until there is a first estimate, behind at
/// this one will do): a member polls all its partitions, so one that stays behind keeps it
/// busy (a hot partition among quiet ones too). Either way an underestimate, which errs
/// towards more replicas. The busy members' mean is averaged with the known rate.
fn measure_rates(
    prev: Option<&Observation>,
    obs: &Observation,
    layout: &Layout,
    lag: &[u64],
    unmoved_ticks: &[u32],
    known: Option<f64>,
) -> Rates {
    let Some(prev) = prev else {
        return Rates {
            arrival: None,
            per_replica: known,
        };
    };
    let p = obs.partitions.len() as u32;
    let dt = obs.at - prev.at;
    let mut arrival = Vec::with_capacity(p as usize);
    let mut consumed = Vec::with_capacity(p as usize);
    for (now, before) in obs.partitions.iter().zip(&prev.partitions) {
        arrival.push(now.end_offset.saturating_sub(before.end_offset).max(0) as f64 / dt);
        consumed.push(committed_delta(now, before) as f64 / dt);
    }

    let consumers = obs.member_count().unwrap_or(0);
    let first = known.is_none();
    let members = match prev.member_count() {
        Some(before) if before == consumers => Some(consumers),
        Some(before) if first => Some(consumers.max(before)),
        _ => None,
    };
    let mut per_replica = known;
    if let Some(members) = members.filter(|&m| m > 0) {
        let mut rates = Vec::new();
        for owned in layout.assignment(members) {
            // A member polls every partition it owns, so one partition that stays behind
            // keeps it busy all interval: what it committed over all of them is its rate.
            // A partition behind by no more than a commit interval's arrivals says nothing (a
            // member that keeps up still shows the lag of its last commit), an unmoved one
            // wastes its share, and a first commit in the interval hides what was consumed.
            let busy = !owned.is_empty()
                && owned.iter().all(|&i| {
                    unmoved_ticks[i] == 0
                        && prev.partitions[i].committed_offset.is_some()
                            == obs.partitions[i].committed_offset.is_some()
                })
                && owned.iter().any(|&i| {
                    let before = &prev.partitions[i];
                    let now = &obs.partitions[i];
                    let behind = |r: &PartitionRead| {
                        r.committed_offset.is_some_and(|c| {
                            r.end_offset.saturating_sub(c) as f64 > arrival[i] * BUSY_LAG_SECONDS
                        })
                    };
                    before.committed_offset.is_some()
                        && (behind(before) || first)
                        && behind(now)
                        && lag[i] > 0
                });
            if busy {
                rates.push(owned.iter().map(|&i| consumed[i]).sum::<f64>());
            }
        }
        if !rates.is_empty() {
            let measured = rates.iter().sum::<f64>() / rates.len() as f64;
            per_replica = Some(match known {
                Some(old) => (old + measured) / 2.0,
                None => measured,
            });
        }
    }
    Rates {
        arrival: Some(arrival),
        per_replica,
    }
}

/// The replica counts a tick may pick from.
#[derive(Debug, Clone, PartialEq)]
struct Bounds {
    /// The fewest: the manifest's `min`, always.
    lo: u32,
    /// The most: `max`, but no more than can own a partition ([`Layout::most_members`]) and
    /// never below `min`.
    hi: u32,
    /// [`Layout::useful_counts`].
    counts: Vec<u32>,
}

impl Bounds {
    /// The bounds of `cfg` for the group's `layout`.
    fn new(cfg: &Config, layout: &Layout) -> Bounds {
        Bounds {
            lo: cfg.min,
            hi: cfg.max.min(layout.most_members()).max(cfg.min),
            counts: layout.useful_counts(),
        }
    }

    /// `n` within the bounds, raised to the next useful count (`hi` when there is none); 0
    /// stays 0.
    fn round_up(&self, n: u32) -> u32 {
        let n = n.clamp(self.lo, self.hi);
        if n == 0 {
            return 0;
        }
        self.counts
            .iter()
            .copied()
            .find(|&c| c >= n)
            .unwrap_or(self.hi)
            .clamp(self.lo, self.hi)
    }

    /// The most a count below `current` may be: the next candidate down (see
    /// [`Bounds::candidates`]), or `lo` when there is none.
    fn step_below(&self, current: u32) -> u32 {
        self.candidates()
            .into_iter()
            .filter(|&n| n < current)
            .max()
            .unwrap_or(self.lo)
    }

    /// The counts a rated recommendation tries, fewest first: the useful counts within the
    /// bounds, then `hi` if it is not one, and 0 first when `lo` is 0.
    fn candidates(&self) -> Vec<u32> {
        let mut candidates: Vec<u32> = self
            .counts
            .iter()
            .copied()
            .filter(|&n| n >= self.lo && n <= self.hi)
            .collect();
        if !candidates.contains(&self.hi) {
            candidates.push(self.hi);
        }
        if self.lo == 0 {
            candidates.insert(0, 0);
        }
        candidates
    }
}

/// What [`recommend`] recommends, before the scale-in window.
#[derive(Debug, Clone, PartialEq)]
struct Recommendation {
    count: u32,
    /// Total lag in messages over the partitions that are not stuck.
    lag: u64,
    /// The highest time lag over the partitions that are not stuck, when rates are known.
    lag_seconds: Option<f64>,
    /// Why, the start of the decision's reason.
    reason: String,
}

/// Whether partition `i` is live: not among the `stuck` ones.
fn is_live(stuck: &[u32], i: usize) -> bool {
    !stuck.contains(&(i as u32))
}

/// Total lag over the live partitions.
fn live_lag(lag: &[u64], stuck: &[u32]) -> u64 {
    (0..lag.len())
        .filter(|&i| is_live(stuck, i))
        .map(|i| lag[i])
        .sum()
}

/// Total arrival rate over the live partitions, summed in partition order.
fn live_arrival(arrival: &[f64], stuck: &[u32]) -> f64 {
    (0..arrival.len())
        .filter(|&i| is_live(stuck, i))
        .map(|i| arrival[i])
        .sum()
}

/// How many intervals' arrival totals [`ramp_growth`] looks at.
pub const RAMP_READS: usize = 4;

/// The default of [`Config::ramp_lookahead_seconds`]: five minutes.
pub const RAMP_LOOKAHEAD_SECONDS: f64 = 300.0;

/// The most [`ramp_growth`] sizes a scale-out for: twice the arrivals now.
const RAMP_MOST: f64 = 2.0;

/// How much the arrivals must rise over the [`RAMP_READS`] intervals, as a share of the first,
/// to be a ramp rather than noise (four reads in a row that each rise a little happen by
/// chance under steady traffic).
const RAMP_MIN_RISE: f64 = 0.1;

/// How far [`ramp_growth`] looks ahead at the most, in spans of the reads it fits: a ramp
/// seen over four 2 s ticks is not carried five minutes on.
const RAMP_SPANS_AHEAD: f64 = 4.0;

/// The state's arrival totals with this interval's added (live partitions only), the last
/// [`RAMP_READS`] of them. An interval with no arrivals measured adds nothing.
fn arrival_history(
    state: &State,
    obs: &Observation,
    rates: &Rates,
    stuck: &[u32],
) -> Vec<(f64, f64)> {
    let mut history = state.arrivals.clone();
    if let Some(arrival) = &rates.arrival {
        history.push((obs.at, live_arrival(arrival, stuck)));
    }
    let extra = history.len().saturating_sub(RAMP_READS);
    history.drain(..extra);
    history
}

/// How much the arrivals a recommendation sizes for exceed the arrivals now, while they ramp: with
/// [`RAMP_READS`] intervals each above the one before, and the last at least
/// [`RAMP_MIN_RISE`] above the first, their least-squares slope carried
/// `ramp_lookahead_seconds` ahead (no more than [`RAMP_SPANS_AHEAD`] times the span of the
/// reads), as a factor of the arrivals now (at most [`RAMP_MOST`]). 1 otherwise: a single jump
/// is a step, not a ramp, and falling arrivals never size a count down (scale-ins wait for
/// the arrivals themselves).
fn ramp_growth(cfg: &Config, arrivals: &[(f64, f64)]) -> f64 {
    if arrivals.len() < RAMP_READS || cfg.ramp_lookahead_seconds <= 0.0 {
        return 1.0;
    }
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    if !arrivals.windows(2).all(|w| w[1].1 > w[0].1) || last.1 - first.1 < RAMP_MIN_RISE * first.1 {
        return 1.0;
    }
    let n = arrivals.len() as f64;
    let mean_t = arrivals.iter().map(|a| a.0).sum::<f64>() / n;
    let mean_a = arrivals.iter().map(|a| a.1).sum::<f64>() / n;
    let sxx: f64 = arrivals.iter().map(|a| (a.0 - mean_t).powi(2)).sum();
    if sxx <= 0.0 {
        return 1.0;
    }
    let slope = arrivals
        .iter()
        .map(|a| (a.0 - mean_t) * (a.1 - mean_a))
        .sum::<f64>()
        / sxx;
    let now = arrivals.last().map_or(0.0, |a| a.1);
    if now <= 0.0 || slope <= 0.0 {
        return 1.0;
    }
    let ahead = cfg
        .ramp_lookahead_seconds
        .min(RAMP_SPANS_AHEAD * (last.0 - first.0));
    (1.0 + slope * ahead / now).min(RAMP_MOST)
}

/// Recommends a replica count for this tick, before the scale-in window. Takes the state
/// (the current count, when the policy last scaled out, and since when the recommendation has
/// been below the current count), the read, each partition's lag, the stuck partitions (left
/// out of every figure), the rates and the bounds. With arrivals and a per-replica rate above
/// 0 it is [`recommend_from_rates`], and while arrivals ramp ([`ramp_growth`]) no fewer than
/// the count for the arrivals `ramp_lookahead_seconds` on, so that a ramp takes fewer, larger
/// steps and is not scaled in on the way up; until then [`recommend_from_lag`].
fn recommend(
    cfg: &Config,
    state: &State,
    obs: &Observation,
    lag: &[u64],
    stuck: &[u32],
    rates: &Rates,
    bounds: &Bounds,
) -> Recommendation {
    match (&rates.arrival, rates.per_replica) {
        (Some(arrival), Some(rate)) if rate > 0.0 => {
            let projection = Projection::new(cfg, state, obs, lag, stuck, arrival, rate);
            let rec = recommend_from_rates(&projection, bounds);
            let growth = ramp_growth(cfg, &arrival_history(state, obs, rates, stuck));
            if growth <= 1.0 {
                return rec;
            }
            let ahead: Vec<f64> = arrival.iter().map(|a| a * growth).collect();
            let sized = Projection::new(cfg, state, obs, lag, stuck, &ahead, rate);
            let far = recommend_from_rates(&sized, bounds);
            if far.count <= rec.count {
                return rec;
            }
            let mut reason = rec.reason;
            let _ = write!(
                reason,
                "; arrivals rising: {} replica(s) for {:.1} msg/s in {:.0}s",
                far.count,
                projection.arrival_total * growth,
                cfg.ramp_lookahead_seconds
            );
            Recommendation {
                count: far.count,
                reason,
                ..rec
            }
        }
        _ => recommend_from_lag(
            cfg,
            state.current,
            lag,
            stuck,
            rates.arrival.as_deref(),
            bounds,
        ),
    }
}

/// The fallback until rates are known: total lag over `fallback_lag_per_replica`, rounded up
/// to a useful count within the bounds; 0 only when `lo` is 0 and nothing is behind or
/// arriving. Takes the current count, each partition's lag, the stuck partitions, the arrival
/// rates if known, and the bounds. Without rates no count is known to keep up, so it
/// recommends no fewer than `current` unless the group is idle.
fn recommend_from_lag(
    cfg: &Config,
    current: u32,
    lag: &[u64],
    stuck: &[u32],
    arrival: Option<&[f64]>,
    bounds: &Bounds,
) -> Recommendation {
    let total_lag = live_lag(lag, stuck);
    let arrival_total = arrival.map(|a| live_arrival(a, stuck));
    let lag_seconds = arrival.and_then(|a| lag_at_arrivals(lag, stuck, a));
    let per = cfg.fallback_lag_per_replica.max(1.0);
    let raw = (total_lag as f64 / per).ceil() as u32;
    let idle = total_lag == 0 && arrival_total.is_none_or(|a| a == 0.0);
    let mut count = if raw == 0 && bounds.lo == 0 && idle {
        0
    } else {
        bounds.round_up(raw.max(1))
    };
    let mut reason = format!(
        "rates not known yet: lag {total_lag} at {per:.0} per replica needs {count} replica(s)"
    );
    if count < current && !idle {
        match lag_seconds.filter(|&s| s <= BUSY_LAG_SECONDS) {
            Some(s) => {
                // Every partition is within a commit interval of its arrivals: the group
                // keeps up, and no member is busy enough to measure its rate. One useful count
                // fewer (after the scale-in window) either still keeps up, or makes members
                // busy, which measures the rate.
                count = count.max(bounds.step_below(current));
                let _ = write!(
                    reason,
                    "; the group keeps up (lag {s:.1}s): one count fewer, to {count}"
                );
            }
            None => {
                count = current;
                reason.push_str(", but not scaling in until rates are known");
            }
        }
    }
    Recommendation {
        count,
        lag: total_lag,
        lag_seconds,
        reason,
    }
}

/// The highest time lag over the live partitions at their arrival rates: what the lag's
/// oldest message is behind by, as far as arrivals tell. 0 with no lag; `None` when a live
/// partition with lag has no arrivals (its lag is then not a time).
fn lag_at_arrivals(lag: &[u64], stuck: &[u32], arrival: &[f64]) -> Option<f64> {
    let mut most = 0.0f64;
    for i in (0..lag.len()).filter(|&i| is_live(stuck, i) && lag[i] > 0) {
        let a = arrival.get(i).copied().filter(|&a| a > 0.0)?;
        most = most.max(lag[i] as f64 / a);
    }
    Some(most)
}

/// The fewest candidate count (see [`Bounds::candidates`]) that [`Projection::fits`]; when
/// none does, the fewest above 0 that [`Projection::drains`]; rounded up to a useful count,
/// or `hi` when none does either. Takes the projection of this tick and the bounds.
fn recommend_from_rates(projection: &Projection, bounds: &Bounds) -> Recommendation {
    let lag_seconds = projection.lag_seconds();
    let candidates = bounds.candidates();
    let duty_low = projection.duty_low(&candidates);
    let count = candidates
        .iter()
        .copied()
        .find(|&n| projection.fits(n, duty_low))
        .or_else(|| {
            candidates
                .iter()
                .copied()
                .find(|&n| n > 0 && projection.drains(n))
        })
        .map_or(bounds.hi, |n| bounds.round_up(n));
    let reason = format!(
        "arrivals {:.1} msg/s, {:.1} msg/s per replica, lag {} ({lag_seconds:.0}s): {count} replica(s) keep lag under {:.0}s",
        projection.arrival_total, projection.rate, projection.total_lag, projection.cfg.max_lag_seconds
    );
    Recommendation {
        count,
        lag: projection.total_lag,
        lag_seconds: Some(lag_seconds),
        reason,
    }
}

/// One tick's lag and rates, and the counts serving, from which [`recommend_from_rates`]
/// projects each partition's lag under a candidate count.
struct Projection<'a> {
    cfg: &'a Config,
    /// The group's partitions over its topics.
    layout: Layout,
    lag: &'a [u64],
    stuck: &'a [u32],
    arrival: &'a [f64],
    /// Messages per second one replica processes (above 0).
    rate: f64,
    /// Total lag over the live partitions.
    total_lag: u64,
    /// Total arrival rate over the live partitions.
    arrival_total: f64,
    /// The count decided last tick.
    current: u32,
    /// The members serving now (`current` when the read does not say).
    serving: u32,
    /// How the members serving now serve each partition ([`Projection::serve`]).
    now: Served,
    /// How they serve once the replicas launched but not serving yet serve.
    pending: Served,
    /// Seconds from now until the replicas launched but not serving yet start serving.
    pending_for: f64,
    /// Seconds from now until a scale-in could happen (when the window has passed).
    window_left: f64,
    /// Seconds until this tick's decision could take effect: a tick and a start-up.
    horizon: f64,
    /// Seconds of lag a count may reach: `lag_budget` of `max_lag_seconds`.
    budget: f64,
}

impl<'a> Projection<'a> {
    /// The projection of a tick: the state's current count and last scale-out and window, the
    /// read's time and members, each partition's lag, the stuck partitions, the arrival rates
    /// and the per-replica rate.
    fn new(
        cfg: &'a Config,
        state: &State,
        obs: &Observation,
        lag: &'a [u64],
        stuck: &'a [u32],
        arrival: &'a [f64],
        rate: f64,
    ) -> Projection<'a> {
        let layout = Layout::of(obs);
        let current = state.current;
        let serving = obs.member_count().unwrap_or(current);
        let pending_for = match state.scaled_out_at {
            Some(at) if current > serving => (cfg.startup_seconds - (obs.at - at))
                .min(cfg.startup_seconds)
                .max(0.0),
            _ => 0.0,
        };
        let window_left = match state.below_since {
            Some((since, _)) => (cfg.scale_in_window_seconds - (obs.at - since)).max(0.0),
            None => cfg.scale_in_window_seconds,
        };
        let mut projection = Projection {
            cfg,
            layout,
            lag,
            stuck,
            arrival,
            rate,
            total_lag: live_lag(lag, stuck),
            arrival_total: live_arrival(arrival, stuck),
            current,
            serving,
            now: Served::default(),
            pending: Served::default(),
            pending_for,
            window_left,
            horizon: cfg.interval_seconds + cfg.startup_seconds,
            budget: cfg.lag_budget * cfg.max_lag_seconds,
        };
        projection.now = projection.serve(serving);
        projection.pending = projection.serve(current.max(serving));
        projection
    }

    /// How `n` members serve the partitions. Each member owns its partitions under the range
    /// assignor and polls them all (a consumer processes whatever its partitions have), so
    /// its rate is one pool: a stuck partition wastes an even share of it, every live
    /// partition gets up to its arrivals (water-filling: the quiet ones first, the rest split
    /// evenly), and what is left over drains the partitions behind by more than
    /// [`BUSY_LAG_SECONDS`] of their arrivals (all of them when none is). A hot partition
    /// among quiet ones is served at its owner's whole spare rate, not at an even share.
    fn serve(&self, n: u32) -> Served {
        let p = self.lag.len();
        let mut served = Served {
            capacity: vec![0.0; p],
            overloaded: (0..p).map(|i| self.arrival[i] > 0.0).collect(),
        };
        for owned in self.layout.assignment(n) {
            let mut live: Vec<usize> = owned
                .iter()
                .copied()
                .filter(|&i| is_live(self.stuck, i))
                .collect();
            if live.is_empty() {
                continue;
            }
            let pool = self.rate * live.len() as f64 / owned.len() as f64;
            let demand: f64 = live.iter().map(|&i| self.arrival[i]).sum();
            live.sort_by(|&x, &y| self.arrival[x].total_cmp(&self.arrival[y]));
            let mut left = pool;
            for (k, &i) in live.iter().enumerate() {
                let take = self.arrival[i].min(left / (live.len() - k) as f64);
                served.capacity[i] = take;
                served.overloaded[i] = demand > self.cfg.target_utilisation * pool;
                left -= take;
            }
            let behind: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| self.lag[i] as f64 > self.arrival[i] * BUSY_LAG_SECONDS)
                .collect();
            let drained = if behind.is_empty() { &live } else { &behind };
            for &i in drained {
                served.capacity[i] += left / drained.len() as f64;
            }
        }
        served
    }

    /// The live partitions, in order.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.lag.len()).filter(|&i| is_live(self.stuck, i))
    }

    /// The highest time lag over the live partitions: lag over the arrival rate, or over the
    /// per-replica rate where nothing arrives. 0 when nothing is behind.
    fn lag_seconds(&self) -> f64 {
        self.live()
            .filter(|&i| self.lag[i] > 0)
            .map(|i| {
                if self.arrival[i] > 0.0 {
                    self.lag[i] as f64 / self.arrival[i]
                } else {
                    self.lag[i] as f64 / self.rate
                }
            })
            .fold(0.0, f64::max)
    }

    /// Lag (messages) of partition `i` once `n` replicas serve: the replicas serving now
    /// serve until the pending ones start, those until replicas added now start.
    fn after_startup(&self, i: usize, n: u32) -> f64 {
        let mut l = self.lag[i] as f64;
        if n <= self.serving {
            return l;
        }
        l = (l + (self.arrival[i] - self.now.capacity[i]) * self.pending_for).max(0.0);
        if n > self.current.max(self.serving) {
            let rest = self.cfg.startup_seconds - self.pending_for;
            l = (l + (self.arrival[i] - self.pending.capacity[i]) * rest).max(0.0);
        }
        l
    }

    /// Seconds of lag that `messages` are on partition `i`: at its arrival rate, or at `c`,
    /// the rate it is drained, when nothing arrives.
    fn seconds(&self, i: usize, messages: f64, c: f64) -> f64 {
        if messages <= 0.0 {
            0.0
        } else if self.arrival[i] > 0.0 {
            messages / self.arrival[i]
        } else {
            messages / c
        }
    }

    /// Whether `n` replicas keep up with the arrivals on every live partition: no member's
    /// live partitions take more than `target_utilisation` of what it has for them.
    fn sustainable(&self, n: u32) -> bool {
        n > 0 && {
            let served = self.serve(n);
            self.live().all(|i| !served.overloaded[i])
        }
    }

    /// The candidate just below the fewest that keep up: the lower end of a duty cycle, the
    /// only count that cannot keep up that a scale-in may go to. `None` when there is none,
    /// it is 0, or the duty cycle is off.
    fn duty_low(&self, candidates: &[u32]) -> Option<u32> {
        candidates
            .iter()
            .position(|&n| self.sustainable(n))
            .and_then(|i| i.checked_sub(1))
            .map(|i| candidates[i])
            .filter(|&n| self.cfg.duty_cycle && n > 0)
    }

    /// Whether `n` replicas keep every live partition's lag within the budget until the next
    /// tick's decision could take effect (0 fits only with no lag and no arrivals). A change
    /// of count adds `rebalance_seconds` of arrivals (the group's pause), and so does staying
    /// at a count that cannot keep up (the scale-out it will need pauses the group too).
    ///
    /// A scale-in to `duty_low`, the count below the fewest that keep up, spends the lag
    /// budget instead (a duty cycle between two useful counts): it fits only when nothing is
    /// pending and the backlog left at the scale-in, growing at the smaller count, stays within
    /// the budget for a whole window more and the time a scale-out takes, with both changes'
    /// pauses, so each count is held at least one window. No other scale-in to a count that cannot keep up fits.
    fn fits(&self, n: u32, duty_low: Option<u32>) -> bool {
        if n == 0 {
            return self.total_lag == 0 && self.arrival_total == 0.0;
        }
        let cfg = self.cfg;
        let served = self.serve(n);
        self.live().all(|i| {
            let c = served.capacity[i];
            let a = self.arrival[i];
            if n < self.current && served.overloaded[i] {
                if duty_low != Some(n) || self.pending_for > 0.0 || self.serving < self.current {
                    return false;
                }
                let at_scale_in =
                    (self.lag[i] as f64 + (a - self.now.capacity[i]) * self.window_left).max(0.0);
                // Two pauses: the scale-in's, and the scale-out's that ends the cycle.
                let peak = at_scale_in
                    + (a - c).max(0.0) * (cfg.scale_in_window_seconds + self.horizon)
                    + 2.0 * a * cfg.rebalance_seconds;
                return self.seconds(i, peak, c) <= self.budget;
            }
            // A change of count pauses the group; so does the scale-out that a count which
            // cannot keep up will need.
            let pause = if n == self.current && !served.overloaded[i] {
                0.0
            } else {
                a * cfg.rebalance_seconds
            };
            let l2 = (self.after_startup(i, n) + (a - c) * self.horizon + pause).max(0.0);
            self.seconds(i, l2, c) <= self.budget
        })
    }

    /// Whether `n` replicas drain every live partition's backlog within `max_lag_seconds`
    /// once the new replicas serve: the fallback when no count fits.
    fn drains(&self, n: u32) -> bool {
        let served = self.serve(n.max(1));
        self.live().all(|i| {
            let c = served.capacity[i];
            let a = self.arrival[i];
            let l1 = self.after_startup(i, n);
            c > a && (l1 <= 0.0 || l1 / (c - a) <= self.cfg.max_lag_seconds)
        })
    }
}

/// How a count of members serves each partition (see [`Projection::serve`]).
#[derive(Debug, Clone, PartialEq, Default)]
struct Served {
    /// Messages per second each partition is processed at.
    capacity: Vec<f64>,
    /// Whether the partition's owner gets more arrivals on its live partitions than
    /// `target_utilisation` of its rate for them (no owner: whether anything arrives).
    overloaded: Vec<bool>,
}

/// Where a tick settles after the recommendation.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// The count to set, before the bounds.
    desired: u32,
    /// The scale-in window to keep: since when the recommendation has been below the current
    /// count, and the highest one since.
    below_since: Option<(f64, u32)>,
    /// What the step adds to the reason.
    note: String,
}

/// From zero replicas: scale to the recommendation, and to at least the fewest useful count,
/// when the total lag (`lag`, over the partitions not stuck) is above `activation_lag`;
/// otherwise stay at zero. Takes the total lag, the recommendation and the bounds; keeps no
/// scale-in window.
fn activate_from_zero(cfg: &Config, lag: u64, rec: u32, bounds: &Bounds) -> Step {
    if lag > cfg.activation_lag {
        Step {
            desired: rec.max(bounds.round_up(1)),
            below_since: None,
            note: format!(
                "; lag above activation {}: scale from zero",
                cfg.activation_lag
            ),
        }
    } else {
        Step {
            desired: 0,
            below_since: None,
            note: String::new(),
        }
    }
}

/// Applies the scale-in window to the recommendation `rec` for a group with `current`
/// replicas (above 0), at time `at`, given the window kept from the last tick (`below_since`).
/// A higher recommendation is taken at once and an equal one is kept; either closes the
/// window. A lower one opens the window or keeps it open, and the highest recommendation
/// since it opened is taken once it has been open `scale_in_window_seconds`; until then
/// `current` is kept. Returns the count, the window to keep, and the words for the reason.
fn apply_scale_in_window(
    cfg: &Config,
    current: u32,
    below_since: Option<(f64, u32)>,
    at: f64,
    rec: u32,
) -> Step {
    match rec.cmp(&current) {
        std::cmp::Ordering::Greater => Step {
            desired: rec,
            below_since: None,
            note: "; scale out at once".to_string(),
        },
        std::cmp::Ordering::Equal => Step {
            desired: current,
            below_since: None,
            note: String::new(),
        },
        std::cmp::Ordering::Less => {
            let (since, highest) = match below_since {
                Some((since, highest)) => (since, highest.max(rec)),
                None => (at, rec),
            };
            if at - since >= cfg.scale_in_window_seconds {
                Step {
                    desired: highest,
                    below_since: None,
                    note: format!(
                        "; below {current} for {:.0}s: scale in to {highest}",
                        at - since
                    ),
                }
            } else {
                Step {
                    desired: current,
                    below_since: Some((since, highest)),
                    note: format!(
                        "; would scale in to {highest}, waiting {:.0}s more",
                        cfg.scale_in_window_seconds - (at - since)
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: u32, max: u32) -> Config {
        Config::new(Scaling {
            min,
            max,
            max_lag_seconds: 60.0,
            duty_cycle: true,
        })
    }

    /// Partitions with these (end, committed) offsets, read at `at`.
    fn obs(at: f64, offsets: &[(i64, i64)], consumers: u32) -> Observation {
        Observation::one_topic(
            at,
            "t",
            offsets
                .iter()
                .map(|&(end, committed)| PartitionRead {
                    end_offset: end,
                    committed_offset: Some(committed),
                    log_start_offset: None,
                    read_at: at,
                })
                .collect(),
            Some(Members {
                count: consumers,
                source: MemberSource::Group,
            }),
        )
    }

    #[test]
    fn useful_counts_are_where_the_busiest_share_drops() {
        assert_eq!(useful_counts(12), vec![1, 2, 3, 4, 6, 12]);
        assert_eq!(useful_counts(24), vec![1, 2, 3, 4, 5, 6, 8, 12, 24]);
        assert_eq!(useful_counts(1), vec![1]);
        assert_eq!(useful_counts(7), vec![1, 2, 3, 4, 7]);
    }

    #[test]
    fn range_assignor_gives_the_first_members_one_more() {
        assert_eq!(range_assignment(12, 5), vec![3, 3, 2, 2, 2]);
        assert_eq!(range_assignment(12, 4), vec![3, 3, 3, 3]);
        assert_eq!(range_assignment(3, 5), vec![1, 1, 1, 0, 0]);
        assert_eq!(owner_share(12, 5), vec![3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2]);
        assert_eq!(owner_share(4, 0), vec![0; 4]);
    }

    #[test]
    fn missing_or_stale_data_changes_nothing() {
        let c = cfg(1, 12);
        let state = State::new(4);
        let (d, next) = decide(&c, &state, None);
        assert_eq!(d.desired, 4);
        assert!(!d.changed);
        assert!(d.reason.contains("fail static"), "{}", d.reason);
        assert_eq!(next, state);

        let mut o = obs(1000.0, &[(100_000, 0); 12], 4);
        o.partitions[3].read_at = 800.0;
        let (d, next) = decide(&c, &state, Some(&o));
        assert_eq!(d.desired, 4);
        assert!(d.reason.contains("stale"), "{}", d.reason);
        assert_eq!(next, state);

        let empty = obs(1000.0, &[], 4);
        assert_eq!(decide(&c, &state, Some(&empty)).0.desired, 4);
    }

    #[test]
    fn falls_back_to_lag_per_replica_until_rates_are_known() {
        let c = cfg(1, 12);
        // 12 partitions × 400 = 4800 messages at 1000 per replica: 5, rounded up to 6.
        let (d, _) = decide(&c, &State::new(1), Some(&obs(0.0, &[(400, 0); 12], 1)));
        assert_eq!(d.desired, 6);
        assert!(d.reason.contains("rates not known"), "{}", d.reason);
        assert!(d.lag_seconds.is_none());
    }

    #[test]
    fn without_rates_a_group_that_keeps_up_steps_down_one_count_per_window() {
        let c = cfg(1, 12);
        // 6 replicas, no lag, 10/s arriving on every partition, so no member is busy and the
        // per-replica rate stays unknown. The group keeps up, so each scale-in window takes
        // it one useful count down (6, 4, 3, 2, 1) rather than holding 6 for ever.
        let mut s = State::new(6);
        let mut counts = vec![6];
        for tick in 0..40i64 {
            let end = tick * 300;
            let o = obs(tick as f64 * 30.0, &[(end, end); 12], s.current);
            let (d, next) = decide(&c, &s, Some(&o));
            if d.changed {
                assert!(d.reason.contains("the group keeps up"), "{}", d.reason);
                counts.push(d.desired);
            }
            s = next;
        }
        assert!(s.per_replica_rate.is_none());
        assert_eq!(counts, vec![6, 4, 3, 2, 1]);
    }

    #[test]
    fn without_rates_a_group_behind_does_not_scale_in() {
        let c = cfg(1, 12);
        // 6 replicas, each partition 15 s of its 10/s behind, and the members unknown, so no
        // rate can be measured: more than a commit interval behind is not "keeps up", and 6
        // stays.
        let mut s = State::new(6);
        for tick in 0..10i64 {
            let end = tick * 300 + 150;
            let mut o = obs(tick as f64 * 30.0, &[(end, end - 150); 12], 6);
            o.members = None;
            let (d, next) = decide(&c, &s, Some(&o));
            assert_eq!(d.desired, 6, "{}", d.reason);
            s = next;
        }
        assert!(s.per_replica_rate.is_none());
    }

    #[test]
    fn measures_rates_and_scales_out_at_once_to_a_useful_count() {
        let c = cfg(1, 12);
        // One busy replica consumed 3000 in 30 s (100/s) while 9000 arrived (300/s).
        let (_, s) = decide(&c, &State::new(1), Some(&obs(0.0, &[(100, 0); 12], 1)));
        let (d, s) = decide(&c, &s, Some(&obs(30.0, &[(850, 250); 12], 1)));
        let rate = s.per_replica_rate.expect("measured");
        assert!((rate - 100.0).abs() < 1e-6, "{rate}");
        assert!(d.changed, "{d:?}");
        assert!(useful_counts(12).contains(&d.desired), "{d:?}");
        // 300/s needs at least 4 replicas (3 partitions each, 33/s per partition).
        assert!(d.desired >= 4, "{d:?}");
        assert!(d.reason.contains("scale out at once"), "{}", d.reason);
    }

    #[test]
    fn scales_in_only_after_the_window() {
        let c = cfg(1, 12);
        let mut s = State::new(6);
        s.per_replica_rate = Some(100.0);
        // 150/s arriving, no lag: 2 replicas keep up; 1 would fall 4.2/s per partition
        // behind, too much to hold for a window within the lag budget.
        let mut end = 0;
        let mut first_change = None;
        for tick in 0..10 {
            let t = f64::from(tick) * 30.0;
            let o = obs(t, &[(end, end); 12], s.current);
            let (d, next) = decide(&c, &s, Some(&o));
            if d.changed && first_change.is_none() {
                first_change = Some((t, d.desired));
            }
            s = next;
            end += 375;
        }
        let (t, n) = first_change.expect("scales in");
        assert_eq!(n, 2);
        // The recommendation is below 6 from the first tick; the window is 120 s.
        assert!(t >= 120.0, "scaled in at {t}");
    }

    /// 250/s on 12 partitions at 100/s per replica: 3 replicas keep up, 2 fall 4.2/s per
    /// partition behind. With no backlog and free rebalances 2 can run for a window and a
    /// scale-out's time within a budget of 80 % of the target (48 s), so it scales in to 2
    /// after the window; with a backlog, with the cycle's rebalances to pay, or with the duty
    /// cycle off it stays at 3.
    #[test]
    fn a_duty_cycle_spends_the_lag_budget_at_the_count_below() {
        let run = |c: &Config, backlog: i64| {
            let mut s = State::new(3);
            s.per_replica_rate = Some(100.0);
            s.prev = Some(obs(-30.0, &[(10_000, 10_000 - backlog); 12], 3));
            let mut out = Vec::new();
            for tick in 0..6i64 {
                let end = 10_000 + (tick + 1) * 625;
                let o = obs(tick as f64 * 30.0, &[(end, end - backlog); 12], 3);
                let (d, next) = decide(c, &s, Some(&o));
                s = next;
                out.push(d);
                if s.current != 3 {
                    break;
                }
            }
            out
        };
        // With free rebalances (cooperative-sticky) and 80 % of the target as budget.
        let c = Config {
            rebalance_seconds: 0.0,
            lag_budget: 0.8,
            ..cfg(1, 12)
        };
        let idle = run(&c, 0);
        let last = idle.last().expect("decided");
        assert_eq!(last.desired, 2, "{last:?}");
        assert!(last.reason.contains("scale in to 2"), "{}", last.reason);
        assert!(idle.len() >= 5, "scaled in before the window: {idle:?}");

        // With the default 10 s rebalance for each of the cycle's two changes, the cycle
        // does not pay: 3 is where it stays.
        let paid = run(&cfg(1, 12), 0);
        assert!(paid.iter().all(|d| d.desired == 3), "{paid:?}");

        // 1000 behind on every partition (48 s): 2 would pass the budget within the window.
        let behind = run(&c, 1000);
        assert!(behind.iter().all(|d| d.desired == 3), "{behind:?}");

        // Off (`duty_cycle = false`), 3 is where it stays.
        let off = Config::new(Scaling {
            min: 1,
            max: 12,
            max_lag_seconds: 60.0,
            duty_cycle: false,
        });
        let steady = run(&off, 0);
        assert!(steady.iter().all(|d| d.desired == 3), "{steady:?}");
    }

    #[test]
    fn a_stuck_partition_is_reported_and_not_scaled_for() {
        let c = cfg(1, 12);
        let mut s = State::new(3);
        s.per_replica_rate = Some(100.0);
        let mut last = None;
        for tick in 0..6i64 {
            let t = tick as f64 * 30.0;
            // 20/s per partition, all consumed, except partition 5: stuck at 0.
            let mut offsets = vec![(tick * 600, tick * 600); 12];
            offsets[5] = (tick * 600, 0);
            let (d, next) = decide(&c, &s, Some(&obs(t, &offsets, 3)));
            s = next;
            last = Some(d);
        }
        let d = last.expect("decided");
        assert_eq!(d.stuck, vec![5]);
        assert_eq!(d.desired, 3, "{d:?}");
        assert!(d.reason.contains("stuck partitions [5]"), "{}", d.reason);
    }

    #[test]
    fn scales_from_zero_on_activation() {
        let c = cfg(0, 12);
        let (d, _) = decide(&c, &State::new(0), Some(&obs(0.0, &[(0, 0); 12], 0)));
        assert_eq!(d.desired, 0);
        let (d, _) = decide(&c, &State::new(0), Some(&obs(0.0, &[(5, 0); 12], 0)));
        assert_eq!(d.desired, 1);
        assert!(d.reason.contains("scale from zero"), "{}", d.reason);
    }

    #[test]
    fn builders_change_one_setting_each() {
        let c = cfg(1, 12)
            .with_interval_seconds(15.0)
            .with_scale_in_window_seconds(300.0)
            .with_stale_after_seconds(45.0)
            .with_fallback_lag_per_replica(6000.0)
            .with_startup_seconds(90.0);
        let mut expected = cfg(1, 12);
        expected.interval_seconds = 15.0;
        expected.scale_in_window_seconds = 300.0;
        expected.stale_after_seconds = 45.0;
        expected.fallback_lag_per_replica = 6000.0;
        expected.startup_seconds = 90.0;
        assert_eq!(c, expected);
    }

    #[test]
    fn check_read_refuses_a_missing_empty_or_stale_read() {
        let c = cfg(1, 12);
        assert_eq!(
            check_read(&c, 4, None),
            Err("no lag reading this tick: keeping 4 (fail static)".to_string())
        );
        assert_eq!(
            check_read(&c, 4, Some(&obs(0.0, &[], 4))),
            Err("the read returned no partitions: keeping 4 (fail static)".to_string())
        );
        let mut o = obs(1000.0, &[(10, 0); 3], 4);
        o.partitions[1].read_at = 800.0;
        o.partitions[2].read_at = 850.0;
        assert_eq!(
            check_read(&c, 4, Some(&o)),
            Err("offsets read 200s ago (stale after 90s): keeping 4 (fail static)".to_string())
        );
        o.partitions[1].read_at = f64::NAN;
        assert!(check_read(&c, 4, Some(&o)).is_err());
        // 90 s old is not yet stale.
        let mut fresh = obs(1000.0, &[(10, 0); 3], 4);
        fresh.partitions[0].read_at = 910.0;
        assert_eq!(check_read(&c, 4, Some(&fresh)), Ok(&fresh));
    }

    /// Each partition's lag under the default settings, with no earlier read.
    fn lag_of(o: &Observation) -> Vec<u64> {
        partition_lag(&cfg(1, 12), o, &first_end_offsets(&State::new(1), o))
    }

    #[test]
    fn lag_is_end_less_committed_and_never_below_zero() {
        let o = obs(0.0, &[(100, 40), (5, 9), (7, 7)], 1);
        assert_eq!(lag_of(&o), vec![60, 0, 0]);
    }

    #[test]
    fn a_partition_never_committed_counts_from_where_the_group_would_start() {
        let mut o = obs(0.0, &[(100, 40)], 1);
        o.partitions.push(PartitionRead {
            end_offset: 1_000,
            committed_offset: None,
            log_start_offset: Some(300),
            read_at: 0.0,
        });
        o.topics[0].partitions = 2;
        // earliest: from the log start.
        assert_eq!(lag_of(&o), vec![60, 700]);
        // latest: from the end first seen, so nothing at first and what arrives after.
        let latest = cfg(1, 12).with_offset_reset(OffsetReset::Latest);
        let (_, state) = decide(&latest, &State::new(1), Some(&o));
        assert_eq!(state.first_end, vec![100, 1_000]);
        let mut later = o.clone();
        later.at = 30.0;
        later.partitions[1].end_offset = 1_250;
        assert_eq!(
            partition_lag(&latest, &later, &first_end_offsets(&state, &later)),
            vec![60, 250]
        );
    }

    #[test]
    fn a_group_at_zero_that_never_committed_activates_when_messages_arrive() {
        let zero = cfg(0, 4);
        let read = |at: f64, end: i64| {
            Observation::one_topic(
                at,
                "t",
                vec![
                    PartitionRead {
                        end_offset: end,
                        committed_offset: None,
                        log_start_offset: Some(0),
                        read_at: at,
                    };
                    2
                ],
                Some(Members {
                    count: 0,
                    source: MemberSource::Platform,
                }),
            )
        };
        let (idle, state) = decide(&zero, &State::new(0), Some(&read(0.0, 0)));
        assert_eq!(idle.desired, 0, "{}", idle.reason);
        let (d, _) = decide(&zero, &state, Some(&read(30.0, 5)));
        assert!(d.desired >= 1 && d.changed, "{}", d.reason);
        assert_eq!(d.lag, 10);
    }

    #[test]
    fn deltas_are_taken_only_against_an_earlier_read_of_the_same_partitions() {
        let o = obs(30.0, &[(10, 0); 2], 1);
        let mut s = State::new(1);
        assert!(comparable_prev(&s, &o).is_none());
        s.prev = Some(obs(0.0, &[(0, 0); 2], 1));
        assert_eq!(comparable_prev(&s, &o), s.prev.as_ref());
        s.prev = Some(obs(30.0, &[(0, 0); 2], 1));
        assert!(comparable_prev(&s, &o).is_none());
        s.prev = Some(obs(0.0, &[(0, 0); 3], 1));
        assert!(comparable_prev(&s, &o).is_none());
    }

    #[test]
    fn a_stuck_partition_is_found_after_exactly_stuck_ticks_unmoved() {
        let c = cfg(1, 12);
        assert_eq!(c.stuck_ticks, 3);
        // Partition 0 has lag and its committed offset stays at 0; partition 1 moves on.
        let mut prev = obs(0.0, &[(100, 0), (100, 0)], 1);
        let mut unmoved = vec![0, 0];
        for tick in 1..=4u32 {
            let end = 100 + i64::from(tick) * 10;
            let o = obs(f64::from(tick) * 30.0, &[(end, 0), (end, end - 5)], 1);
            let found = find_stuck(&c, Some(&prev), &o, &lag_of(&o), &unmoved);
            assert_eq!(found.unmoved_ticks, vec![tick, 0], "tick {tick}");
            let expected: Vec<u32> = if tick >= 3 { vec![0] } else { vec![] };
            assert_eq!(found.partitions, expected, "tick {tick}");
            unmoved = found.unmoved_ticks;
            prev = o;
        }
        // Once it moves, its count starts again.
        let o = obs(150.0, &[(150, 1), (150, 145)], 1);
        let found = find_stuck(&c, Some(&prev), &o, &lag_of(&o), &unmoved);
        assert_eq!(found.unmoved_ticks, vec![0, 0]);
        assert!(found.partitions.is_empty());
        // stuck_ticks = 0 counts as 1.
        let once = Config {
            stuck_ticks: 0,
            ..cfg(1, 12)
        };
        let o = obs(180.0, &[(200, 1), (200, 195)], 1);
        let prev = obs(150.0, &[(150, 1), (150, 145)], 1);
        let found = find_stuck(&once, Some(&prev), &o, &lag_of(&o), &[0, 0]);
        assert_eq!(found.partitions, vec![0]);
    }

    #[test]
    fn an_unmoved_offset_is_not_stuck_without_lag_members_or_an_earlier_commit() {
        let c = cfg(1, 12);
        let prev = obs(0.0, &[(100, 100), (100, 0)], 1);
        // Partition 0 has no lag; partition 1 is behind and unmoved.
        let o = obs(30.0, &[(100, 100), (200, 0)], 1);
        let found = find_stuck(&c, Some(&prev), &o, &lag_of(&o), &[2, 2]);
        assert_eq!(found.unmoved_ticks, vec![0, 3]);
        assert_eq!(found.partitions, vec![1]);
        // No members: nobody to be stuck.
        let o = obs(30.0, &[(100, 100), (200, 0)], 0);
        let found = find_stuck(&c, Some(&prev), &o, &lag_of(&o), &[2, 2]);
        assert_eq!(found.unmoved_ticks, vec![0, 0]);
        // No committed offset at the previous read.
        let mut before = prev.clone();
        before.partitions[1].committed_offset = None;
        let o = obs(30.0, &[(100, 100), (200, 0)], 1);
        let found = find_stuck(&c, Some(&before), &o, &lag_of(&o), &[2, 2]);
        assert_eq!(found.unmoved_ticks, vec![0, 0]);
        // No previous read: every count starts again.
        let found = find_stuck(&c, None, &o, &lag_of(&o), &[5, 5]);
        assert_eq!(found.unmoved_ticks, vec![0, 0]);
        assert!(found.partitions.is_empty());
    }

    #[test]
    fn rates_are_measured_only_from_busy_members() {
        // 4 partitions, 2 members: the first owns 0 and 1, the second 2 and 3.
        let prev = obs(0.0, &[(1000, 0), (1000, 0), (1000, 0), (1000, 0)], 2);
        // The first member's partitions stay behind and move 300 and 600 in 10 s; the second
        // member's partitions both catch up, so its 155/s is not a measure of its rate.
        let o = obs(
            10.0,
            &[(1100, 300), (1200, 600), (1100, 1100), (1100, 1050)],
            2,
        );
        let lag = lag_of(&o);
        let rates = measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0; 4], Some(70.0));
        assert_eq!(rates.arrival, Some(vec![10.0, 20.0, 10.0, 10.0]));
        // The first member measures 30 + 60 = 90/s, averaged with the known 70.
        assert_eq!(rates.per_replica, Some(80.0));
        // One partition that stays behind keeps its member busy (a hot partition): the
        // second member's 110 + 90 = 200/s counts when partition 3 is still 200 behind.
        let hot = obs(
            10.0,
            &[(1100, 300), (1200, 600), (1100, 1100), (1100, 900)],
            2,
        );
        let rates = measure_rates(
            Some(&prev),
            &hot,
            &Layout::of(&hot),
            &lag_of(&hot),
            &[0; 4],
            Some(70.0),
        );
        assert_eq!(rates.per_replica, Some((70.0 + (90.0 + 200.0) / 2.0) / 2.0));

        // An unmoved partition makes its member not busy: nothing measured, 70 kept.
        let rates = measure_rates(
            Some(&prev),
            &o,
            &Layout::of(&o),
            &lag,
            &[1, 0, 0, 0],
            Some(70.0),
        );
        assert_eq!(rates.per_replica, Some(70.0));

        // No previous read: no arrivals, and the known rate as it was.
        let rates = measure_rates(None, &o, &Layout::of(&o), &lag, &[0; 4], Some(70.0));
        assert_eq!(
            rates,
            Rates {
                arrival: None,
                per_replica: Some(70.0)
            }
        );
    }

    #[test]
    fn the_first_rate_counts_members_that_joined_and_lag_at_the_second_read() {
        // No lag at the first read, one member; two members and lag at the second.
        let prev = obs(0.0, &[(100, 100), (100, 100)], 1);
        let o = obs(30.0, &[(400, 250), (400, 160)], 2);
        let lag = lag_of(&o);
        let rates = measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0, 0], None);
        assert_eq!(rates.arrival, Some(vec![10.0, 10.0]));
        // Each member owns one partition: 5/s and 2/s.
        assert_eq!(rates.per_replica, Some(3.5));
        // Once a rate is known, neither counts: nothing new is measured.
        let rates = measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0, 0], Some(9.0));
        assert_eq!(rates.per_replica, Some(9.0));
    }

    #[test]
    fn the_lag_of_a_commit_interval_is_not_busy() {
        // One member keeping up with 10/s on each of two partitions, committing every 5 s:
        // each read finds it up to 5 s of arrivals (50) behind. What it committed is the
        // arrival rate, not its own rate, so nothing is measured.
        let prev = obs(0.0, &[(1000, 960), (1000, 950)], 1);
        let o = obs(30.0, &[(1300, 1270), (1300, 1250)], 1);
        let lag = lag_of(&o);
        assert_eq!(
            measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0, 0], None).per_replica,
            None
        );
        assert_eq!(
            measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0, 0], Some(40.0)).per_replica,
            Some(40.0)
        );
        // More than BUSY_LAG_SECONDS of arrivals behind at both reads: busy, 6/s + 5/s.
        let o = obs(30.0, &[(1300, 1140), (1300, 1100)], 1);
        let prev = obs(0.0, &[(1000, 960), (1000, 950)], 1);
        let lag = lag_of(&o);
        let first =
            measure_rates(Some(&prev), &o, &Layout::of(&o), &lag, &[0, 0], None).per_replica;
        assert_eq!(
            first,
            Some(11.0),
            "the first estimate needs lag at this read only"
        );
        let behind_before = obs(0.0, &[(1000, 800), (1000, 750)], 1);
        let o = obs(30.0, &[(1300, 980), (1300, 900)], 1);
        let lag = lag_of(&o);
        let rates = measure_rates(
            Some(&behind_before),
            &o,
            &Layout::of(&o),
            &lag,
            &[0, 0],
            Some(11.0),
        );
        assert_eq!(rates.per_replica, Some((11.0 + 330.0 / 30.0) / 2.0));
        // A partition first committed during the interval hides what was consumed from it:
        // nothing is measured.
        let mut uncommitted = behind_before.clone();
        uncommitted.partitions[1].committed_offset = None;
        let rates = measure_rates(Some(&uncommitted), &o, &Layout::of(&o), &lag, &[0, 0], None);
        assert_eq!(rates.per_replica, None);
    }

    #[test]
    fn bounds_round_up_to_useful_counts() {
        let b = Bounds::new(&cfg(1, 12), &Layout::one(12));
        assert_eq!((b.lo, b.hi), (1, 12));
        assert_eq!(b.round_up(5), 6);
        assert_eq!(b.round_up(0), 1);
        assert_eq!(b.round_up(40), 12);
        assert_eq!(b.candidates(), vec![1, 2, 3, 4, 6, 12]);

        // max 10 of 12 partitions: 10 is not useful but is the most there may be.
        let b = Bounds::new(&cfg(0, 10), &Layout::one(12));
        assert_eq!((b.lo, b.hi), (0, 10));
        assert_eq!(b.round_up(0), 0);
        assert_eq!(b.round_up(7), 10);
        assert_eq!(b.candidates(), vec![0, 1, 2, 3, 4, 6, 10]);

        // More replicas than partitions are never useful.
        let b = Bounds::new(&cfg(1, 12), &Layout::one(4));
        assert_eq!((b.lo, b.hi), (1, 4));
    }

    #[test]
    fn recommend_falls_back_to_lag_per_replica() {
        let c = cfg(1, 12);
        let b = Bounds::new(&c, &Layout::one(12));
        let lag = vec![400; 12];
        // 4800 messages at 1000 per replica: 5, rounded up to 6.
        let rec = recommend_from_lag(&c, 1, &lag, &[], None, &b);
        assert_eq!(
            rec,
            Recommendation {
                count: 6,
                lag: 4800,
                lag_seconds: None,
                reason: "rates not known yet: lag 4800 at 1000 per replica needs 6 replica(s)"
                    .to_string(),
            }
        );
        // Stuck partitions are left out: 4400 needs 5, so 6 again; 1 of them needs 1.
        assert_eq!(recommend_from_lag(&c, 1, &lag, &[0], None, &b).lag, 4400);
        // Messages arriving and 10 s of them behind on every partition: not idle, and not
        // known to keep up, so no scale-in without rates.
        let arrival = vec![1.0; 12];
        let few = vec![11; 12];
        let rec = recommend_from_lag(&c, 8, &few, &[], Some(&arrival), &b);
        assert_eq!(rec.count, 8);
        assert_eq!(rec.lag_seconds, Some(11.0));
        assert_eq!(
            rec.reason,
            "rates not known yet: lag 132 at 1000 per replica needs 1 replica(s), but not scaling in until rates are known"
        );
        // Within a commit interval of the arrivals everywhere: the group keeps up, and no
        // member is busy enough to measure a rate. One useful count fewer (8 is not one on 12
        // partitions: 6), so that the rest either keep up or become busy and measurable.
        let kept_up = vec![5; 12];
        let rec = recommend_from_lag(&c, 8, &kept_up, &[], Some(&arrival), &b);
        assert_eq!((rec.count, rec.lag_seconds), (6, Some(5.0)));
        assert!(
            rec.reason
                .ends_with("the group keeps up (lag 5.0s): one count fewer, to 6"),
            "{}",
            rec.reason
        );
        let rec = recommend_from_lag(&c, 2, &kept_up, &[], Some(&arrival), &b);
        assert_eq!(rec.count, 1);
        // Lag on a partition with no arrivals is not a time: not known to keep up.
        let mut quiet = arrival.clone();
        quiet[3] = 0.0;
        let rec = recommend_from_lag(&c, 8, &kept_up, &[], Some(&quiet), &b);
        assert_eq!((rec.count, rec.lag_seconds), (8, None));
        // Idle with min 0: none.
        let zero = cfg(0, 12);
        let idle = recommend_from_lag(
            &zero,
            3,
            &[0; 12],
            &[],
            Some(&[0.0; 12]),
            &Bounds::new(&zero, &Layout::one(12)),
        );
        assert_eq!(idle.count, 0);
        // `recommend` takes this path until the per-replica rate is known.
        let rates = Rates {
            arrival: Some(vec![0.0; 12]),
            per_replica: None,
        };
        let o = obs(0.0, &[(400, 0); 12], 1);
        let via = recommend(&c, &State::new(1), &o, &lag, &[], &rates, &b);
        assert_eq!(via.count, 6);
    }

    /// 250/s on 12 partitions at 100/s per replica, no lag, 3 serving: 3 keep up, 2 do not
    /// (4.2/s per partition behind) but, with rebalances of `rebalance_seconds`, may run a
    /// window and a scale-out within a budget of 80 % of the target.
    fn steady_250(duty_cycle: bool, rebalance_seconds: f64) -> Recommendation {
        let c = Config {
            rebalance_seconds,
            lag_budget: 0.8,
            ..Config::new(Scaling {
                min: 1,
                max: 12,
                max_lag_seconds: 60.0,
                duty_cycle,
            })
        };
        let o = obs(0.0, &[(1000, 1000); 12], 3);
        let rates = Rates {
            arrival: Some(vec![250.0 / 12.0; 12]),
            per_replica: Some(100.0),
        };
        let b = Bounds::new(&c, &Layout::one(12));
        recommend(&c, &State::new(3), &o, &[0; 12], &[], &rates, &b)
    }

    #[test]
    fn ramp_growth_needs_four_rising_intervals_and_is_capped() {
        let c = cfg(1, 12);
        let rising = [(0.0, 100.0), (30.0, 110.0), (60.0, 120.0), (90.0, 130.0)];
        // 1/3 msg/s per second, 300 s ahead: 100 more than the 130 now.
        assert!((ramp_growth(&c, &rising) - 230.0 / 130.0).abs() < 1e-9);
        assert_eq!(
            ramp_growth(&c, &rising[1..]),
            1.0,
            "three intervals are not a ramp"
        );
        let step = [(0.0, 100.0), (30.0, 100.0), (60.0, 100.0), (90.0, 400.0)];
        assert_eq!(ramp_growth(&c, &step), 1.0, "a step is not a ramp");
        let falling = [(0.0, 130.0), (30.0, 120.0), (60.0, 110.0), (90.0, 100.0)];
        assert_eq!(ramp_growth(&c, &falling), 1.0);
        let steep = [(0.0, 10.0), (30.0, 20.0), (60.0, 30.0), (90.0, 40.0)];
        assert_eq!(ramp_growth(&c, &steep), RAMP_MOST);
        // Steady traffic whose reads rise a little four times in a row by chance.
        let noise = [(0.0, 100.0), (30.0, 101.0), (60.0, 103.0), (90.0, 104.0)];
        assert_eq!(ramp_growth(&c, &noise), 1.0, "a 4 % rise is noise");
        // Over 2 s ticks the slope is carried 4 spans (24 s) on, not 300 s.
        let quick = [(0.0, 100.0), (2.0, 110.0), (4.0, 120.0), (6.0, 130.0)];
        assert!((ramp_growth(&c, &quick) - (1.0 + 5.0 * 24.0 / 130.0)).abs() < 1e-9);
        let off = Config {
            ramp_lookahead_seconds: 0.0,
            ..cfg(1, 12)
        };
        assert_eq!(ramp_growth(&off, &rising), 1.0);
    }

    /// 250 msg/s now, after three intervals that rose by 40 msg/s each: sized for twice the
    /// arrivals (the most), 500 msg/s, which need 6 replicas (the 3 serving fall behind while
    /// new ones start), rather than for the 250 now (3).
    #[test]
    fn a_ramp_is_sized_for_the_arrivals_ahead() {
        let c = Config {
            duty_cycle: false,
            ..cfg(1, 12)
        };
        let o = obs(0.0, &[(1000, 1000); 12], 3);
        let rates = Rates {
            arrival: Some(vec![250.0 / 12.0; 12]),
            per_replica: Some(100.0),
        };
        let b = Bounds::new(&c, &Layout::one(12));
        let ramping = State {
            arrivals: vec![(-90.0, 130.0), (-60.0, 170.0), (-30.0, 210.0)],
            ..State::new(3)
        };
        let rec = recommend(&c, &ramping, &o, &[0; 12], &[], &rates, &b);
        assert_eq!(rec.count, 6, "{}", rec.reason);
        assert!(rec.reason.contains("arrivals rising"), "{}", rec.reason);
        let level = State {
            arrivals: vec![(-90.0, 250.0), (-60.0, 250.0), (-30.0, 250.0)],
            ..State::new(3)
        };
        let rec = recommend(&c, &level, &o, &[0; 12], &[], &rates, &b);
        assert_eq!(rec.count, 3, "{}", rec.reason);
        // The history carries the interval's total on, four at most.
        let (_, next) = decide(&c, &ramping, Some(&o));
        assert!(next.arrivals.len() <= RAMP_READS);
    }

    #[test]
    fn recommend_from_rates_spends_the_lag_budget_in_a_duty_cycle() {
        // Free rebalances: 2 falls 875 behind per partition over a window and the time a
        // scale-out takes (42 s of arrivals), within a 48 s budget.
        let on = steady_250(true, 0.0);
        assert_eq!(
            on,
            Recommendation {
                count: 2,
                lag: 0,
                lag_seconds: Some(0.0),
                reason: "arrivals 250.0 msg/s, 100.0 msg/s per replica, lag 0 (0s): 2 replica(s) keep lag under 60s"
                    .to_string(),
            }
        );
        // Off, the fewest that keep up.
        assert_eq!(steady_250(false, 0.0).count, 3);
        // The cycle's two rebalances (its scale-in's and its scale-out's, 10 s each) add
        // 417 more per partition (62 s): the cycle does not pay for them, and 3 stay.
        assert_eq!(cfg(1, 12).rebalance_seconds, 10.0);
        assert_eq!(steady_250(true, 10.0).count, 3);
    }

    /// The skewed trace at 280 msg/s: partition 0 takes 4/15 (74.7/s), the others 18.7/s
    /// each; 6 serving, partition 0 3000 behind (40 s), the rest within a commit interval.
    fn hot_partition(rate: f64) -> Recommendation {
        let c = cfg(1, 12);
        let mut arrival = vec![280.0 / 15.0; 12];
        arrival[0] = 4.0 * 280.0 / 15.0;
        let mut lag = vec![90; 12];
        lag[0] = 3000;
        let o = obs(0.0, &[(10_000, 10_000); 12], 6);
        let rates = Rates {
            arrival: Some(arrival),
            per_replica: Some(rate),
        };
        let b = Bounds::new(&c, &Layout::one(12));
        recommend(&c, &State::new(6), &o, &lag, &[], &rates, &b)
    }

    #[test]
    fn a_hot_partition_is_served_at_its_owners_whole_spare_rate() {
        // 6 replicas: partition 0's owner has 0 and 1 (93.3/s of its 100/s), and its 6.7/s
        // spare drains partition 0, the only one behind: 2400 (32 s) a horizon later. An even
        // split (50/s each) would see partition 0 fall 24.7/s further behind (70 s), past the
        // 42 s budget, and ask for 12.
        let rec = hot_partition(100.0);
        assert_eq!(rec.count, 6, "{rec:?}");
        // At 90/s per replica the owner of 0 and 1 cannot keep up: partition 0 gets 71.3/s,
        // and with the pause of the scale-out it will need, 4050 (54 s). 12, where partition
        // 0 has a replica of its own.
        assert_eq!(hot_partition(90.0).count, 12);
    }

    #[test]
    fn serving_pools_a_members_rate_over_its_partitions() {
        let c = cfg(1, 12);
        let lag = [1000, 0, 0, 0];
        let arrival = [60.0, 10.0, 10.0, 10.0];
        let o = obs(0.0, &[(1000, 1000); 4], 1);
        let s = State::new(1);
        let p = Projection::new(&c, &s, &o, &lag, &[], &arrival, 100.0);
        // One member, all four partitions: the quiet ones get their arrivals, and the 10/s
        // left over all goes to partition 0, the only one behind.
        let one = p.serve(1);
        assert_eq!(one.capacity, vec![70.0, 10.0, 10.0, 10.0]);
        assert_eq!(one.overloaded, vec![false; 4]);
        // Two members: the first owns 0 and 1 (70/s of its 100/s), the second 2 and 3.
        let two = p.serve(2);
        assert_eq!(two.capacity, vec![90.0, 10.0, 50.0, 50.0]);
        // A stuck partition wastes an even share: with partition 1 stuck, one member has
        // 75/s for the other three, 80/s arriving: over 95 %.
        let stuck = Projection::new(&c, &s, &o, &lag, &[1], &arrival, 100.0);
        let served = stuck.serve(1);
        assert_eq!(served.capacity, vec![55.0, 0.0, 10.0, 10.0]);
        assert_eq!(served.overloaded, vec![true, true, true, true]);
    }

    #[test]
    fn a_change_of_count_must_carry_its_rebalance() {
        // 3 serving, 30/s on each of 12 partitions (3 replicas cannot keep up), 1200 behind
        // on each (40 s). 4 replicas end the horizon 1200 behind: within the 42 s budget if
        // rebalances were free, but the 10 s pause of the scale-out adds 300 (50 s), so 6.
        let run = |rebalance_seconds: f64| {
            let c = Config {
                rebalance_seconds,
                ..cfg(1, 12)
            };
            let o = obs(0.0, &[(10_000, 8_800); 12], 3);
            let rates = Rates {
                arrival: Some(vec![30.0; 12]),
                per_replica: Some(100.0),
            };
            let b = Bounds::new(&c, &Layout::one(12));
            recommend(&c, &State::new(3), &o, &lag_of(&o), &[], &rates, &b).count
        };
        assert_eq!(run(0.0), 4);
        assert_eq!(run(10.0), 6);
    }

    #[test]
    fn no_rate_is_measured_over_a_rebalance_the_policy_caused() {
        let c = cfg(1, 12);
        // Scaled out at 0: the new replicas join at 60 and the group pauses until 70.
        let mut s = State::new(2);
        s.scaled_out_at = Some(0.0);
        s.changed_at = Some(0.0);
        let at = |t: f64| obs(t, &[(0, 0); 12], 2);
        assert!(!disturbed_between(&c, &s, &at(60.0), 30.0));
        assert!(disturbed_between(&c, &s, &at(90.0), 60.0));
        assert!(!disturbed_between(&c, &s, &at(120.0), 90.0));
        // With the platform's count, the start-up too: those replicas counted but did not
        // consume.
        let mut platform = at(60.0);
        platform.members = Some(Members {
            count: 2,
            source: MemberSource::Platform,
        });
        assert!(disturbed_between(&c, &s, &platform, 30.0));
        // A scale-in pauses the group at once.
        s.changed_at = Some(200.0);
        assert!(disturbed_between(&c, &s, &at(210.0), 180.0));
        assert!(!disturbed_between(&c, &s, &at(240.0), 210.0));

        // Through decide: a busy member measured over the rebalance keeps the known rate.
        let mut known = State::new(1);
        known.per_replica_rate = Some(100.0);
        known.scaled_out_at = Some(-60.0);
        known.changed_at = Some(-60.0);
        known.prev = Some(obs(0.0, &[(1000, 0); 12], 1));
        // 50/s consumed (the pause), 1000 behind on every partition.
        let (_, next) = decide(&c, &known, Some(&obs(30.0, &[(2500, 125); 12], 1)));
        assert_eq!(next.per_replica_rate, Some(100.0));
        known.scaled_out_at = None;
        known.changed_at = None;
        let (_, next) = decide(&c, &known, Some(&obs(30.0, &[(2500, 125); 12], 1)));
        assert_eq!(next.per_replica_rate, Some(75.0));
    }

    #[test]
    fn recommend_from_rates_picks_a_useful_count_in_time() {
        let c = cfg(1, 12);
        let b = Bounds::new(&c, &Layout::one(12));
        // 1 replica, 25/s arriving on each partition and 1000 behind on each (40 s).
        let o = obs(0.0, &[(1000, 0); 12], 1);
        let rates = Rates {
            arrival: Some(vec![25.0; 12]),
            per_replica: Some(100.0),
        };
        let lag = lag_of(&o);
        let rec = recommend(&c, &State::new(1), &o, &lag, &[], &rates, &b);
        // While the new replicas start (60 s) the one serving falls 16.7/s per partition
        // further behind: 2000. 4 (3 partitions each, 33/s) would still have 1250 (50 s)
        // behind a tick later, over the 42 s budget; 5 is not a useful count; 6 (2 each,
        // 50/s) has drained it by then.
        assert_eq!(rec.count, 6, "{rec:?}");
        assert_eq!(rec.lag, 12_000);
        assert_eq!(rec.lag_seconds, Some(40.0));
        // A stuck partition's lag is left out of the figures.
        let stuck = recommend(&c, &State::new(1), &o, &lag, &[3], &rates, &b);
        assert_eq!(stuck.lag, 11_000);
    }

    #[test]
    fn the_window_holds_a_lower_recommendation_until_it_has_lasted() {
        let c = cfg(1, 12);
        assert_eq!(c.scale_in_window_seconds, 120.0);
        let step = apply_scale_in_window(&c, 6, None, 0.0, 2);
        assert_eq!(
            step,
            Step {
                desired: 6,
                below_since: Some((0.0, 2)),
                note: "; would scale in to 2, waiting 120s more".to_string(),
            }
        );
        // A higher recommendation within the window raises what the scale-in goes to.
        let step = apply_scale_in_window(&c, 6, step.below_since, 90.0, 3);
        assert_eq!(
            step,
            Step {
                desired: 6,
                below_since: Some((0.0, 3)),
                note: "; would scale in to 3, waiting 30s more".to_string(),
            }
        );
        let step = apply_scale_in_window(&c, 6, step.below_since, 120.0, 2);
        assert_eq!(
            step,
            Step {
                desired: 3,
                below_since: None,
                note: "; below 6 for 120s: scale in to 3".to_string(),
            }
        );
    }

    #[test]
    fn the_window_scales_out_at_once_and_closes_on_an_equal_recommendation() {
        let c = cfg(1, 12);
        let open = Some((0.0, 2));
        assert_eq!(
            apply_scale_in_window(&c, 6, open, 60.0, 12),
            Step {
                desired: 12,
                below_since: None,
                note: "; scale out at once".to_string(),
            }
        );
        assert_eq!(
            apply_scale_in_window(&c, 6, open, 60.0, 6),
            Step {
                desired: 6,
                below_since: None,
                note: String::new(),
            }
        );
    }

    #[test]
    fn activation_from_zero_needs_lag_above_the_threshold() {
        let c = cfg(0, 12);
        let b = Bounds::new(&c, &Layout::one(12));
        assert_eq!(activate_from_zero(&c, 0, 0, &b).desired, 0);
        let step = activate_from_zero(&c, 5, 0, &b);
        assert_eq!(
            step,
            Step {
                desired: 1,
                below_since: None,
                note: "; lag above activation 0: scale from zero".to_string(),
            }
        );
        assert_eq!(activate_from_zero(&c, 5, 4, &b).desired, 4);
        let higher = Config {
            activation_lag: 10,
            ..c
        };
        assert_eq!(activate_from_zero(&higher, 10, 4, &b).desired, 0);
    }
}
