//! Whether new containers are healthy: their HTTP health check, their state and their logs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::info;

use crate::platform::RolloutError;

use super::*;

/// The last lines a container wrote.
pub async fn last_logs(docker: &Docker, id: &str) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(LOG_TAIL)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
            Err(_) => break,
        }
    }
    text.lines().map(str::to_string).collect()
}

/// The HTTP status of `GET http://127.0.0.1:<port><path>`, or `None` when nothing answers
/// within two seconds.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://127.0.0.1:{port}{path}").parse().ok()?;
    tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()
        .map(|answer| answer.status().as_u16())
}

/// Waits until every started container is healthy: an API answers 2xx on its health path,
/// a worker runs for [`SETTLE`] without a restart. A container that exits or restarts, or
/// the timeout, fails the rollout with the container's last log lines.
pub async fn wait_healthy(
    docker: &Docker,
    consumer: &str,
    started: &[Started],
    api_check: Option<&ApiCheck>,
    timeout: Duration,
) -> Result<(), RolloutError> {
    let begin = Instant::now();
    let mut healthy: BTreeSet<String> = BTreeSet::new();
    let mut running_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        for s in started {
            if healthy.contains(&s.id) {
                continue;
            }
            let inspected = docker.inspect_container(&s.id, None).await.map_err(|e| {
                RolloutError::Container {
                    service: consumer.to_string(),
                    container: s.name.clone(),
                    reason: format!("cannot inspect: {}", crate::error::innermost(&e)),
                    logs: Vec::new(),
                }
            })?;
            let state = inspected.state.unwrap_or_default();
            let restarts = inspected.restart_count.unwrap_or(0);
            let status = state.status.map(|s| s.to_string()).unwrap_or_default();
            if restarts > 0 || status != "running" && status != "created" {
                let logs = last_logs(docker, &s.id).await;
                return Err(RolloutError::Container {
                    service: consumer.to_string(),
                    container: s.name.clone(),
                    reason: if restarts > 0 {
                        format!("the new container exited and was restarted {restarts} time(s); the old containers keep serving")
                    } else {
                        format!(
                            "the new container is {status} (exit code {}); the old containers keep serving",
                            state.exit_code.unwrap_or(0)
                        )
                    },
                    logs,
                });
            }
            if status != "running" {
                continue;
            }
            match (api_check, s.port) {
                (Some(a), Some(port)) => {
                    if http_status(port, &a.health_path)
                        .await
                        .is_some_and(|c| (200..300).contains(&c))
                    {
                        info!(container = %s.name, port, "healthy");
                        healthy.insert(s.id.clone());
                    }
                }
                _ => {
                    let since = *running_since
                        .entry(s.id.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= SETTLE {
                        info!(container = %s.name, "running without restarts");
                        healthy.insert(s.id.clone());
                    }
                }
            }
        }
        if healthy.len() == started.len() {
            return Ok(());
        }
        if begin.elapsed() >= timeout {
            let waiting = started
                .iter()
                .find(|s| !healthy.contains(&s.id))
                .map(|s| (s.name.clone(), s.id.clone()))
                .unwrap_or_default();
            return Err(RolloutError::Container {
                service: consumer.to_string(),
                container: waiting.0,
                reason: format!(
                    "not healthy within {} s; the old containers keep serving",
                    timeout.as_secs()
                ),
                logs: last_logs(docker, &waiting.1).await,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::http_status;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one request with `answer`, and gives the port.
    async fn one_answer(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn the_status_of_whatever_answers() {
        let ok = one_answer("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        assert_eq!(http_status(ok, "/healthz").await, Some(200));
        let failing =
            one_answer("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(http_status(failing, "/healthz").await, Some(503));
    }

    #[tokio::test]
    async fn none_when_nothing_answers_in_time() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        assert_eq!(http_status(closed, "/healthz").await, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent = listener.local_addr().expect("addr").port();
        let start = std::time::Instant::now();
        assert_eq!(http_status(silent, "/healthz").await, None);
        assert!(start.elapsed() < std::time::Duration::from_secs(3));
        drop(listener);
    }
}
