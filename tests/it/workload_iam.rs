//! MSK IAM inside the exposure workloads (consumers/msk-iam): with `KAFKA_AUTH=iam`, as shoal
//! deploys them to an `auth = "iam"` environment, each signs librdkafka's OAUTHBEARER tokens
//! with the credentials of its task role.
//!
//! Not testable here: there is no MSK and no SASL/IAM broker (tansu has no SASL listener), so
//! the brokers are a closed loopback port and what is checked is the hand-over: the
//! workload's real credential chain fetches the role's credentials, librdkafka asks each of
//! the workload's clients for a token, and the token is made. The token's signed URL, which
//! MSK verifies, is checked in msk-iam's own tests. The ECS agent's credentials endpoint is
//! a mock: a loopback HTTP server answering what the agent answers
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, which the AWS SDK allows on loopback).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::workloads::{database_url, free_port, http, wait_for, workload_bin, Running};

/// Mock of the ECS agent's task-role credentials endpoint; counts the requests it answers.
struct CredentialsEndpoint {
    url: String,
    served: Arc<AtomicUsize>,
}

impl CredentialsEndpoint {
    fn start() -> CredentialsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/v2/credentials/task-role",
            listener.local_addr().expect("addr")
        );
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let expires = aws_smithy_types::DateTime::from_secs(
                    aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs()
                        + 6 * 3600,
                )
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .expect("RFC 3339");
                let body = serde_json::json!({
                    "RoleArn": "arn:aws:iam::123456789012:role/exposure-consumer",
                    "AccessKeyId": "ASIATASKROLEEXAMPLE",
                    "SecretAccessKey": "task-role-secret-example",
                    "Token": "task-role-session-token-example",
                    "Expiration": expires,
                })
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        CredentialsEndpoint { url, served }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// A closed loopback port: brokers that never answer.
fn closed_port() -> u16 {
    let port = free_port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    port
}

/// The workload's command with only the given environment: no AWS settings of this machine
/// or of the test process leak in, and the instance metadata service is never asked.
fn command(workload: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(workload_bin(workload));
    cmd.env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// What shoal sets for an `auth = "iam"` environment (README, "Kafka auth"), and what each
/// workload needs besides.
fn iam_env(workload: &str, port: u16) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP", format!("127.0.0.1:{}", closed_port())),
        ("KAFKA_AUTH", "iam".to_string()),
        ("RDKAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_string()),
        ("RDKAFKA_SASL_MECHANISM", "OAUTHBEARER".to_string()),
        ("AWS_REGION", "eu-west-1".to_string()),
        ("PORT", port.to_string()),
    ];
    if workload == "exposure-api" {
        env.push(("API_KEYS", "iam-test-key".to_string()));
    }
    if workload == "exposure-consumer" {
        env.push(("DATABASE_URL", database_url()));
        env.push(("KAFKA_GROUP", format!("iam-{port}")));
    }
    env
}

/// The `<prefix>_kafka_iam_tokens_total{result="..."}` values on the workload's /metrics.
fn tokens(port: u16, prefix: &str) -> Option<(u64, u64)> {
    let answer = http("GET", &format!("127.0.0.1:{port}"), "/metrics", &[], b"")?;
    let value = |result: &str| {
        let series = format!("{prefix}_kafka_iam_tokens_total{{result=\"{result}\"}} ");
        answer
            .body
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((value("made")?, value("failed")?))
}

/// Each of a workload's Kafka clients (the API's producer; the consumer and its DLQ producer)
/// gets a token signed with the task role's credentials, fetched through the AWS SDK's
/// default chain from the (mock) ECS credentials endpoint.
#[test]
fn iam_workloads_sign_each_clients_token_with_the_task_role() {
    for (workload, prefix, clients) in [
        ("exposure-api", "exposure_api", 1),
        ("exposure-consumer", "exposure_consumer", 2),
    ] {
        let endpoint = CredentialsEndpoint::start();
        let port = free_port();
        let mut env = iam_env(workload, port);
        env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url.clone()));
        let child = command(workload, &env)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start workload");
        let mut running = Running { child };
        wait_for(
            &format!("{workload}'s clients to get their tokens"),
            Duration::from_secs(30),
            || tokens(port, prefix).filter(|(made, _)| *made >= clients),
        );
        // One token per client: librdkafka asks again only when one nears its expiry.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(tokens(port, prefix), Some((clients, 0)), "{workload}");
        assert!(
            endpoint.served() >= 1,
            "{workload}: the credentials came from the task role's endpoint"
        );
        assert!(
            running.child.try_wait().expect("status").is_none(),
            "{workload} keeps running while the brokers are away"
        );
        running.kill();
    }
}

/// Started with `KAFKA_AUTH=iam` but without what it needs, a workload exits 2 at once with a
/// one-line error that says what is missing and what to do.
#[test]
fn iam_without_a_region_or_credentials_exits_2_saying_what_to_do() {
    for workload in ["exposure-api", "exposure-consumer"] {
        let port = free_port();
        let env = iam_env(workload, port);
        let no_region: Vec<_> = env
            .iter()
            .filter(|(k, _)| *k != "AWS_REGION")
            .cloned()
            .collect();
        let mut other_mechanism = env.clone();
        other_mechanism.retain(|(k, _)| *k != "RDKAFKA_SASL_MECHANISM");
        other_mechanism.push(("RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()));
        for (env, expected) in [
            (no_region, vec!["AWS_REGION", "KAFKA_AUTH=iam"]),
            (
                other_mechanism,
                vec!["RDKAFKA_SASL_MECHANISM", "OAUTHBEARER"],
            ),
            (
                env.clone(),
                vec!["KAFKA_AUTH=iam: no AWS credentials", "task_role"],
            ),
        ] {
            let out = command(workload, &env).output().expect("run workload");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{workload}: {stderr}");
            let last = stderr.trim().lines().last().unwrap_or_default();
            for text in expected {
                assert!(last.contains(text), "{workload}: {text:?} in {stderr}");
            }
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}
