//! shoal's scaling policy: a pure function from one tick's offset reads and the state kept
//! between ticks to a desired replica count and the reason for it.
//!
//! It works in time, not messages: arrival rates per partition and the per-replica processing
//! rate are estimated from offset deltas between ticks, and the policy picks the smallest
//! useful replica count that keeps every partition's time lag under `max_lag_seconds`. Until
//! the processing rate has been measured (it can only be measured while replicas are busy) it
//! falls back to a lag-per-replica threshold.

use std::fmt::Write as _;

use crate::manifest::Scaling;

pub use crate::kafka::lag::{Observation, PartitionRead};

/// The policy's settings. [`Config::new`] takes the manifest's `[scaling]` bounds.
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
    /// May scale in to the count just below the fewest that keep up, spending the lag budget
    /// there (see [`decide`]); off, it settles at a count that keeps up.
    pub duty_cycle: bool,
}

impl Config {
    /// Defaults around the manifest's bounds: a 120 s scale-in window, reads stale after 90 s,
    /// stuck after 3 ticks, activation on any lag, 1000 messages per replica as fallback,
    /// 95 % utilisation after a scale-in, 80 % of the lag target as budget, 30 s ticks and a
    /// 60 s start-up.
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
            lag_budget: 0.8,
            interval_seconds: 30.0,
            startup_seconds: 60.0,
            duty_cycle: scaling.duty_cycle,
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
}

