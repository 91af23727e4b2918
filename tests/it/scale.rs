//! The scaling policy's properties, the simulator on every shipped trace (shoal against the
//! KEDA+HPA model), and `shoal simulate` as a user runs it.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use shoal::manifest::Scaling;
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
    ) {
        let dir = Path::new("constant.csv");
        let trace = Trace::parse(dir, &format!("0,{rate}\n3600,{rate}\n")).expect("parses");
        let setup = Setup {
            partitions,
            startup_seconds: startup,
            per_replica_rate: per_replica,
            max_lag_seconds: 60.0,
            min,
            max: partitions,
            lag_threshold: None,
            interval_seconds: 30,
            duty_cycle,
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
    for want in ["diurnal", "ramp", "spike", "steady", "stuck"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want}.csv missing: {names:?}"
        );
    }
}

/// On every shipped trace shoal must use fewer replica-seconds than the KEDA model with a
/// p99 lag no worse. Prints both policies' figures for each trace.
#[test]
fn shoal_beats_keda_on_every_shipped_trace() {
    let setup = default_setup();
    let mut failures = Vec::new();
    for path in traces() {
        let (trace, c) = compare(&path);
        println!("{}", c.to_text(&trace, &setup));
        let shoal = c.get(Which::Shoal).expect("shoal ran");
        let keda = c.get(Which::Keda).expect("keda ran");
        let wins = shoal.replica_seconds < keda.replica_seconds
            && shoal.p99_lag_seconds <= keda.p99_lag_seconds;
        if !wins {
            failures.push(format!(
                "{}: shoal {} replica-seconds, p99 {:.0}s; keda {} replica-seconds, p99 {:.0}s",
                path.display(),
                shoal.replica_seconds,
                shoal.p99_lag_seconds,
                keda.replica_seconds,
                keda.p99_lag_seconds
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
// The command line

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
    let out = shoal(
        &repo_root(),
        &[
            "simulate",
            "--trace",
            "benches/traces/ramp.csv",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for policy in ["shoal", "keda"] {
        let p = &v[policy];
        for key in [
            "peak_lag_seconds",
            "p99_lag_seconds",
            "replica_seconds",
            "scale_actions",
        ] {
            assert!(p[key].is_number(), "{policy}.{key}: {p}");
        }
        let timeline = p["timeline"].as_array().expect("timeline");
        assert_eq!(timeline[0], serde_json::json!([0, 1, 1]));
        assert!(timeline
            .iter()
            .all(|e| e.as_array().is_some_and(|e| e.len() == 3)));
    }
    let out = shoal(
        &repo_root(),
        &[
            "simulate",
            "--trace",
            "benches/traces/ramp.csv",
            "--policy",
            "keda",
            "-o",
            "json",
        ],
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
