//! What `shoal logs` asks of a platform and what it gets back, the same on every platform:
//! a query (which consumer, from when, which lines, whether to follow) and lines, each with
//! its time and the replica (ECS task or container) that wrote it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which lines to read.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub consumer: String,
    /// The oldest line wanted.
    pub since: SystemTime,
    /// Only lines that contain this text (case-sensitive).
    pub filter: Option<String>,
    /// Keep reading new lines until stopped.
    pub follow: bool,
}

impl LogQuery {
    /// `since` in milliseconds since the Unix epoch (CloudWatch's and the lines' unit).
    pub fn since_millis(&self) -> i64 {
        millis(self.since)
    }

    /// Whether `message` passes the filter.
    pub fn wants(&self, message: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| message.contains(f))
    }
}

/// One line a replica wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The ECS task id, or the container's name.
    pub replica: String,
    /// The line, without its trailing newline.
    pub message: String,
}

impl LogLine {
    pub fn new(timestamp: i64, replica: impl Into<String>, message: impl Into<String>) -> LogLine {
        LogLine {
            timestamp,
            replica: replica.into(),
            message: message.into(),
        }
    }

    /// The time as RFC 3339 with milliseconds, in UTC.
    pub fn time(&self) -> String {
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.timestamp).unwrap_or(0));
        humantime::format_rfc3339_millis(at).to_string()
    }
}

/// How a followed read learns of new lines; logged, so a user knows which one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// CloudWatch Logs' StartLiveTail session.
    LiveTail,
    /// FilterLogEvents again every few seconds, from the newest line seen.
    Polling,
    /// The Docker Engine's log stream of each container.
    EngineStream,
}

impl Tail {
    pub fn as_str(self) -> &'static str {
        match self {
            Tail::LiveTail => "StartLiveTail",
            Tail::Polling => "FilterLogEvents polling",
            Tail::EngineStream => "the Engine API's log streams",
        }
    }
}

/// Where a platform hands the lines it read: each call gets a batch in time order.
pub type LogSink<'a> = dyn FnMut(Vec<LogLine>) + Send + 'a;

/// Sorts lines by time; lines with one timestamp keep the order they were read in.
pub fn in_time_order(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by_key(|l| l.timestamp);
    lines
}

/// A time in milliseconds since the Unix epoch (0 before it).
pub fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timestamp: i64, replica: &str, message: &str) -> LogLine {
        LogLine::new(timestamp, replica, message)
    }

    #[test]
    fn lines_interleave_by_time_and_keep_their_order_on_ties() {
        let sorted = in_time_order(vec![
            line(3, "b", "third"),
            line(1, "a", "first"),
            line(3, "a", "fourth"),
            line(2, "b", "second"),
        ]);
        let messages: Vec<_> = sorted.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["first", "second", "third", "fourth"]);
    }

    #[test]
    fn time_is_rfc3339_in_utc_with_millis() {
        assert_eq!(
            line(1_700_000_000_123, "a", "").time(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn the_filter_is_a_case_sensitive_substring() {
        let q = LogQuery {
            consumer: "c".into(),
            since: UNIX_EPOCH,
            filter: Some("order 7".into()),
            follow: false,
        };
        assert!(q.wants("handled order 7 in 3 ms"));
        assert!(!q.wants("handled Order 7"));
        assert!(LogQuery { filter: None, ..q }.wants("anything"));
    }
}
