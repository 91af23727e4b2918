//! The simulator behind `shoal simulate`: runs a policy over a produce-rate trace, second by
//! second, with partitions, Kafka's range assignor and a start-up delay.
//!
//! The model:
//! - Arrivals are split evenly over the partitions, so one per-second arrival curve serves
//!   them all; a partition's queue is what lies between its consumed count and the curve, and
//!   its oldest message arrived in the first second whose curve passes that count.
//! - A serving replica's rate is split evenly over the partitions the range assignor gives it.
//!   A stuck partition consumes nothing and its share of its owner's rate is lost (the owner
//!   keeps retrying the poison message).
//! - A new replica serves nothing until `startup_seconds` after its launch, but counts towards
//!   replica-seconds from its launch. Scaling in stops the newest replicas first. Rebalances
//!   are free.
//! - Lag seconds at the end of each second = the age of the oldest unconsumed message over the
//!   partitions that are not stuck at that moment (no policy can fix a stuck partition, and it
//!   would hide every other difference). KEDA still sees the stuck partition's lag, as it does
//!   in production.
//! - shoal's policy runs every `interval_seconds` on the offsets a real tick would read; the
//!   KEDA model runs as described in [`super::keda`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::keda::Keda;
use super::policy::{self, Config, MemberSource, Members, Observation, PartitionRead, State};

/// A produce-rate trace: `t_seconds,produce_rate[,stuck]` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub file: PathBuf,
    pub rows: Vec<Row>,
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
    /// number is a header; blank lines and `#` comments are skipped. Times must not go
    /// backwards (repeat a time to make a step). `stuck` is empty, `-`, or partition numbers
    /// separated by spaces.
    pub fn parse(path: &Path, text: &str) -> Result<Trace, TraceError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let err = |line: usize, message: String| TraceError {
            file: path.to_path_buf(),
            line: Some(line),
            message,
        };
        let mut rows: Vec<Row> = Vec::new();
        let mut seen_data_or_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
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
        })
    }

    /// Checks the stuck partitions against the partition count.
    pub fn check(&self, partitions: u32) -> Result<(), TraceError> {
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
    /// How often shoal's policy runs.
    pub interval_seconds: u64,
    /// Whether shoal's policy may alternate between two useful counts.
    pub duty_cycle: bool,
}

impl Default for Setup {
    /// The CLI's defaults: 12 partitions, 60 s start-up, 100 msg/s per replica, 60 s target,
    /// 1..12 replicas, KEDA's threshold from the target, 30 s ticks.
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
        }
    }
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
        Ok(())
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
    /// `[t_seconds, desired, serving]` at t = 0 and at every change.
    pub timeline: Vec<[u64; 3]>,
    /// Per second: (lag seconds, desired, serving). For plots; not printed.
    #[serde(skip)]
    pub seconds: Vec<(f64, u32, u32)>,
}

/// Messages below this are rounding, not lag.
const EPSILON: f64 = 1e-6;

/// The longest trace simulated: 7 days of seconds.
pub const MAX_SECONDS: f64 = 7.0 * 86_400.0;

struct Replica {
    serving_from: u64,
}

/// Runs one policy over a trace. The trace must have passed [`Trace::check`] and the setup
/// [`Setup::check`].
pub fn simulate(trace: &Trace, setup: &Setup, which: Which) -> Run {
    let p = setup.partitions as usize;
    let duration = trace.duration();
    let start = setup.min.min(setup.max);
    let mut replicas: Vec<Replica> = (0..start).map(|_| Replica { serving_from: 0 }).collect();
    // Arrivals are the same on every partition, so one curve serves all: `arrived[a]` is the
    // messages each partition has received up to the end of second `a`. A partition's queue
    // is everything between its `consumed` count and the curve.
    let mut arrived: Vec<f64> = Vec::with_capacity(duration as usize);
    let mut consumed = vec![0.0f64; p];
    let backlog = |arrived: &[f64], consumed: f64| -> f64 {
        (arrived.last().copied().unwrap_or(0.0) - consumed).max(0.0)
    };
    let mut keda = Keda::new(
        setup.partitions,
        setup.lag_threshold(),
        setup.min,
        setup.max,
    );
    let cfg = setup.policy_config();
    let mut state = State::new(start);
    let mut desired = start;
    let mut run = Run {
        peak_lag_seconds: 0.0,
        p99_lag_seconds: 0.0,
        replica_seconds: 0,
        scale_actions: 0,
        timeline: Vec::new(),
        seconds: Vec::with_capacity(duration as usize),
    };
    let serving_count = |replicas: &[Replica], t: u64| {
        replicas.iter().filter(|r| r.serving_from <= t).count() as u32
    };
    for t in 0..duration {
        // Decide at the start of the second, on the state so far.
        let next = match which {
            Which::Shoal if t % setup.interval_seconds == 0 => {
                let obs = Observation::one_topic(
                    t as f64,
                    "simulated",
                    (0..p)
                        .map(|i| PartitionRead {
                            end_offset: arrived.last().copied().unwrap_or(0.0).floor() as i64,
                            committed_offset: Some(consumed[i].floor() as i64),
                            log_start_offset: None,
                            read_at: t as f64,
                        })
                        .collect(),
                    Some(Members {
                        count: serving_count(&replicas, t),
                        source: MemberSource::Group,
                    }),
                );
                let (decision, s) = policy::decide(&cfg, &state, Some(&obs));
                state = s;
                if decision.changed {
                    tracing::debug!(t, desired = decision.desired, reason = %decision.reason, "shoal decision");
                }
                decision.desired
            }
            Which::Shoal => desired,
            Which::Keda => {
                let total: f64 = consumed.iter().map(|&c| backlog(&arrived, c)).sum();
                keda.step(t, total.floor())
            }
        };
        if next != desired {
            run.scale_actions += 1;
            desired = next;
        }
        while (replicas.len() as u32) < desired {
            replicas.push(Replica {
                serving_from: t + setup.startup_seconds,
            });
        }
        replicas.truncate(desired as usize);

        // Arrivals.
        let per_partition = trace.rate_at(t as f64) / p as f64;
        arrived.push(arrived.last().copied().unwrap_or(0.0) + per_partition);
        // Consumption.
        let serving = serving_count(&replicas, t);
        let stuck = trace.stuck_at(t as f64);
        let share = policy::owner_share(setup.partitions, serving);
        for (i, done) in consumed.iter_mut().enumerate() {
            if serving == 0 || stuck.contains(&(i as u32)) {
                continue;
            }
            let rate = setup.per_replica_rate / f64::from(share[i]);
            *done += rate.min(backlog(&arrived, *done));
        }
        // Time lag at the end of the second: the oldest unconsumed message arrived in the
        // first second whose curve passes the partition's consumed count.
        let lag = consumed
            .iter()
            .enumerate()
            .filter(|(i, _)| !stuck.contains(&(*i as u32)))
            .filter(|(_, &done)| backlog(&arrived, done) > EPSILON)
            .map(|(_, &done)| {
                let oldest = arrived.partition_point(|&a| a <= done + EPSILON) as u64;
                (t + 1 - oldest.min(t)) as f64
            })
            .fold(0.0, f64::max);
        run.replica_seconds += replicas.len() as u64;
        run.peak_lag_seconds = run.peak_lag_seconds.max(lag);
        run.seconds.push((lag, desired, serving));
        let point = [t, u64::from(desired), u64::from(serving)];
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
