//! `shoal status` on docker evaluates the conditions of a consumer's `[alarms]` from its own
//! reads, where ECS has CloudWatch alarms: two reads of the group's lag [`SAMPLE`] apart
//! (as `shoal lag` takes them) and the containers' running and desired counts. With no
//! history behind one `status`, each condition is judged on this moment, not over N minutes:
//!
//! - `lag`: the busiest partition's lag seconds (lag at the arrival rate, or at the consume
//!   rate) above `max_lag_seconds`; lag with nothing consumed during the sample is also
//!   over (the consumer is not keeping up at all);
//! - `no-lag-data`: the lag cannot be read from the broker. (On ECS the alarm means that
//!   `shoal autoscale` published no lag: the daemon is down or cannot read the lag. The
//!   docker platform's autoscaler publishes nothing, so here only the read itself is judged.)
//! - `below-desired`: fewer containers running than desired;
//! - `dlq`: the dead-letter topic grew during the sample (its end offsets, summed over its
//!   partitions, are higher in the second read than in the first).

use std::time::Duration;

use crate::deploy::{AlarmStatus, Session, StatusRow};
use crate::discover::Fleet;
use crate::kafka::lag::{LagReader, Observation};
use crate::manifest::{Consumer, OffsetReset};

/// How far apart the two lag reads are.
pub const SAMPLE: Duration = Duration::from_secs(2);

const OK: &str = "OK";
const ALARM: &str = "ALARM";
const INSUFFICIENT: &str = "INSUFFICIENT_DATA";

fn status(alarm: &str, state: &str, reason: String) -> AlarmStatus {
    AlarmStatus {
        alarm: alarm.to_string(),
        state: state.to_string(),
        reason,
    }
}

/// The reads of one consumer: its group on its topics, and its DLQ topic, twice.
struct Reads {
    lag: [Option<Observation>; 2],
    dlq: [Option<Observation>; 2],
    error: Option<String>,
}

/// One consumer's reads at one moment: its lag, its DLQ topic's, and why the lag could not be
/// read.
type Round = (Option<Observation>, Option<Observation>, Option<String>);

/// Reads every consumer's group on its topics, and its DLQ topic where it has one, as one
/// batch; one round per consumer, in order.
fn read_round(reader: &LagReader, watched: &[&Consumer]) -> Vec<Round> {
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    // Where each consumer's reads stand in `wanted`: its lag's, and its DLQ's.
    let mut at: Vec<Option<(usize, Option<usize>)>> = Vec::new();
    for c in watched {
        let (Some(k), Some(a)) = (&c.kafka, &c.alarms) else {
            at.push(None);
            continue;
        };
        wanted.push((k.group.clone(), k.topics.clone()));
        let lag = wanted.len() - 1;
        let dlq = a.dlq_topic.as_ref().map(|t| {
            wanted.push((k.group.clone(), vec![t.clone()]));
            wanted.len() - 1
        });
        at.push(Some((lag, dlq)));
    }
    let mut reads: Vec<Option<Result<Observation, String>>> =
        tokio::task::block_in_place(|| reader.read_all(&wanted))
            .into_iter()
            .map(|r| Some(r.map_err(|e| e.to_string())))
            .collect();
    let mut take = |i: usize| reads.get_mut(i).and_then(Option::take);
    at.into_iter()
        .map(|place| {
            let Some((lag, dlq)) = place else {
                return (None, None, None);
            };
            let (lag, error) = match take(lag) {
                Some(Ok(o)) => (Some(o), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, Some("no answer for the group".to_string())),
            };
            let dlq = dlq.and_then(|i| take(i)?.ok());
            (lag, dlq, error)
        })
        .collect()
}

/// Adds the alarm states of every consumer with `[alarms]` to its row.
pub async fn evaluate(session: &Session<'_>, fleet: &Fleet, rows: &mut [StatusRow]) {
    let watched: Vec<&Consumer> = fleet
        .consumers
        .iter()
        .filter(|c| c.alarms.is_some() && rows.iter().any(|r| r.consumer == c.name))
        .collect();
    if watched.is_empty() {
        return;
    }
    let reader = session
        .kafka()
        .await
        .map(|conn| LagReader::with(conn.clone(), Duration::from_secs(10)));
    let mut reads: Vec<Reads> = Vec::new();
    match &reader {
        Ok(reader) => {
            let first = read_round(reader, &watched);
            tokio::time::sleep(SAMPLE).await;
            let second = read_round(reader, &watched);
            for ((l0, d0, _), (l1, d1, error)) in first.into_iter().zip(second) {
                reads.push(Reads {
                    lag: [l0, l1],
                    dlq: [d0, d1],
                    error,
                });
            }
        }
        Err(e) => {
            for _ in &watched {
                reads.push(Reads {
                    lag: [None, None],
                    dlq: [None, None],
                    error: Some(e.to_string()),
                });
            }
        }
    }
    for (c, r) in watched.into_iter().zip(reads) {
        let Some(row) = rows.iter_mut().find(|row| row.consumer == c.name) else {
            continue;
        };
        row.alarms = judge(c, row.desired, row.running, &r);
    }
}

