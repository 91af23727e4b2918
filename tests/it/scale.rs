//! The scaling policy's properties, the simulator on every shipped trace (shoal against the
//! KEDA+HPA model), the simulator's tick against the daemon's, and `shoal simulate` as a user
//! runs it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use proptest::prelude::*;
use shoal::manifest::Scaling;
use shoal::platform::{Counts, Scale, ScaleError};
use shoal::scale::daemon::ReadLag;
use shoal::scale::policy::{
    decide, useful_counts, Config, MemberSource, Members, Observation, PartitionRead, State,
};
use shoal::scale::sim::{self, Setup, Trace, Which};
use shoal::scale::Comparison;

use crate::support::{repo_root, shoal, text};

// ---------------------------------------------------------------------------------------
// Policy properties

fn config(min: u32, max: u32) -> Config {
    Config::new(Scaling {
        min,
        max,
        max_lag_seconds: 60.0,
        duty_cycle: true,
    })
}

fn observation(at: f64, offsets: &[(i64, Option<i64>)], consumers: Option<u32>) -> Observation {
    Observation::one_topic(
        at,
        "t",
        offsets
            .iter()
            .map(|&(end_offset, committed_offset)| PartitionRead {
                end_offset,
                committed_offset,
                log_start_offset: None,
                read_at: at,
            })
            .collect(),
        consumers.map(|count| Members {
            count,
            source: MemberSource::Group,
        }),
    )
}

/// The most a decision may pick: `max`, no more than the partitions, never below `min`.
fn highest(p: u32, min: u32, max: u32) -> u32 {
    max.min(p).max(min)
}

/// Partition count, bounds (min ≤ max), and a current count within them.
fn bounds() -> impl Strategy<Value = (u32, u32, u32, u32)> {
    (1u32..=24, 0u32..=8, 1u32..=30).prop_flat_map(|(p, min, max)| {
        let max = max.max(min).max(1);
        (Just(p), Just(min), Just(max), min..=highest(p, min, max))
    })
}

/// A previous read and a current read 30 s later (offsets only go up), per partition.
fn reads(p: u32) -> impl Strategy<Value = Vec<(i64, i64, i64, i64)>> {
    prop::collection::vec(
        (0i64..50_000, 0i64..50_000, 0i64..20_000, 0i64..20_000).prop_map(
            |(end0, lag0, arrived, consumed)| {
                let committed0 = (end0 - lag0).max(0);
                let end1 = end0 + arrived;
                let committed1 = (committed0 + consumed).min(end1);
                (end0, committed0, end1, committed1)
            },
        ),
        p as usize,
    )
}

