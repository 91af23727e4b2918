//! Autoscaling: shoal's policy ([`policy`]), the KEDA+HPA model it is measured against
//! ([`keda`]), and the simulator that runs both over a produce-rate trace ([`sim`], [`plot`]).

pub mod command;
pub mod daemon;
pub mod keda;
pub mod plot;
pub mod policy;
pub mod sim;

use serde_json::{Map, Value};

use sim::{Run, Setup, Trace, Which};

/// A row of the text table: its label and how to print one run's figure.
type TableRow = (&'static str, fn(&Run) -> String);

/// The runs of one `shoal simulate`, in policy order.
pub struct Comparison {
    pub runs: Vec<(Which, Run)>,
}

impl Comparison {
    /// Runs each policy over the trace.
    pub fn run(trace: &Trace, setup: &Setup, policies: &[Which]) -> Comparison {
        Comparison {
            runs: policies
                .iter()
                .map(|&w| (w, sim::simulate(trace, setup, w)))
                .collect(),
        }
    }

    pub fn get(&self, which: Which) -> Option<&Run> {
        self.runs.iter().find(|(w, _)| *w == which).map(|(_, r)| r)
    }

    /// `{"shoal": {...}, "keda": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (which, run) in &self.runs {
            map.insert(
                which.name().to_string(),
                serde_json::to_value(run).unwrap_or(Value::Null),
            );
        }
        Value::Object(map)
    }

    /// A side-by-side table with a line describing the setup.
    pub fn to_text(&self, trace: &Trace, setup: &Setup) -> String {
        let weights = match setup.weights(trace) {
            Some(w) => format!(
                "partition weights {}",
                w.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
            ),
            None => "even partitions".to_string(),
        };
        let mut out = format!(
            "{}: {} s, {} partitions ({weights}), {} msg/s per replica, start-up {} s, rebalance {} s, commits every {} s, max lag {} s, replicas {}..{}, shoal every {} s with members from the {}, keda lagThreshold {}\n\n",
            trace.file.display(),
            trace.duration(),
            setup.partitions,
            setup.per_replica_rate,
            setup.startup_seconds,
            setup.rebalance_seconds,
            setup.commit_interval_seconds,
            setup.max_lag_seconds,
            setup.min,
            setup.max,
            setup.interval_seconds,
            setup.members.name(),
            setup.lag_threshold(),
        );
        let rows: [TableRow; 5] = [
            ("peak lag (s)", |r| format!("{:.0}", r.peak_lag_seconds)),
            ("p99 lag (s)", |r| format!("{:.0}", r.p99_lag_seconds)),
            ("replica-seconds", |r| r.replica_seconds.to_string()),
            ("scale actions", |r| r.scale_actions.to_string()),
            ("rebalancing (s)", |r| r.rebalance_seconds.to_string()),
        ];
        out.push_str(&format!("{:<18}", ""));
        for (which, _) in &self.runs {
            out.push_str(&format!("{:>12}", which.name()));
        }
        out.push('\n');
        for (label, cell) in rows {
            out.push_str(&format!("{label:<18}"));
            for (_, run) in &self.runs {
                out.push_str(&format!("{:>12}", cell(run)));
            }
            out.push('\n');
        }
        if let (Some(s), Some(k)) = (self.get(Which::Shoal), self.get(Which::Keda)) {
            if k.replica_seconds > 0 {
                let saved = 100.0 * (1.0 - s.replica_seconds as f64 / k.replica_seconds as f64);
                let (amount, how) = if saved >= 0.0 {
                    (saved, "fewer")
                } else {
                    (-saved, "more")
                };
                out.push_str(&format!(
                    "\nshoal uses {amount:.1} % {how} replica-seconds than keda\n"
                ));
            }
        }
        out
    }
}
