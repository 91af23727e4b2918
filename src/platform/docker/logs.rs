//! `shoal logs` on docker: the lines of every container of a consumer, through the Engine
//! API's logs endpoint (stdout and stderr, with the engine's timestamps). Each container is
//! a replica, named by its container name. Following, the streams of all containers are
//! read at once, and the consumer's containers are listed again every [`RELIST`], so that
//! the containers a deploy or the autoscaler starts are followed too; a removed container's
//! stream just ends.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures_util::stream::{self, Stream, StreamExt};
use tracing::{debug, info};

use crate::platform::logs::{in_time_order, LogLine, LogQuery, LogSink, Tail};

use super::*;

/// How often a followed read looks for new containers of the consumer.
pub const RELIST: Duration = Duration::from_secs(2);

/// Reads `query`'s lines from every container of the consumer in `project` and `env`, and
/// hands them to `sink` in time order. Following, never returns unless the engine fails.
pub async fn read(
    project: &str,
    env: &str,
    query: &LogQuery,
    sink: &mut LogSink<'_>,
) -> Result<(), DockerError> {
    let docker = connect().await?;
    let containers = of_consumer(&docker, project, env, &query.consumer).await?;
    if containers.is_empty() {
        return Err(DockerError::Other(format!(
            "{} has no containers in environment {env}: it has not been deployed there (or `shoal down` removed it); run `shoal deploy --env {env}`",
            query.consumer
        )));
    }
    let mut known: BTreeSet<String> = containers.iter().map(|c| c.id.clone()).collect();
    let mut merged = stream::select_all(
        containers
            .iter()
            .map(|c| Box::pin(lines_of(&docker, c, query))),
    );
    if !query.follow {
        let mut lines = Vec::new();
        while let Some((name, item)) = merged.next().await {
            lines.extend(parse(&name, item, query)?);
        }
        sink(in_time_order(lines));
        return Ok(());
    }
    info!(
        consumer = %query.consumer,
        containers = containers.len(),
        "following with {}",
        Tail::EngineStream.as_str()
    );
    let mut partial: HashMap<String, String> = HashMap::new();
    let mut relist = tokio::time::interval(RELIST);
    relist.tick().await;
    loop {
        tokio::select! {
            Some((name, item)) = merged.next(), if !merged.is_empty() => {
                if let Err(e) = &item {
                    debug!(container = %name, error = %e, "its log stream ended");
                    continue;
                }
                sink(in_time_order(parse_partial(&name, item, query, &mut partial)?));
            }
            _ = relist.tick() => {
                for c in of_consumer(&docker, project, env, &query.consumer).await? {
                    if known.insert(c.id.clone()) {
                        info!(container = %c.name, "following a new container");
                        merged.push(Box::pin(lines_of(&docker, &c, query)));
                    }
                }
            }
        }
    }
}

/// The consumer's containers in `project` and `env`, oldest first.
async fn of_consumer(
    docker: &Docker,
    project: &str,
    env: &str,
    consumer: &str,
) -> Result<Vec<Container>, DockerError> {
    Ok(list(docker, project, env)
        .await?
        .into_iter()
        .filter(|c| c.consumer == consumer)
        .collect())
}

/// One container's output from `query.since` on (and on, when following), each chunk with
/// the container's name.
fn lines_of(
    docker: &Docker,
    c: &Container,
    query: &LogQuery,
) -> impl Stream<Item = (String, Result<LogOutput, bollard::errors::Error>)> + use<> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(i32::try_from(query.since_millis() / 1000).unwrap_or(0))
        .follow(query.follow)
        .build();
    let name = c.name.clone();
    docker
        .logs(&c.id, Some(options))
        .map(move |item| (name.clone(), item))
}

/// The lines of one chunk of a container's output that pass the query.
fn parse(
    name: &str,
    item: Result<LogOutput, bollard::errors::Error>,
    query: &LogQuery,
) -> Result<Vec<LogLine>, DockerError> {
    let mut partial = HashMap::new();
    let mut lines = parse_partial(name, item, query, &mut partial)?;
    if let Some(rest) = partial.remove(name) {
        lines.extend(line(name, &rest, query));
    }
    Ok(lines)
}

/// As [`parse`], keeping an unfinished last line in `partial` until its newline arrives.
fn parse_partial(
    name: &str,
    item: Result<LogOutput, bollard::errors::Error>,
    query: &LogQuery,
    partial: &mut HashMap<String, String>,
) -> Result<Vec<LogLine>, DockerError> {
    let output = item.map_err(api(format!("logs of {name}")))?;
    let mut text = partial.remove(name).unwrap_or_default();
    text.push_str(&String::from_utf8_lossy(&output.into_bytes()));
    let mut lines = Vec::new();
    let mut rest = text.as_str();
    while let Some(end) = rest.find('\n') {
        lines.extend(line(name, &rest[..end], query));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        partial.insert(name.to_string(), rest.to_string());
    }
    Ok(lines)
}

/// One line as the engine writes it with timestamps (`<RFC 3339 time> <message>`), if it
/// passes the query.
fn line(name: &str, raw: &str, query: &LogQuery) -> Option<LogLine> {
    let (time, message) = raw.split_once(' ').unwrap_or((raw, ""));
    let timestamp = humantime::parse_rfc3339_weak(time)
        .map(crate::platform::logs::millis)
        .ok()?;
    let message = message.trim_end_matches('\r');
    (timestamp >= query.since_millis() && query.wants(message))
        .then(|| LogLine::new(timestamp, name, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn query(filter: Option<&str>, since_secs: u64) -> LogQuery {
        LogQuery {
            consumer: "c".into(),
            since: UNIX_EPOCH + Duration::from_secs(since_secs),
            filter: filter.map(str::to_string),
            follow: false,
        }
    }

    fn chunk(text: &str) -> Result<LogOutput, bollard::errors::Error> {
        Ok(LogOutput::StdOut {
            message: bytes::Bytes::from(text.to_string()),
        })
    }

    #[test]
    fn lines_carry_the_engines_time_and_the_container() {
        let lines = parse(
            "shoal-p-local-c-1234abcd-0",
            chunk("2026-12-03T14:04:00.123456789Z hello world\n2026-12-03T14:04:01Z second\n"),
            &query(None, 0),
        )
        .expect("parsed");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "hello world");
        assert_eq!(lines[0].replica, "shoal-p-local-c-1234abcd-0");
        assert_eq!(lines[0].time(), "2026-12-03T14:04:00.123Z");
        assert_eq!(lines[1].timestamp - lines[0].timestamp, 877);
    }

    #[test]
    fn a_line_split_over_chunks_is_joined() {
        let q = query(None, 0);
        let mut partial = HashMap::new();
        let first = parse_partial("a", chunk("2026-12-03T14:04:00Z hel"), &q, &mut partial)
            .expect("parsed");
        assert!(first.is_empty());
        let second = parse_partial("a", chunk("lo\n"), &q, &mut partial).expect("parsed");
        assert_eq!(second[0].message, "hello");
    }

    #[test]
    fn the_filter_and_since_apply_to_each_line() {
        let text = "2026-12-03T14:04:00Z order 1 ok\n2026-12-03T14:04:05Z order 2 failed\n";
        let since = 1_796_306_642; // 2026-12-03T14:04:02Z
        let late = parse("a", chunk(text), &query(None, since)).expect("parsed");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].message, "order 2 failed");
        let failed = parse("a", chunk(text), &query(Some("failed"), 0)).expect("parsed");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].message, "order 2 failed");
    }
}