fn state_with(
    current: u32,
    prev: &[(i64, i64, i64, i64)],
    rate: Option<f64>,
    consumers: Option<u32>,
) -> State {
    let mut s = State::new(current);
    s.prev = Some(observation(
        0.0,
        &prev.iter().map(|r| (r.0, Some(r.1))).collect::<Vec<_>>(),
        consumers,
    ));
    s.per_replica_rate = rate;
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_above_max_or_partitions_never_below_min(
        (p, min, max, current, rows, rate, consumers, missing_committed) in bounds().prop_flat_map(|(p, min, max, current)| (
            Just(p), Just(min), Just(max), Just(current), reads(p),
            prop::option::of(1.0f64..500.0),
            prop::option::of(0u32..=p),
            prop::collection::vec(any::<bool>(), p as usize),
        )),
    ) {
        let cfg = config(min, max);
        let state = state_with(current, &rows, rate, consumers);
        let now: Vec<(i64, Option<i64>)> = rows
            .iter()
            .zip(&missing_committed)
            .map(|(r, &missing)| (r.2, if missing { None } else { Some(r.3) }))
            .collect();
        let (d, next) = decide(&cfg, &state, Some(&observation(30.0, &now, consumers)));
        let hi = highest(p, min, max);
        prop_assert!(d.desired <= hi, "{} > max {max} (or P {p}, unless min {min}): {}", d.desired, d.reason);
        prop_assert!(d.desired >= min, "{} < min {min}: {}", d.desired, d.reason);
        prop_assert_eq!(next.current, d.desired);
        prop_assert!(!d.reason.is_empty());
    }

    #[test]
    fn no_change_when_data_is_missing_or_stale(
        (_p, min, max, current, rows, rate) in bounds().prop_flat_map(|(p, min, max, current)| (
            Just(p), Just(min), Just(max), Just(current), reads(p),
            prop::option::of(1.0f64..500.0),
        )),
        stale_by in 91.0f64..10_000.0,
    ) {
        let cfg = config(min, max);
        let state = state_with(current, &rows, rate, Some(current));
        let (d, next) = decide(&cfg, &state, None);
        prop_assert_eq!(d.desired, current);
        prop_assert!(!d.changed);
        prop_assert_eq!(&next, &state);

        let now: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.2, Some(r.3))).collect();
        let mut o = observation(30.0 + stale_by, &now, Some(current));
        o.partitions[0].read_at = 30.0;
        let (d, next) = decide(&cfg, &state, Some(&o));
        prop_assert_eq!(d.desired, current);
        prop_assert!(d.reason.contains("stale"), "{}", d.reason);
        prop_assert_eq!(&next, &state);
    }

    /// A count a person or a deploy set outside the manifest's bounds is brought back to the
    /// nearest bound, even on a tick with no read; within the bounds it is kept.
    #[test]
    fn a_count_outside_the_bounds_is_brought_back_even_without_a_read(
        (min, max) in (0u32..=8, 1u32..=30).prop_map(|(min, max)| (min, max.max(min))),
        current in 0u32..=60,
    ) {
        let cfg = config(min, max);
        let (d, next) = decide(&cfg, &State::new(current), None);
        prop_assert_eq!(d.desired, current.clamp(min, max));
        prop_assert_eq!(d.changed, d.desired != current);
        prop_assert_eq!(next.current, d.desired);
    }

    /// More lag (committed offsets further behind, everything else the same) never lowers
    /// the decision. The group's members are not given, so the per-replica rate is the one
    /// already known and no partition can turn stuck.
    #[test]
    fn more_lag_never_lowers_the_decision(
        (_p, min, max, current, rows, rate, extra) in bounds().prop_flat_map(|(p, min, max, current)| (
            Just(p), Just(min), Just(max), Just(current), reads(p),
            prop::option::of(1.0f64..500.0),
            prop::collection::vec(0i64..30_000, p as usize),
        )),
    ) {
        let cfg = config(min, max);
        let state = state_with(current, &rows, rate, None);
        let now: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.2, Some(r.3))).collect();
        let behind: Vec<(i64, Option<i64>)> = rows
            .iter()
            .zip(&extra)
            .map(|(r, e)| (r.2, Some((r.3 - e).max(0))))
            .collect();
        let (less, _) = decide(&cfg, &state, Some(&observation(30.0, &now, None)));
        let (more, _) = decide(&cfg, &state, Some(&observation(30.0, &behind, None)));
        prop_assert!(
            more.desired >= less.desired,
            "lag {} → {} but desired {} → {}\n  less: {}\n  more: {}",
            less.lag, more.lag, less.desired, more.desired, less.reason, more.reason
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// On a constant produce rate the desired count does not oscillate. Once it has settled
    /// (it may rise, and come down after an overshoot), with `duty_cycle = false` it stays put;
    /// by default it either stays put or, when the load sits between two useful counts,
    /// alternates between those two (spending the lag budget at the lower one). Either way a
    /// reversal (up then down, or down then up) always waits a scale-in window: never a swing
    /// across counts, never a flap.
    #[test]
    fn no_oscillation_on_constant_load(
        rate in 0.0f64..1500.0,
        partitions in prop::sample::select(vec![1u32, 6, 12, 24]),
        startup in 0u64..=120,
        per_replica in 20.0f64..300.0,
        min in 0u32..=2,
        duty_cycle in any::<bool>(),
        rebalance_seconds in prop::sample::select(vec![0u64, 10]),
    ) {
        let dir = Path::new("constant.csv");
        let trace = Trace::parse(dir, &format!("0,{rate}\n3600,{rate}\n")).expect("parses");
        // Free rebalances, and the default 10 s pause for each change in the group's members.
        // Before the policy budgeted for the pause, the duty cycle overshot with it (counts
        // after settling such as [4, 6, 12] at 932 msg/s, 12 partitions, 173 msg/s per
        // replica, no start-up), and this property was checked with free rebalances only.
        let setup = Setup {
            rebalance_seconds,
            partitions,
            startup_seconds: startup,
            per_replica_rate: per_replica,
            max_lag_seconds: 60.0,
            min,
            max: partitions,
            lag_threshold: None,
            interval_seconds: 30,
            duty_cycle,
            ..Setup::default()
        };
        let run = sim::simulate(&trace, &setup, Which::Shoal);
        let changes: Vec<(u64, u32)> = run
            .timeline
            .windows(2)
            .filter(|w| w[0][1] != w[1][1])
            .map(|w| (w[1][0], w[1][1] as u32))
            .collect();
        // Settled: the second half of the hour, and the count it starts with.
        let mut counts: Vec<u32> = run
            .timeline
            .iter()
            .rfind(|r| r[0] <= 1800)
            .map(|r| r[1] as u32)
            .into_iter()
            .chain(changes.iter().filter(|c| c.0 > 1800).map(|c| c.1))
            .collect();
        counts.sort_unstable();
        counts.dedup();
        let useful = useful_counts(partitions);
        let settled = match counts.as_slice() {
            [] | [_] => true,
            // A single late scale-out is allowed: with a small deficit the lag takes long to
            // reach the budget.
            [lo, hi] if !duty_cycle => changes.iter().filter(|c| c.0 > 1800).count() <= 1
                && useful.iter().any(|n| n == hi) && lo < hi,
            [lo, hi] if duty_cycle => {
                let above: Vec<u32> = useful.iter().copied().filter(|&n| n > *lo).collect();
                above.first() == Some(hi)
            }
            _ => false,
        };
        let window = config(min, partitions).scale_in_window_seconds as u64;
        let mut previous = (0u64, run.timeline.first().map_or(0, |r| r[1] as u32));
        let mut flapping = false;
        let mut last_direction = 0i8;
        let mut directions = Vec::new();
        for &(t, n) in &changes {
            let direction = if n > previous.1 { 1 } else { -1 };
            directions.push(direction);
            if last_direction != 0 && direction != last_direction && t - previous.0 < window {
                flapping = true;
            }
            last_direction = direction;
            previous = (t, n);
        }
        // Without the duty cycle it never comes down and then goes up again.
        let up_after_down = directions
            .iter()
            .position(|&d| d < 0)
            .is_some_and(|i| directions[i..].contains(&1));
        prop_assert!(
            settled && !flapping && (duty_cycle || !up_after_down),
            "desired oscillates (duty_cycle {duty_cycle}; counts after settling {:?}): {:?}",
            counts,
            run.timeline
        );
    }
}

