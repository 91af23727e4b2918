//! `shoal logs` on ECS: a consumer's lines from CloudWatch Logs.
//!
//! The task definition sends each container's output to the log group
//! `<log_group_prefix>/<consumer>` with the stream prefix `<consumer>` (the awslogs driver),
//! so every task writes the stream `<consumer>/<container>/<task id>`; the task id names the
//! replica. The lines since `--since` come from FilterLogEvents (every page, every stream of
//! the consumer, in time order). Following, shoal asks for a StartLiveTail session and, when
//! the endpoint refuses or lacks it (moto's answer is not an event stream, and the SDK sends
//! it to a `stream-` host an emulator does not have), polls FilterLogEvents every [`POLL`],
//! going back [`LOOKBACK_MS`] from the newest line seen so that late lines are not lost; it
//! logs which of the two runs.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::StartLiveTailResponseStream;
use aws_sdk_cloudwatchlogs::Client;
use tracing::{debug, info, warn};

use crate::aws::AwsError;
use crate::manifest::Environment;
use crate::platform::logs::{in_time_order, LogLine, LogQuery, LogSink, Tail};

/// How often the polling fallback asks for new lines. FilterLogEvents allows a few calls a
/// second per account, so this leaves room for other readers.
pub const POLL: Duration = Duration::from_secs(2);