fn judge(c: &Consumer, desired: u32, running: u32, r: &Reads) -> Vec<AlarmStatus> {
    let (Some(alarms), Some(scaling)) = (&c.alarms, c.scaling) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let offset_reset = c
        .kafka
        .as_ref()
        .map_or(OffsetReset::Earliest, |k| k.offset_reset);
    if alarms.lag_minutes > 0 {
        out.push(match (&r.lag[0], &r.lag[1]) {
            (Some(a), Some(b)) => lag_state(a, b, offset_reset, scaling.max_lag_seconds),
            _ => status("lag", INSUFFICIENT, "the lag could not be read".into()),
        });
    }
    if alarms.no_data_minutes > 0 {
        out.push(match &r.error {
            Some(e) => status("no-lag-data", ALARM, format!("cannot read the lag: {e}")),
            None => status("no-lag-data", OK, "the lag was read from the broker".into()),
        });
    }
    if alarms.below_desired_minutes > 0 {
        out.push(if running < desired {
            status(
                "below-desired",
                ALARM,
                format!("{running} of {desired} containers running"),
            )
        } else {
            status(
                "below-desired",
                OK,
                format!("{running} of {desired} containers running"),
            )
        });
    }
    if let Some(topic) = &alarms.dlq_topic {
        out.push(match (&r.dlq[0], &r.dlq[1]) {
            (Some(a), Some(b)) => {
                let end = |o: &Observation| o.partitions.iter().map(|p| p.end_offset).sum::<i64>();
                let grew = end(b) - end(a);
                if grew > 0 {
                    status("dlq", ALARM, format!("{topic} grew by {grew} messages"))
                } else {
                    status("dlq", OK, format!("{topic} did not grow"))
                }
            }
            _ => status("dlq", INSUFFICIENT, format!("{topic} could not be read")),
        });
    }
    out
}