// ---------------------------------------------------------------------------------------
// The simulator on the shipped traces

fn traces() -> Vec<PathBuf> {
    let dir = repo_root().join("benches/traces");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("benches/traces")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    out.sort();
    out
}

fn default_setup() -> Setup {
    Setup::default()
}

fn compare(path: &Path) -> (Trace, Comparison) {
    let trace = Trace::load(path).expect("trace loads");
    trace.check(12).expect("trace fits 12 partitions");
    let c = Comparison::run(&trace, &default_setup(), &[Which::Shoal, Which::Keda]);
    (trace, c)
}

#[test]
fn every_shipped_trace_is_there() {
    let names: Vec<String> = traces()
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for want in ["diurnal", "ramp", "skewed", "spike", "steady", "stuck"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want}.csv missing: {names:?}"
        );
    }
}

/// The setups the goals are checked under: the defaults (an eager rebalance of 10 s for each
/// change in the group's members, commits every 5 s, members from the group),
/// cooperative-sticky (no pause), and members from the platform's running count (a broker that
/// cannot answer DescribeGroups).
fn goal_setups() -> Vec<(&'static str, Setup)> {
    vec![
        ("rebalance 10 s", Setup::default()),
        (
            "rebalance 0 s",
            Setup {
                rebalance_seconds: 0,
                ..Setup::default()
            },
        ),
        (
            "members from the platform",
            Setup {
                members: MemberSource::Platform,
                ..Setup::default()
            },
        ),
    ]
}