/// What reading a consumer's CloudWatch logs can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EcsLogsError {
    #[error(
        "{consumer} has no log group {group} in environment {env}: nothing of it has been deployed there; run `shoal deploy --env {env}`"
    )]
    NoLogGroup {
        consumer: String,
        group: String,
        env: String,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Reads `query`'s lines and hands them to `sink` in time order; following, never returns
/// unless a read fails.
pub async fn read_with(
    client: &Client,
    env: &Environment,
    query: &LogQuery,
    sink: &mut LogSink<'_>,
) -> Result<(), EcsLogsError> {
    let group = env.log_group(&query.consumer);
    let arn = group_arn(client, &group)
        .await?
        .ok_or_else(|| EcsLogsError::NoLogGroup {
            consumer: query.consumer.clone(),
            group: group.clone(),
            env: env.name.clone(),
        })?;
    let source = Source {
        client,
        group: &group,
        stream_prefix: format!("{}/", query.consumer),
        pattern: query.filter.as_deref().map(filter_pattern),
    };
    let mut seen = Seen::new(query.since_millis());
    let events = source.filter(seen.from()).await?;
    sink(seen.fresh(events));
    if !query.follow {
        return Ok(());
    }
    match source.live_tail(&arn, &mut seen, sink).await {
        Ok(()) => {}
        Err(e) => info!(
            log_group = %group,
            reason = %e,
            "StartLiveTail is not available here; following with {}",
            Tail::Polling.as_str()
        ),
    }
    loop {
        tokio::time::sleep(POLL).await;
        let events = source.filter(seen.from()).await?;
        sink(seen.fresh(events));
    }
}

/// The ARN of a log group (StartLiveTail names groups by ARN), or `None` when there is none.
async fn group_arn(client: &Client, group: &str) -> Result<Option<String>, AwsError> {
    let page = client
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CloudWatch Logs", "DescribeLogGroups", e))?;
    Ok(page
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .map(|g| {
            g.log_group_arn()
                .map(str::to_string)
                .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
                .unwrap_or_default()
        }))
}

/// A CloudWatch filter pattern that matches the lines containing `text`: one quoted term,
/// which CloudWatch matches as an exact, case-sensitive phrase.
pub fn filter_pattern(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The replica a stream belongs to: its last part, the ECS task id.
pub fn replica_of(stream: &str) -> &str {
    stream.rsplit('/').next().unwrap_or(stream)
}

/// How far before the newest line seen a poll reads again: CloudWatch may ingest a line
/// after a newer one (another task's, or a late batch), and a poll from the newest timestamp
/// alone would never see it.
pub const LOOKBACK_MS: i64 = 10_000;

/// A line read from CloudWatch, with what identifies it among repeated reads: FilterLogEvents'
/// event id, or for Live Tail (which has none) its stream, time, ingestion time and text.
struct Event {
    key: String,
    line: LogLine,
}

/// The lines already handed on, so that reads that overlap (each poll goes back
/// [`LOOKBACK_MS`]) print every line once, and a line that arrives late is printed, not lost.
struct Seen {
    /// The oldest line wanted.
    since: i64,
    /// The newest timestamp handed on.
    newest: i64,
    /// The keys handed on within [`LOOKBACK_MS`] of `newest`, with their timestamps.
    keys: BTreeMap<String, i64>,
}

impl Seen {
    fn new(since: i64) -> Seen {
        Seen {
            since,
            newest: since,
            keys: BTreeMap::new(),
        }
    }

    /// Where the next poll starts.
    fn from(&self) -> i64 {
        (self.newest - LOOKBACK_MS).max(self.since)
    }

    /// The events not handed on before, in time order.
    fn fresh(&mut self, events: Vec<Event>) -> Vec<LogLine> {
        let mut out = Vec::new();
        for e in events {
            if e.line.timestamp < self.since || self.keys.contains_key(&e.key) {
                continue;
            }
            self.keys.insert(e.key, e.line.timestamp);
            self.newest = self.newest.max(e.line.timestamp);
            out.push(e.line);
        }
        let horizon = self.newest - LOOKBACK_MS;
        self.keys.retain(|_, t| *t >= horizon);
        in_time_order(out)
    }
}

struct Source<'a> {
    client: &'a Client,
    group: &'a str,
    stream_prefix: String,
    pattern: Option<String>,
}

impl Source<'_> {
    /// Every line of the consumer's streams from `from` on: all pages of FilterLogEvents.
    async fn filter(&self, from: i64) -> Result<Vec<Event>, AwsError> {
        let mut lines = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .filter_log_events()
                .log_group_name(self.group)
                .log_stream_name_prefix(&self.stream_prefix)
                .start_time(from)
                .set_filter_pattern(self.pattern.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("CloudWatch Logs", "FilterLogEvents", e))?;
            for e in page.events() {
                let stream = e.log_stream_name().unwrap_or_default();
                let timestamp = e.timestamp().unwrap_or(0);
                let message = e.message().unwrap_or_default();
                lines.push(Event {
                    key: match e.event_id() {
                        Some(id) => id.to_string(),
                        None => format!("{stream}\n{timestamp}\n{message}"),
                    },
                    line: LogLine::new(timestamp, replica_of(stream), message.trim_end()),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        debug!(
            log_group = self.group,
            from,
            lines = lines.len(),
            "read log events"
        );
        Ok(lines)
    }

    /// Follows with StartLiveTail sessions, a new one when one ends (they last up to three
    /// hours). Returns the error when a session cannot start or breaks, so the caller polls.
    async fn live_tail(
        &self,
        arn: &str,
        seen: &mut Seen,
        sink: &mut LogSink<'_>,
    ) -> Result<(), AwsError> {
        loop {
            let mut session = self
                .client
                .start_live_tail()
                .log_group_identifiers(arn)
                .log_stream_name_prefixes(&self.stream_prefix)
                .set_log_event_filter_pattern(self.pattern.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("CloudWatch Logs", "StartLiveTail", e))?;
            let mut started = false;
            loop {
                let event = session.response_stream.recv().await.map_err(|e| {
                    AwsError::from_sdk("CloudWatch Logs", "StartLiveTail (stream)", e)
                })?;
                match event {
                    Some(StartLiveTailResponseStream::SessionStart(_)) => {
                        if !started {
                            info!(
                                log_group = self.group,
                                "following with {}",
                                Tail::LiveTail.as_str()
                            );
                        }
                        started = true;
                    }
                    Some(StartLiveTailResponseStream::SessionUpdate(update)) => {
                        let events = update
                            .session_results()
                            .iter()
                            .map(|e| {
                                let stream = e.log_stream_name().unwrap_or_default();
                                let timestamp = e.timestamp().unwrap_or(0);
                                let message = e.message().unwrap_or_default();
                                Event {
                                    key: format!(
                                        "{stream}\n{timestamp}\n{}\n{message}",
                                        e.ingestion_time().unwrap_or(0)
                                    ),
                                    line: LogLine::new(
                                        timestamp,
                                        replica_of(stream),
                                        message.trim_end(),
                                    ),
                                }
                            })
                            .collect();
                        sink(seen.fresh(events));
                    }
                    Some(other) => debug!(?other, "a live tail event shoal does not know"),
                    None => break,
                }
            }
            if !started {
                return Err(AwsError::Other {
                    service: "CloudWatch Logs",
                    operation: "StartLiveTail",
                    problem: "the session ended before it started".into(),
                });
            }
            warn!(
                log_group = self.group,
                "the live tail session ended; starting another"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timestamp: i64, replica: &str, message: &str) -> LogLine {
        LogLine::new(timestamp, replica, message)
    }

    #[test]
    fn the_task_id_is_the_streams_last_part() {
        assert_eq!(replica_of("orders/orders/0f1e2d3c4b5a"), "0f1e2d3c4b5a");
        assert_eq!(replica_of("bare"), "bare");
    }

    #[test]
    fn a_filter_is_one_quoted_phrase() {
        assert_eq!(filter_pattern("order 7"), "\"order 7\"");
        assert_eq!(filter_pattern("say \"hi\""), "\"say \\\"hi\\\"\"");
    }

    fn event(key: &str, timestamp: i64, replica: &str, message: &str) -> Event {
        Event {
            key: key.into(),
            line: line(timestamp, replica, message),
        }
    }

    /// Each poll goes back [`LOOKBACK_MS`] from the newest line seen, so its lines come
    /// again: they are handed on once, and one that arrives late, older than the newest, is
    /// still handed on.
    #[test]
    fn polls_repeat_no_line_and_lose_no_late_one() {
        let mut seen = Seen::new(1_000);
        assert_eq!(seen.from(), 1_000);
        let first = seen.fresh(vec![
            event("2", 20_000, "b", "two"),
            event("1", 10_000, "a", "one"),
            event("0", 500, "a", "before --since"),
        ]);
        assert_eq!(first, [line(10_000, "a", "one"), line(20_000, "b", "two")]);
        assert_eq!(seen.from(), 20_000 - LOOKBACK_MS);
        let again = seen.fresh(vec![
            event("1", 10_000, "a", "one"),
            event("2", 20_000, "b", "two"),
            event("3", 18_000, "a", "late"),
            event("4", 20_000, "a", "same time"),
        ]);
        assert_eq!(
            again,
            [line(18_000, "a", "late"), line(20_000, "a", "same time")]
        );
        assert!(seen
            .fresh(vec![event("4", 20_000, "a", "same time")])
            .is_empty());
        // Keys older than the window are forgotten; reads never go back that far.
        seen.fresh(vec![event("5", 40_000, "b", "later")]);
        assert_eq!(seen.keys.keys().collect::<Vec<_>>(), ["5"]);
    }
}