/// The lag condition from two reads: the busiest partition's lag seconds against the limit.
fn lag_state(a: &Observation, b: &Observation, reset: OffsetReset, max: f64) -> AlarmStatus {
    let dt = (b.at - a.at).max(1e-3);
    let mut worst: Option<(f64, i64)> = None;
    let mut stuck = 0i64;
    for (x, y) in a.partitions.iter().zip(&b.partitions) {
        let start = match (y.committed_offset, reset) {
            (Some(c), _) => Some(c),
            (None, OffsetReset::Earliest) => Some(y.log_start_offset.unwrap_or(0)),
            (None, OffsetReset::Latest) => None,
        };
        let Some(lag) = start.map(|s| (y.end_offset - s).max(0)) else {
            continue;
        };
        if lag == 0 {
            continue;
        }
        let arrival = (y.end_offset - x.end_offset).max(0) as f64 / dt;
        let consumed = match (x.committed_offset, y.committed_offset) {
            (Some(u), Some(v)) => (v - u).max(0) as f64 / dt,
            _ => 0.0,
        };
        if consumed == 0.0 {
            stuck += lag;
            continue;
        }
        let rate = if arrival > 0.0 { arrival } else { consumed };
        let seconds = lag as f64 / rate;
        if worst.is_none_or(|(w, _)| seconds > w) {
            worst = Some((seconds, lag));
        }
    }
    if stuck > 0 {
        return status(
            "lag",
            ALARM,
            format!(
                "{stuck} messages behind and none consumed in {}s (max_lag_seconds = {max})",
                SAMPLE.as_secs()
            ),
        );
    }
    match worst {
        Some((s, lag)) if s > max => status(
            "lag",
            ALARM,
            format!("{s:.1}s of lag ({lag} messages) above max_lag_seconds = {max}"),
        ),
        Some((s, _)) => status(
            "lag",
            OK,
            format!("{s:.1}s of lag, within max_lag_seconds = {max}"),
        ),
        None => status("lag", OK, "no lag".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::lag::PartitionRead;

    fn read(at: f64, parts: &[(i64, Option<i64>)]) -> Observation {
        let partitions = parts
            .iter()
            .map(|&(end_offset, committed_offset)| PartitionRead {
                end_offset,
                committed_offset,
                log_start_offset: Some(0),
                read_at: at,
            })
            .collect();
        Observation::one_topic(at, "t", partitions, None)
    }

    #[test]
    fn lag_is_judged_in_seconds_at_the_arrival_rate() {
        // 100 behind, 10/s arriving: 10 s of lag.
        let a = read(0.0, &[(1000, Some(880))]);
        let b = read(2.0, &[(1020, Some(920))]);
        let s = lag_state(&a, &b, OffsetReset::Earliest, 30.0);
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            (OK, "10.0s of lag, within max_lag_seconds = 30")
        );
        let s = lag_state(&a, &b, OffsetReset::Earliest, 5.0);
        assert_eq!(s.state, ALARM, "{s:?}");
    }

    /// A scaled worker on `t` whose `[alarms]` watch the dead-letter topic `t.dlq`.
    fn with_dlq() -> Consumer {
        let text = "kind = \"worker\"\n[kafka]\ngroup = \"g\"\ntopics = [\"t\"]\n\
                    [scaling]\nmin = 1\nmax = 2\n[alarms]\ndlq_topic = \"t.dlq\"\n";
        Consumer::for_test("w", text)
    }

    /// The state and reason `judge` gives `alarm`.
    fn judged(c: &Consumer, r: &Reads, alarm: &str) -> (String, String) {
        let all = judge(c, 1, 1, r);
        let a = all
            .iter()
            .find(|a| a.alarm == alarm)
            .unwrap_or_else(|| panic!("no {alarm} in {all:?}"));
        (a.state.clone(), a.reason.clone())
    }

    #[test]
    fn the_dlq_alarm_fires_when_the_dead_letter_topic_grew_between_the_reads() {
        let c = with_dlq();
        let lag = [
            Some(read(0.0, &[(5, Some(5))])),
            Some(read(2.0, &[(5, Some(5))])),
        ];
        let dlq = |before: &[(i64, Option<i64>)], after: &[(i64, Option<i64>)]| Reads {
            lag: lag.clone(),
            dlq: [Some(read(0.0, before)), Some(read(2.0, after))],
            error: None,
        };
        // Two partitions: growth on either counts, summed.
        let grew = dlq(&[(4, None), (7, None)], &[(5, None), (9, None)]);
        assert_eq!(
            judged(&c, &grew, "dlq"),
            (ALARM.into(), "t.dlq grew by 3 messages".into())
        );
        let same = dlq(&[(4, None), (7, None)], &[(4, None), (7, None)]);
        assert_eq!(
            judged(&c, &same, "dlq"),
            (OK.into(), "t.dlq did not grow".into())
        );
        // Messages on the DLQ from before the sample are not growth.
        let old = dlq(&[(900, None)], &[(900, None)]);
        assert_eq!(judged(&c, &old, "dlq").0, OK);
        let unread = Reads {
            lag,
            dlq: [Some(read(0.0, &[(4, None)])), None],
            error: None,
        };
        assert_eq!(
            judged(&c, &unread, "dlq"),
            (INSUFFICIENT.into(), "t.dlq could not be read".into())
        );
        // The other three alarms are judged next to it, and no DLQ means no `dlq` alarm.
        let names: Vec<String> = judge(&c, 1, 1, &same)
            .into_iter()
            .map(|a| a.alarm)
            .collect();
        assert_eq!(names, ["lag", "no-lag-data", "below-desired", "dlq"]);
        let mut plain = c.clone();
        if let Some(a) = plain.alarms.as_mut() {
            a.dlq_topic = None;
        }
        assert!(judge(&plain, 1, 1, &grew).iter().all(|a| a.alarm != "dlq"));
    }

    #[test]
    fn no_lag_data_means_the_broker_could_not_be_read() {
        let c = with_dlq();
        let unread = Reads {
            lag: [None, None],
            dlq: [None, None],
            error: Some("connection refused".into()),
        };
        assert_eq!(
            judged(&c, &unread, "no-lag-data"),
            (
                ALARM.into(),
                "cannot read the lag: connection refused".into()
            )
        );
        assert_eq!(judged(&c, &unread, "lag").0, INSUFFICIENT);
        let read_fine = Reads {
            lag: [
                Some(read(0.0, &[(5, Some(5))])),
                Some(read(2.0, &[(5, Some(5))])),
            ],
            dlq: [None, None],
            error: None,
        };
        assert_eq!(judged(&c, &read_fine, "no-lag-data").0, OK);
    }

    #[test]
    fn lag_that_nothing_consumes_is_over_and_no_lag_is_ok() {
        let a = read(0.0, &[(50, Some(10)), (5, Some(5))]);
        let b = read(2.0, &[(50, Some(10)), (5, Some(5))]);
        let s = lag_state(&a, &b, OffsetReset::Earliest, 30.0);
        assert_eq!(s.state, ALARM);
        assert!(s.reason.starts_with("40 messages behind"), "{s:?}");
        let c = read(2.0, &[(50, Some(50)), (5, Some(5))]);
        assert_eq!(
            lag_state(&c, &c, OffsetReset::Earliest, 30.0).reason,
            "no lag"
        );
        // Under `latest`, a partition the group never committed on is not lag.
        let d = read(2.0, &[(50, None)]);
        assert_eq!(lag_state(&d, &d, OffsetReset::Latest, 30.0).state, OK);
    }
}