/// Whether second `t` is one in which no policy can hold the lag target. That is from the start
/// (a run starts at `min` replicas under the trace's first rate) and from each step up in the
/// trace: the backlog that builds over a tick, a start-up and a rebalance at the capacity
/// before the step (`min` replicas at the start, the rate before the step after it) takes
/// until `max` replicas have drained it, and then the target itself.
fn startup_bound(trace: &Trace, setup: &Setup, t: u64) -> bool {
    let delay = (setup.interval_seconds + setup.startup_seconds + setup.rebalance_seconds) as f64;
    let full = f64::from(setup.max.min(setup.partitions)) * setup.per_replica_rate;
    let first = trace.rows.first().map_or(0.0, |r| r.rate);
    let steps: Vec<(f64, f64, f64)> =
        std::iter::once((0.0, f64::from(setup.min) * setup.per_replica_rate, first))
            .chain(
                trace
                    .rows
                    .windows(2)
                    .filter(|w| w[0].t == w[1].t && w[1].rate > w[0].rate)
                    .map(|w| (w[1].t, w[0].rate, w[1].rate)),
            )
            .collect();
    steps.iter().any(|&(at, before, after)| {
        let backlog = (after - before).max(0.0) * delay;
        let drain = if backlog == 0.0 {
            0.0
        } else if full > after {
            backlog / (full - after)
        } else {
            f64::INFINITY
        };
        let t = t as f64;
        t >= at && t < at + delay + drain + setup.max_lag_seconds
    })
}

/// The goals that shoal misses on a trace: fewer replica-seconds than the KEDA model
/// (`replica-seconds`) at a p99 lag no worse (`p99 vs keda`), at most a third of its scale
/// actions (`scale actions`), and a p99 lag within `max_lag_seconds` over the seconds the
/// start-up delay allows (`lag target`). Each with the figures that miss.
fn missed_goals(trace: &Trace, setup: &Setup, c: &Comparison) -> Vec<(&'static str, String)> {
    let shoal = c.get(Which::Shoal).expect("shoal ran");
    let keda = c.get(Which::Keda).expect("keda ran");
    let mut out = Vec::new();
    if shoal.replica_seconds >= keda.replica_seconds {
        out.push((
            "replica-seconds",
            format!(
                "{} against keda's {}",
                shoal.replica_seconds, keda.replica_seconds
            ),
        ));
    }
    if shoal.p99_lag_seconds > keda.p99_lag_seconds {
        out.push((
            "p99 vs keda",
            format!(
                "{:.0} s against keda's {:.0} s",
                shoal.p99_lag_seconds, keda.p99_lag_seconds
            ),
        ));
    }
    if 3 * shoal.scale_actions > keda.scale_actions {
        out.push((
            "scale actions",
            format!(
                "{} against keda's {} (at most {})",
                shoal.scale_actions,
                keda.scale_actions,
                keda.scale_actions / 3
            ),
        ));
    }
    let allowed = sim::p99(
        shoal
            .seconds
            .iter()
            .enumerate()
            .filter(|(t, _)| !startup_bound(trace, setup, *t as u64))
            .map(|(_, s)| s.0)
            .collect(),
    );
    if allowed > setup.max_lag_seconds {
        out.push((
            "lag target",
            format!(
                "p99 {allowed:.0} s after start-ups, target {:.0} s",
                setup.max_lag_seconds
            ),
        ));
    }
    out
}

/// The goals shoal's policy misses today, by setup and trace. Listed, not hidden: the test
/// fails when one of these is met (take it off the list) or another is missed.
/// docs/benchmarks.md gives the figures.
///
/// - ramp, scale actions (10 of 28 with 10 s rebalances, at most 9; 10 of 24 without): the
///   policy steps through every useful count on the way up (1, 2, 3, 4, 6, 12) and again on
///   the way down, one scale-in window per step. Skipping counts needs a forecast of the
///   ramp; projecting the last interval's rise did not change a decision.
/// - ramp without rebalance cost, replica-seconds (33660 against 32070): the policy budgets a
///   10 s pause for every change of count whatever the assignor (it cannot read it), so with
///   cooperative-sticky rebalances it scales out a little earlier than it needs to.
/// - skewed, replica-seconds (31830 against KEDA's 30465; 31650 against 29700 without
///   rebalance cost): 6 replicas are the fewest that keep partition 0's owner under its rate
///   at 280 msg/s, for the hour at that rate; KEDA runs fewer and lets p99 lag reach 461 s.
/// - skewed, scale actions (7 of 17, at most 5): up 1, 2, 3, 4, 6 with the ramp and down 4,
///   3, 2 after it, as on ramp.
/// - steady without rebalance cost, replica-seconds (10920 against 9435): 3 replicas keep up
///   and 2 do not; KEDA alternates between them at up to 69 s of lag, and the duty cycle
///   that would do the same no longer pays for the two 10 s rebalances the policy budgets
///   per cycle (it did not meet the scale-action goal either: 17 of 11).
const KNOWN_MISSES: &[(&str, &str, &str)] = &[
    ("rebalance 10 s", "skewed", "replica-seconds"),
    ("rebalance 10 s", "skewed", "scale actions"),
    ("rebalance 0 s", "ramp", "replica-seconds"),
    ("rebalance 0 s", "skewed", "replica-seconds"),
    ("rebalance 0 s", "skewed", "scale actions"),
    ("rebalance 0 s", "steady", "replica-seconds"),
    ("members from the platform", "skewed", "replica-seconds"),
    ("members from the platform", "skewed", "scale actions"),
];