impl State {
    pub fn new(current: u32) -> State {
        State {
            current,
            ..State::default()
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

/// Replica counts worth paying for with `p` partitions: those where the busiest replica's
/// share, ceil(p/n), drops. For 12 partitions: 1, 2, 3, 4, 6, 12.
pub fn useful_counts(p: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut last = u32::MAX;
    for n in 1..=p {
        let k = p.div_ceil(n);
        if k < last {
            out.push(n);
            last = k;
        }
    }
    out
}

/// How many partitions each of `n` consumers owns under Kafka's range assignor (one topic):
/// the first `p % n` consumers get one more. `owner_share(p, n)[i]` is the number of
/// partitions owned by the owner of partition `i`.
pub fn owner_share(p: u32, n: u32) -> Vec<u32> {
    if n == 0 {
        return vec![0; p as usize];
    }
    let mut out = Vec::with_capacity(p as usize);
    for count in range_assignment(p, n) {
        out.extend(std::iter::repeat_n(count, count as usize));
    }
    out
}

/// Partitions per member under the range assignor, in member order.
pub fn range_assignment(p: u32, n: u32) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    (0..n).map(|i| p / n + u32::from(i < p % n)).collect()
}

/// Decides one tick. `obs` is `None` when the lag could not be read.
pub fn decide(cfg: &Config, state: &State, obs: Option<&Observation>) -> (Decision, State) {
    let current = state.current;
    let hold = |reason: String, next: State| {
        (
            Decision {
                desired: current,
                changed: false,
                reason,
                lag: 0,
                lag_seconds: None,
                stuck: Vec::new(),
            },
            next,
        )
    };
    let Some(obs) = obs else {
        return hold(
            format!("no lag reading this tick: keeping {current} (fail static)"),
            state.clone(),
        );
    };
    if obs.partitions.is_empty() {
        return hold(
            format!("the read returned no partitions: keeping {current} (fail static)"),
            state.clone(),
        );
    }
    if let Some(old) = obs
        .partitions
        .iter()
        .map(|r| obs.at - r.read_at)
        .filter(|age| !age.is_finite() || *age > cfg.stale_after_seconds)
        .reduce(f64::max)
    {
        return hold(
            format!(
                "offsets read {old:.0}s ago (stale after {:.0}s): keeping {current} (fail static)",
                cfg.stale_after_seconds
            ),
            state.clone(),
        );
    }

    let p = obs.partitions.len() as u32;
    let lag: Vec<u64> = obs
        .partitions
        .iter()
        .map(|r| match r.committed_offset {
            Some(c) => u64::try_from(r.end_offset.saturating_sub(c)).unwrap_or(0),
            None => 0,
        })
        .collect();
    let mut next = State {
        current,
        prev: Some(obs.clone()),
        arrival: None,
        per_replica_rate: state.per_replica_rate,
        unmoved_ticks: vec![0; p as usize],
        below_since: state.below_since,
        scaled_out_at: state.scaled_out_at,
    };

    // Rates and stuck partitions from the deltas since the last good read.
    let prev = state
        .prev
        .as_ref()
        .filter(|prev| prev.partitions.len() == obs.partitions.len() && obs.at - prev.at > 0.0);
    let consumers = obs.consumers.unwrap_or(0);
    if let Some(prev) = prev {
        let dt = obs.at - prev.at;
        let mut arrival = Vec::with_capacity(p as usize);
        let mut consumed = Vec::with_capacity(p as usize);
        for (i, (now, before)) in obs.partitions.iter().zip(&prev.partitions).enumerate() {
            arrival.push(now.end_offset.saturating_sub(before.end_offset).max(0) as f64 / dt);
            let moved = match (now.committed_offset, before.committed_offset) {
                (Some(a), Some(b)) => a.saturating_sub(b).max(0),
                _ => 0,
            };
            consumed.push(moved as f64 / dt);
            let unmoved =
                lag[i] > 0 && consumers > 0 && before.committed_offset.is_some() && moved == 0;
            next.unmoved_ticks[i] = if unmoved {
                state.unmoved_ticks.get(i).copied().unwrap_or(0) + 1
            } else {
                0
            };
        }
        // A member's rate is measurable when every partition it owns is behind.
        // Until there is a first estimate, an interval in which members joined counts too,
        // as if the most members had served all along (an underestimate again).
        let first = state.per_replica_rate.is_none();
        let members = match prev.consumers {
            Some(before) if before == consumers => Some(consumers),
            Some(before) if first => Some(consumers.max(before)),
            _ => None,
        };
        if let Some(members) = members.filter(|&m| m > 0) {
            let mut rates = Vec::new();
            let mut start = 0usize;
            for owned in range_assignment(p, members) {
                let range = start..start + owned as usize;
                start += owned as usize;
                // Behind at both reads: busy all along. Until there is a first estimate, behind
                // at the second read will do: a partition that caught up part-way makes that
                // an underestimate, which errs towards more replicas.
                let busy = owned > 0
                    && range.clone().all(|i| {
                        let before = &prev.partitions[i];
                        let had_lag = before
                            .committed_offset
                            .is_some_and(|c| before.end_offset > c);
                        (had_lag || first) && lag[i] > 0 && next.unmoved_ticks[i] == 0
                    });
                if busy {
                    rates.push(range.map(|i| consumed[i]).sum::<f64>());
                }
            }
            if !rates.is_empty() {
                let measured = rates.iter().sum::<f64>() / rates.len() as f64;
                next.per_replica_rate = Some(match state.per_replica_rate {
                    Some(old) => (old + measured) / 2.0,
                    None => measured,
                });
            }
        }
        next.arrival = Some(arrival);
    } else {
        next.unmoved_ticks = vec![0; p as usize];
    }
    let stuck: Vec<u32> = (0..p)
        .filter(|&i| next.unmoved_ticks[i as usize] >= cfg.stuck_ticks.max(1))
        .collect();
    let live = |i: usize| !stuck.contains(&(i as u32));
    let total_lag: u64 = (0..p as usize).filter(|&i| live(i)).map(|i| lag[i]).sum();

    let hi = cfg.max.min(p).max(cfg.min.min(p));
    let lo = cfg.min.min(hi);
    let counts = useful_counts(p);
    let round_up = |n: u32| -> u32 {
        let n = n.clamp(lo, hi);
        if n == 0 {
            return 0;
        }
        counts
            .iter()
            .copied()
            .find(|&c| c >= n)
            .unwrap_or(hi)
            .clamp(lo, hi)
    };

    let mut why = String::new();
    let arrival_total: Option<f64> = next
        .arrival
        .as_ref()
        .map(|a| (0..p as usize).filter(|&i| live(i)).map(|i| a[i]).sum());
    let (rec, lag_seconds) = match (&next.arrival, next.per_replica_rate) {
        (Some(arrival), Some(rate)) if rate > 0.0 => {
            let lag_seconds = (0..p as usize)
                .filter(|&i| live(i) && lag[i] > 0)
                .map(|i| {
                    if arrival[i] > 0.0 {
                        lag[i] as f64 / arrival[i]
                    } else {
                        lag[i] as f64 / rate
                    }
                })
                .fold(0.0, f64::max);
            let serving = obs.consumers.unwrap_or(current);
            let now_share = owner_share(p, serving);
            let horizon = cfg.interval_seconds + cfg.startup_seconds;
            let budget = cfg.lag_budget * cfg.max_lag_seconds;
            // Replicas launched but not serving yet start serving `pending_for` from now.
            let pending_for = match state.scaled_out_at {
                Some(at) if current > serving => (cfg.startup_seconds - (obs.at - at))
                    .min(cfg.startup_seconds)
                    .max(0.0),
                _ => 0.0,
            };
            let cur_share = owner_share(p, current.max(serving));
            let capacity = |share: u32| -> f64 {
                if share == 0 {
                    0.0
                } else {
                    rate / f64::from(share)
                }
            };
            // Lag (messages) of partition i once `n` replicas serve: the replicas serving now
            // serve until the pending ones start, those until replicas added now start.
            let after_startup = |i: usize, n: u32| -> f64 {
                let mut l = lag[i] as f64;
                if n <= serving {
                    return l;
                }
                l = (l + (arrival[i] - capacity(now_share[i])) * pending_for).max(0.0);
                if n > current.max(serving) {
                    let rest = cfg.startup_seconds - pending_for;
                    l = (l + (arrival[i] - capacity(cur_share[i])) * rest).max(0.0);
                }
                l
            };
            // Seconds of lag that many messages are on partition i (at its arrival rate, or
            // at the rate it is drained when nothing arrives).
            let seconds = |i: usize, messages: f64, c: f64| -> f64 {
                if messages <= 0.0 {
                    0.0
                } else if arrival[i] > 0.0 {
                    messages / arrival[i]
                } else {
                    messages / c
                }
            };
            // A scale-in happens when the window has passed; until then the replicas serving
            // now drain (or grow) the backlog.
            let window_left = match state.below_since {
                Some((since, _)) => (cfg.scale_in_window_seconds - (obs.at - since)).max(0.0),
                None => cfg.scale_in_window_seconds,
            };
            let mut candidates: Vec<u32> = counts
                .iter()
                .copied()
                .filter(|&n| n >= lo && n <= hi)
                .collect();
            if !candidates.contains(&hi) {
                candidates.push(hi);
            }
            if lo == 0 {
                candidates.insert(0, 0);
            }
            // n can keep up with the arrivals on every partition, with headroom.
            let sustainable = |n: u32| -> bool {
                n > 0 && {
                    let share = owner_share(p, n);
                    (0..p as usize)
                        .filter(|&i| live(i))
                        .all(|i| arrival[i] <= cfg.target_utilisation * rate / f64::from(share[i]))
                }
            };
            // The useful count just below the fewest that keep up: the lower end of a duty
            // cycle, the only count that cannot keep up a scale-in may go to (none when the
            // duty cycle is off).
            let duty_low = candidates
                .iter()
                .position(|&n| sustainable(n))
                .and_then(|i| i.checked_sub(1))
                .map(|i| candidates[i])
                .filter(|&n| cfg.duty_cycle && n > 0);
            // n keeps every partition's lag within the budget until the next tick's
            // decision could take effect. A scale-in to the count below the fewest that keep
            // up spends the lag budget instead (a duty cycle between two useful counts): it is
            // taken only when the backlog left at the scale-in, growing at the smaller count,
            // stays within the budget for a whole window more and the time a scale-out takes,
            // so each count is held at least one window.
            let fits = |n: u32| -> bool {
                if n == 0 {
                    return total_lag == 0 && arrival_total.unwrap_or(0.0) == 0.0;
                }
                let share = owner_share(p, n);
                (0..p as usize).filter(|&i| live(i)).all(|i| {
                    let c = rate / f64::from(share[i]);
                    let a = arrival[i];
                    if n < current && a > cfg.target_utilisation * c {
                        if duty_low != Some(n) || pending_for > 0.0 || serving < current {
                            return false;
                        }
                        let at_scale_in =
                            (lag[i] as f64 + (a - capacity(now_share[i])) * window_left).max(0.0);
                        let peak = at_scale_in
                            + (a - c).max(0.0) * (cfg.scale_in_window_seconds + horizon);
                        return seconds(i, peak, c) <= budget;
                    }
                    let l2 = (after_startup(i, n) + (a - c) * horizon).max(0.0);
                    seconds(i, l2, c) <= budget
                })
            };
            // When no count keeps within the budget: the fewest that drain every partition's
            // backlog within max_lag_seconds once the new replicas serve.
            let drains = |n: u32| -> bool {
                let share = owner_share(p, n.max(1));
                (0..p as usize).filter(|&i| live(i)).all(|i| {
                    let c = rate / f64::from(share[i]);
                    let a = arrival[i];
                    let l1 = after_startup(i, n);
                    c > a && (l1 <= 0.0 || l1 / (c - a) <= cfg.max_lag_seconds)
                })
            };
            let rec = candidates
                .iter()
                .copied()
                .find(|&n| fits(n))
                .or_else(|| candidates.iter().copied().find(|&n| n > 0 && drains(n)))
                .map_or(hi, round_up);
            let _ = write!(
                why,
                "arrivals {:.1} msg/s, {rate:.1} msg/s per replica, lag {total_lag} ({lag_seconds:.0}s): {rec} replica(s) keep lag under {:.0}s",
                arrival_total.unwrap_or(0.0),
                cfg.max_lag_seconds
            );
            (rec, Some(lag_seconds))
        }
        _ => {
            let per = cfg.fallback_lag_per_replica.max(1.0);
            let raw = (total_lag as f64 / per).ceil() as u32;
            let idle = total_lag == 0 && arrival_total.is_none_or(|a| a == 0.0);
            let mut rec = if raw == 0 && lo == 0 && idle {
                0
            } else {
                round_up(raw.max(1))
            };
            let _ = write!(
                why,
                "rates not known yet: lag {total_lag} at {per:.0} per replica needs {rec} replica(s)"
            );
            // Without rates no count is known to be sustainable: scale in only when idle.
            if rec < current && !idle {
                rec = current;
                let _ = write!(why, ", but not scaling in until rates are known");
            }
            (rec, None)
        }
    };
    if !stuck.is_empty() {
        let _ = write!(why, "; not scaling for stuck partitions {stuck:?}");
    }

    // Scale from zero on activation; otherwise out at once, in after the window.
    let decided = if current == 0 {
        if total_lag > cfg.activation_lag {
            next.below_since = None;
            let to = rec.max(round_up(1));
            let _ = write!(
                why,
                "; lag above activation {}: scale from zero",
                cfg.activation_lag
            );
            to
        } else {
            next.below_since = None;
            current
        }
    } else if rec > current {
        next.below_since = None;
        let _ = write!(why, "; scale out at once");
        rec
    } else if rec < current {
        let (since, highest) = match state.below_since {
            Some((since, highest)) => (since, highest.max(rec)),
            None => (obs.at, rec),
        };
        if obs.at - since >= cfg.scale_in_window_seconds {
            next.below_since = None;
            let _ = write!(
                why,
                "; below {current} for {:.0}s: scale in to {highest}",
                obs.at - since
            );
            highest
        } else {
            next.below_since = Some((since, highest));
            let _ = write!(
                why,
                "; would scale in to {highest}, waiting {:.0}s more",
                cfg.scale_in_window_seconds - (obs.at - since)
            );
            current
        }
    } else {
        next.below_since = None;
        current
    };
    let decided = decided.clamp(lo, hi);
    if decided > current {
        next.scaled_out_at = Some(obs.at);
    }
    next.current = decided;
    let decision = Decision {
        desired: decided,
        changed: decided != current,
        reason: why,
        lag: total_lag,
        lag_seconds,
        stuck,
    };
    (decision, next)
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
        Observation {
            at,
            partitions: offsets
                .iter()
                .map(|&(end, committed)| PartitionRead {
                    end_offset: end,
                    committed_offset: Some(committed),
                    read_at: at,
                })
                .collect(),
            consumers: Some(consumers),
        }
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
    fn without_rates_it_does_not_scale_in_while_messages_flow() {
        let c = cfg(1, 12);
        // 6 replicas, no lag, 10/s arriving on every partition, but no member has been busy:
        // the per-replica rate is unknown, so 6 stays.
        let mut s = State::new(6);
        for tick in 0..10i64 {
            let end = tick * 300;
            let o = obs(tick as f64 * 30.0, &[(end, end); 12], 6);
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
    /// partition behind. With no backlog 2 can run for a window and a scale-out's time
    /// within the budget (48 s of lag), so shoal scales in to 2 after the window; with a
    /// backlog it cannot, and stays at 3; nor does it with the duty cycle off.
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
        let c = cfg(1, 12);
        let idle = run(&c, 0);
        let last = idle.last().expect("decided");
        assert_eq!(last.desired, 2, "{last:?}");
        assert!(last.reason.contains("scale in to 2"), "{}", last.reason);
        assert!(idle.len() >= 5, "scaled in before the window: {idle:?}");

        // 1000 behind on every partition (48 s): 2 would pass the budget within the window.
        let behind = run(&c, 1000);
        assert!(behind.iter().all(|d| d.desired == 3), "{behind:?}");

        // Off (`duty_cycle = false`), 3 is where it stays.
        let off = Config {
            duty_cycle: false,
            ..cfg(1, 12)
        };
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
    fn no_committed_offset_is_not_lag() {
        let c = cfg(1, 12);
        let mut o = obs(0.0, &[(0, 0); 12], 1);
        o.partitions[0].end_offset = 1_000_000;
        o.partitions[0].committed_offset = None;
        let (d, _) = decide(&c, &State::new(1), Some(&o));
        assert_eq!(d.desired, 1);
        assert_eq!(d.lag, 0);
    }
}
