//! What the local broker allows, for the exposure benchmarks (`scripts/bench exposure`),
//! measured with librdkafka, the library both exposure workloads use:
//!
//! - `MODE=read`: how fast a consumer reads a prefilled topic when it does nothing with the
//!   messages. No sink on this broker can be faster, so the sink's rows/s is also reported as
//!   a share of this.
//! - `MODE=ack`: the latency of acknowledged produces at a fixed rate, with exposure-api's
//!   producer settings and one key (as oha's single body sends). Every 202 of the API waits for
//!   one such ack, so the API's latency cannot be lower.
//! - `MODE=members`: whether the broker describes a consumer group (DescribeGroups, through
//!   librdkafka's group list, the call shoal's lag reader makes): one member joins `TOPIC`'s
//!   group and a second client asks for the group's members. The autoscaler counts members
//!   from this answer where the broker gives it (docs/autoscaler.md, "Members").
//!
//! Environment: `KAFKA_BOOTSTRAP`, `TOPIC`; for `read` `EVENTS` (how many messages the topic
//! holds, and `READ_SECONDS`, how long it may take, 300 by default); for `ack` `RATE` (per
//! second) and `SECONDS`; `members` needs nothing more. `RDKAFKA_<NAME>` variables set
//! librdkafka properties, as the workloads read them. Prints one JSON line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Longest a read may take before it is called off, unless `READ_SECONDS` says.
const READ_LIMIT: Duration = Duration::from_secs(300);
/// An exposure event of the API's size.
const PAYLOAD: &str = r#"{"exposure_id":"5b0b3c1e-8f55-4a43-9d0e-6c1f6f4f2b7a","ds_user_id":"bench-user","experiment_id":"bench-experiment","variation_id":"treatment","ts":"2026-11-29T12:00:00.000Z","attributes":{"country":"NL","plan":"pro"},"source":"bench","accepted_at":"2026-11-29T12:00:00.000Z"}"#;

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("broker: a benchmark for scripts/bench exposure; nothing to test");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn var(k: &str) -> Result<String, String> {
    std::env::var(k).map_err(|_| format!("{k} is required"))
}

fn number<T: std::str::FromStr>(k: &str) -> Result<T, String> {
    var(k)?.parse().map_err(|_| format!("{k}: not a number"))
}

/// `bootstrap.servers`, then the `RDKAFKA_*` overrides.
fn config(base: &[(&str, &str)]) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", var("KAFKA_BOOTSTRAP")?);
    for (k, v) in base {
        c.set(*k, *v);
    }
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("RDKAFKA_") {
            c.set(name.to_ascii_lowercase().replace('_', "."), v);
        }
    }
    Ok(c)
}

async fn run() -> Result<String, String> {
    let topic = var("TOPIC")?;
    match var("MODE")?.as_str() {
        "read" => read(&topic, number("EVENTS")?),
        "ack" => ack(&topic, number("RATE")?, number("SECONDS")?).await,
        "members" => members(&topic),
        other => Err(format!("MODE: {other:?} is not read, ack or members")),
    }
}

fn read(topic: &str, events: u64) -> Result<String, String> {
    let group = format!("broker-bench-{}", std::process::id());
    let consumer: BaseConsumer = config(&[
        ("group.id", &group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
    ])?
    .create()
    .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let limit = std::env::var("READ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READ_LIMIT, Duration::from_secs);
    let start = Instant::now();
    let mut first = None;
    let mut read = 0u64;
    while read < events {
        if start.elapsed() > limit {
            return Err(format!("read {read} of {events} in {}s", limit.as_secs()));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                read += 1;
                first.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => {}
        }
    }
    let total = start.elapsed().as_secs_f64();
    let from_first = first.map_or(total, |f| f.elapsed().as_secs_f64());
    Ok(format!(
        "{{\"messages\": {read}, \"rows_per_s\": {:.0}, \"rows_per_s_from_first\": {:.0}}}",
        read as f64 / total,
        read.saturating_sub(1) as f64 / from_first.max(1e-9)
    ))
}

fn members(topic: &str) -> Result<String, String> {
    let group = format!("broker-bench-members-{}", std::process::id());
    let member: BaseConsumer = config(&[("group.id", &group), ("auto.offset.reset", "earliest")])?
        .create()
        .map_err(|e| e.to_string())?;
    member.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let start = Instant::now();
    while member.assignment().map_or(0, |a| a.count()) == 0 {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("the member got no assignment in 60 s".into());
        }
        let _ = member.poll(Duration::from_millis(100));
    }
    let joined_s = start.elapsed().as_secs_f64();
    let asker: BaseConsumer = config(&[])?.create().map_err(|e| e.to_string())?;
    let answer = asker.fetch_group_list(Some(&group), Duration::from_secs(10));
    let _ = member.poll(Duration::from_millis(100));
    Ok(match answer {
        Ok(list) => {
            let found = list.groups().iter().find(|g| g.name() == group);
            // shoal counts a member when its assignment (the consumer protocol's bytes)
            // names a partition; a broker that leaves it empty gives a count of 0.
            let assigned = found.map_or(0, |g| {
                g.members()
                    .iter()
                    .filter(|m| m.assignment().is_some_and(|a| !a.is_empty()))
                    .count()
            });
            format!(
                "{{\"joined_s\": {joined_s:.1}, \"described\": true, \"state\": {:?}, \"members\": {}, \"with_assignment\": {assigned}}}",
                found.map_or("", |g| g.state()),
                found.map_or(0, |g| g.members().len())
            )
        }
        Err(e) => format!(
            "{{\"joined_s\": {joined_s:.1}, \"described\": false, \"error\": {:?}}}",
            e.to_string()
        ),
    })
}

async fn ack(topic: &str, rate: u32, seconds: u32) -> Result<String, String> {
    // exposure-api's producer settings (consumers/exposure-api/src/producer.rs).
    let producer: FutureProducer = config(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("compression.type", "lz4"),
        ("linger.ms", "5"),
        ("message.timeout.ms", "5000"),
    ])?
    .create()
    .map_err(|e| e.to_string())?;
    // Connected, with its producer id, before timing starts (the API's runs get a warm-up too).
    producer
        .send(
            FutureRecord::to(topic).key("bench-user").payload(PAYLOAD),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| format!("warm-up produce: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..u64::from(rate) * u64::from(seconds) {
        tick.tick().await;
        let (producer, topic) = (producer.clone(), topic.to_string());
        sends.spawn(async move {
            let t = Instant::now();
            producer
                .send(
                    FutureRecord::to(&topic).key("bench-user").payload(PAYLOAD),
                    Duration::from_secs(5),
                )
                .await
                .map(|_| t.elapsed())
        });
    }
    let mut acked = Vec::new();
    let mut failed = 0u64;
    while let Some(done) = sends.join_next().await {
        match done {
            Ok(Ok(latency)) => acked.push(latency.as_secs_f64() * 1e3),
            _ => failed += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    acked.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        acked
            .get(((acked.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(format!(
        "{{\"acked\": {}, \"failed\": {failed}, \"acked_per_s\": {:.0}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}}}",
        acked.len(),
        acked.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    ))
}