/// On every shipped trace, under each of [`goal_setups`], shoal's policy (through the
/// daemon's tick) must meet the goals against the KEDA model, but for
/// [`KNOWN_MISSES`]. Prints both policies' figures for each.
#[test]
fn shoal_meets_its_goals_on_every_shipped_trace() {
    let mut missed = Vec::new();
    let mut details = Vec::new();
    for (name, setup) in goal_setups() {
        for path in traces() {
            let trace = Trace::load(&path).expect("trace loads");
            trace.check(setup.partitions).expect("trace fits");
            let c = Comparison::run(&trace, &setup, &[Which::Shoal, Which::Keda]);
            println!("[{name}] {}", c.to_text(&trace, &setup));
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (goal, figures) in missed_goals(&trace, &setup, &c) {
                details.push(format!("[{name}] {stem}: {goal}: {figures}"));
                missed.push((name.to_string(), stem.clone(), goal.to_string()));
            }
        }
    }
    let known: Vec<(String, String, String)> = KNOWN_MISSES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(missed, known, "misses:\n{}", details.join("\n"));
}

#[test]
fn keda_is_driven_to_the_partition_cap_by_a_stuck_partition() {
    let (_, c) = compare(&repo_root().join("benches/traces/stuck.csv"));
    let keda = c.get(Which::Keda).expect("keda ran");
    let shoal = c.get(Which::Shoal).expect("shoal ran");
    let keda_last = keda.timeline.last().expect("timeline")[1];
    let shoal_last = shoal.timeline.last().expect("timeline")[1];
    assert_eq!(keda_last, 12, "{:?}", keda.timeline);
    assert!(shoal_last <= 4, "{:?}", shoal.timeline);
}

// ---------------------------------------------------------------------------------------
// One tick path: the simulator's tick is the daemon's

/// Test double: a lag reader that replays recorded observations in order.
struct ReplayLag(Mutex<VecDeque<Observation>>);

impl ReadLag for ReplayLag {
    async fn read(
        &self,
        _group: &str,
        _topics: &[String],
    ) -> Result<Observation, shoal::kafka::KafkaError> {
        let next = self.0.lock().expect("lock").pop_front();
        next.ok_or_else(|| shoal::kafka::KafkaError::Broker {
            op: "replay",
            bootstrap: "replay".into(),
            message: "no observation left".into(),
        })
    }
}

/// Test double: a platform that replays recorded counts in order and keeps what is set.
struct ReplayScale {
    counts: Mutex<VecDeque<Counts>>,
    sets: Mutex<Vec<u32>>,
}

impl Scale for ReplayScale {
    async fn counts(&self, _service: &str) -> Result<Counts, ScaleError> {
        Ok(self
            .counts
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Counts::NONE))
    }
    async fn set(&self, _service: &str, count: u32) -> Result<(), ScaleError> {
        self.sets.lock().expect("lock").push(count);
        Ok(())
    }
}

/// The observations and counts the simulator's broker and platform handed its ticks, replayed
/// through the daemon's `Autoscaler::tick` (as `shoal autoscale` runs it), give the same
/// decisions, tick by tick, and the same counts set: the simulator decides through nothing
/// else.
#[tokio::test]
async fn the_daemon_tick_decides_as_the_simulator_on_the_same_observations() {
    let setups = [
        Setup::default(),
        Setup {
            members: MemberSource::Platform,
            ..Setup::default()
        },
    ];
    for setup in setups {
        for name in ["ramp", "skewed", "stuck"] {
            let trace = Trace::load(&repo_root().join(format!("benches/traces/{name}.csv")))
                .expect("loads");
            let run = sim::simulate(&trace, &setup, Which::Shoal);
            assert_eq!(
                run.ticks.len() as u64,
                trace.duration().div_ceil(setup.interval_seconds),
                "one tick every --interval"
            );
            let lag = ReplayLag(Mutex::new(
                run.ticks.iter().map(|t| t.observation.clone()).collect(),
            ));
            let scale = ReplayScale {
                counts: Mutex::new(run.ticks.iter().map(|t| t.counts).collect()),
                sets: Mutex::new(Vec::new()),
            };
            let mut daemon = sim::autoscaler(&setup);
            let mut decided = Vec::new();
            for _ in &run.ticks {
                let tick = daemon.tick(&lag, &scale, &sim::Discard, false).await;
                assert_eq!(tick.outcomes.len(), 1);
                decided.push(tick.outcomes[0].decision.clone());
            }
            let recorded: Vec<_> = run.ticks.iter().map(|t| t.decision.clone()).collect();
            assert_eq!(
                decided, recorded,
                "{name}, members from {:?}",
                setup.members
            );
            let changes: Vec<u32> = recorded
                .iter()
                .filter(|d| d.changed)
                .map(|d| d.desired)
                .collect();
            assert_eq!(*scale.sets.lock().expect("lock"), changes, "{name}");
            assert_eq!(run.scale_actions as usize, changes.len(), "{name}");
        }
    }
}

/// The simulated broker hands out only what the production reader reads: end and committed
/// offsets, the log-start offset only where the group never committed, read at the tick;
/// members from the group only with `--members group` (and then the replicas that joined, not
/// the ones still starting), none with `--members platform`, where the platform's running
/// count includes the replicas still starting.
#[test]
fn the_simulated_observation_holds_only_what_a_read_sees() {
    let trace = Trace::load(&repo_root().join("benches/traces/ramp.csv")).expect("loads");
    for source in [
        MemberSource::Group,
        MemberSource::GroupList,
        MemberSource::Platform,
    ] {
        let setup = Setup {
            members: source,
            ..Setup::default()
        };
        let run = sim::simulate(&trace, &setup, Which::Shoal);
        let mut saw_starting = false;
        for t in &run.ticks {
            let o = &t.observation;
            assert_eq!(o.topics.len(), 1);
            for r in &o.partitions {
                assert_eq!(r.read_at, o.at);
                assert_eq!(
                    r.log_start_offset.is_some(),
                    r.committed_offset.is_none(),
                    "{r:?}"
                );
                assert!(r.committed_offset.unwrap_or(0) <= r.end_offset, "{r:?}");
            }
            match source {
                MemberSource::Group | MemberSource::GroupList => {
                    let m = o.members.expect("the group's members");
                    assert_eq!(m.source, source);
                    assert!(m.count <= t.counts.running);
                    saw_starting |= m.count < t.counts.running;
                }
                MemberSource::Platform => {
                    assert_eq!(o.members, None, "the broker cannot say");
                }
            }
            assert_eq!(
                t.counts.desired, t.counts.running,
                "launched replicas are running"
            );
        }
        if source.joined() {
            assert!(
                saw_starting,
                "a scale-out's replicas are running before they join"
            );
        }
    }
}

/// Committed offsets move at the commit cadence, not per message: a tick every second sees
/// each partition's committed offset change only once every `--commit-interval` seconds
/// while the consumer keeps up.
#[test]
fn committed_offsets_move_at_the_commit_cadence() {
    let trace = Trace::parse(Path::new("flat.csv"), "0,60\n120,60\n").expect("parses");
    for every in [1u64, 5, 10] {
        let setup = Setup {
            interval_seconds: 1,
            commit_interval_seconds: every,
            min: 1,
            max: 1,
            ..Setup::default()
        };
        let run = sim::simulate(&trace, &setup, Which::Shoal);
        let committed: Vec<Option<i64>> = run
            .ticks
            .iter()
            .map(|t| t.observation.partitions[0].committed_offset)
            .collect();
        let moves = committed.windows(2).filter(|w| w[0] != w[1]).count() as u64;
        assert!(
            moves <= 120 / every + 1 && moves + 2 >= 120 / every,
            "every {every} s: {moves} moves in 120 s: {committed:?}"
        );
    }
}

/// A rebalance pauses the whole group under either policy, once for each change in its
/// members; with `--rebalance-seconds 0` nothing pauses.
#[test]
fn each_change_in_members_pauses_the_group() {
    let trace = Trace::load(&repo_root().join("benches/traces/spike.csv")).expect("loads");
    for which in [Which::Shoal, Which::Keda] {
        let run = sim::simulate(&trace, &Setup::default(), which);
        let member_changes = run
            .timeline
            .windows(2)
            .filter(|w| w[0][2] != w[1][2])
            .count() as u64;
        assert!(member_changes > 0);
        assert!(
            run.rebalance_seconds > 0 && run.rebalance_seconds <= 10 * member_changes,
            "{which:?}: {} s for {member_changes} changes",
            run.rebalance_seconds
        );
        let free = sim::simulate(
            &trace,
            &Setup {
                rebalance_seconds: 0,
                ..Setup::default()
            },
            which,
        );
        assert_eq!(free.rebalance_seconds, 0);
        assert!(free.p99_lag_seconds <= run.p99_lag_seconds, "{which:?}");
    }
}

/// A hot partition: with the skewed trace's weights an even split would call 4 replicas
/// enough at 280 msg/s, but partition 0's owner would get 112 msg/s. shoal holds the lag
/// target there wherever the start-up allows (as [`missed_goals`] counts it: the first
/// minutes at one replica are beyond any policy); the same trace split evenly needs fewer
/// replicas, and no more than the 6 that keep up are ever asked for.
#[test]
fn a_hot_partition_is_scaled_for() {
    let skewed = Trace::load(&repo_root().join("benches/traces/skewed.csv")).expect("loads");
    assert_eq!(
        skewed.partition_weights.as_ref().map(|(_, w)| w.len()),
        Some(12)
    );
    let setup = Setup::default();
    let hot = sim::simulate(&skewed, &setup, Which::Shoal);
    let even = sim::simulate(
        &skewed,
        &Setup {
            partition_weights: Some(vec![1.0; 12]),
            ..Setup::default()
        },
        Which::Shoal,
    );
    let allowed = sim::p99(
        hot.seconds
            .iter()
            .enumerate()
            .filter(|(t, _)| !startup_bound(&skewed, &setup, *t as u64))
            .map(|(_, s)| s.0)
            .collect(),
    );
    assert!(allowed <= setup.max_lag_seconds, "{allowed}");
    assert!(hot.replica_seconds > even.replica_seconds);
    let peak = |r: &sim::Run| r.timeline.iter().map(|p| p[1]).max().unwrap_or(0);
    assert_eq!(peak(&hot), 6, "{:?}", hot.timeline);
}

// ---------------------------------------------------------------------------------------
// The command line

/// `shoal simulate --trace TRACE ARGS…`, run from the repository's root.
fn simulate(trace: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["simulate", "--trace", trace];
    all.extend_from_slice(args);
    shoal(&repo_root(), &all)
}

#[test]
fn simulate_prints_a_side_by_side_table() {
    let out = shoal(
        &repo_root(),
        &["simulate", "--trace", "benches/traces/spike.csv"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn simulate_json_is_keyed_by_policy_with_a_replayable_timeline() {
    let out = simulate("benches/traces/ramp.csv", &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for policy in ["shoal", "keda"] {
        let p = &v[policy];
        for key in [
            "peak_lag_seconds",
            "p99_lag_seconds",
            "replica_seconds",
            "scale_actions",
            "rebalance_seconds",
        ] {
            assert!(p[key].is_number(), "{policy}.{key}: {p}");
        }
        let timeline = p["timeline"].as_array().expect("timeline");
        assert_eq!(timeline[0], serde_json::json!([0, 1, 1]));
        assert!(timeline
            .iter()
            .all(|e| e.as_array().is_some_and(|e| e.len() == 3)));
    }
    let out = simulate(
        "benches/traces/ramp.csv",
        &["--policy", "keda", "-o", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v.get("shoal").is_none() && v.get("keda").is_some(), "{v}");
}

#[test]
fn simulate_plots_both_policies_to_svg() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("spike.svg");
    let trace = repo_root().join("benches/traces/spike.csv");
    let out = shoal(
        dir.path(),
        &[
            "simulate",
            "--trace",
            &trace.to_string_lossy(),
            "--plot",
            &svg.to_string_lossy(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        drawn.starts_with("<svg"),
        "{}",
        &drawn[..drawn.len().min(200)]
    );
    let labels: Vec<&str> = drawn
        .split("<text")
        .filter_map(|t| t.split_once('>').map(|(_, rest)| rest))
        .filter_map(|t| t.split_once("</text>").map(|(label, _)| label.trim()))
        .collect();
    for want in ["shoal", "keda", "lag (s)", "replicas"] {
        assert!(labels.contains(&want), "{want} not in {labels:?}");
    }
}

#[test]
fn a_broken_trace_names_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "t_seconds,produce_rate\n0,100\n60,fast\n",
            "bad.csv:3: produce_rate is not a number",
        ),
        (
            "0,100\n60,100\n30,100\n",
            "bad.csv:3: t_seconds 30 is before the previous row's 60",
        ),
        (
            "0,100,12\n60,100\n",
            "bad.csv:1: stuck partition 12 does not exist with 12 partitions",
        ),
        ("", "bad.csv: no data rows"),
    ];
    for (csv, want) in cases {
        std::fs::write(dir.path().join("bad.csv"), csv).expect("write");
        let out = shoal(dir.path(), &["simulate", "--trace", "bad.csv"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{csv:?}: {err}");
        assert!(err.contains(want), "{csv:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = shoal(dir.path(), &["simulate", "--trace", "missing.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.csv: cannot read the trace"));
    let out = shoal(
        dir.path(),
        &[
            "simulate",
            "--trace",
            "missing.csv",
            "--min",
            "5",
            "--max",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--min 5 and --max 2"));
}

#[test]
fn simulate_help_has_examples() {
    let out = shoal(&repo_root(), &["simulate", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("--plot"),
        "{help}"
    );
    assert!(help.contains("--policy <POLICY>"), "{help}");
}

#[test]
fn bad_partition_weights_say_which_and_exit_2() {
    let spike = repo_root().join("benches/traces/spike.csv");
    let spike = spike.to_string_lossy();
    let cases = [
        (
            "1,2,3",
            "--partition-weights has 3 weights for 12 partitions",
        ),
        (
            "1,1,1,1,1,1,1,1,1,1,1,-2",
            "the weight of partition 11 is -2; weights must be finite numbers ≥ 0",
        ),
        (
            "1,1,x,1,1,1,1,1,1,1,1,1",
            "the weight of partition 2 is not a number: \"x\"",
        ),
        (
            "1,,1,1,1,1,1,1,1,1,1,1",
            "the weight of partition 1 is empty",
        ),
        ("0,0,0,0,0,0,0,0,0,0,0,0", "are all 0"),
    ];
    for (weights, want) in cases {
        let out = simulate(&spike, &["--partition-weights", weights]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{weights}: {err}");
        assert!(err.contains(want), "{weights}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A trace's own weights line is checked against the partitions, with its line.
    let skewed = repo_root().join("benches/traces/skewed.csv");
    let out = simulate(&skewed.to_string_lossy(), &["--partitions", "6"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("skewed.csv:6: `# partition-weights:` has 12 weights for 6 partitions"),
        "{err}"
    );
}

#[test]
fn simulate_takes_the_member_source_rebalance_and_weights() {
    let skewed = repo_root().join("benches/traces/skewed.csv");
    let out = simulate(
        &skewed.to_string_lossy(),
        &[
            "--members",
            "platform",
            "--rebalance-seconds",
            "0",
            "--commit-interval",
            "1",
            "--partition-weights",
            "1,1,1,1,1,1,1,1,1,1,1,1",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for want in [
        "partition weights 1,1,1,1,1,1,1,1,1,1,1,1",
        "rebalance 0 s",
        "commits every 1 s",
        "members from the platform",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let rebalancing = stdout
        .lines()
        .find(|l| l.starts_with("rebalancing (s)"))
        .expect("a rebalancing row");
    assert_eq!(
        rebalancing.split_whitespace().collect::<Vec<_>>(),
        ["rebalancing", "(s)", "0", "0"]
    );
}
