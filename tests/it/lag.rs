//! Lag reads against the real tansu broker of the local stack: a topic with messages, a
//! group with committed offsets on some partitions, and shoal's reader.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use shoal::kafka::lag::LagReader;

use crate::support::Sandbox;

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates `topic` with `partitions`, writes `per_partition` messages to each, and commits
/// `committed[p]` for `group` where given.
pub async fn backlog(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    group: &str,
    committed: &[Option<i64>],
) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = config(bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for p in 0..partitions {
        for i in 0..per_partition {
            let payload = format!("message {i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}[{p}]: {e}"));
        }
    }
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, c) in committed.iter().enumerate() {
        if let Some(o) = c {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
                .expect("offset");
        }
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("OffsetCommit");
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_first_then_end_offsets_and_no_commit_is_not_lag() {
    let sb = Sandbox::new();
    let bootstrap = sb.var("KAFKA_BOOTSTRAP");
    let topic = format!("{}-lag", sb.project);
    let group = format!("{}-group", sb.project);
    backlog(
        &bootstrap,
        &topic,
        3,
        10,
        &group,
        &[Some(4), Some(10), None],
    )
    .await;

    let reader = LagReader::open(&sb.env(), Duration::from_secs(10))
        .await
        .expect("reader");
    let o = reader.read(&group, &[topic]).expect("lag read");
    let ends: Vec<i64> = o.partitions.iter().map(|p| p.end_offset).collect();
    let committed: Vec<Option<i64>> = o.partitions.iter().map(|p| p.committed_offset).collect();
    assert_eq!(ends, vec![10, 10, 10]);
    assert_eq!(committed, vec![Some(4), Some(10), None]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_an_error_not_a_reading() {
    let sb = Sandbox::new();
    let mut env = sb.env();
    env.kafka = shoal::manifest::KafkaAccess::Bootstrap(vec!["127.0.0.1:1".into()]);
    let reader = LagReader::open(&env, Duration::from_secs(2))
        .await
        .expect("reader");
    let err = reader.read("g", &["t".into()]).expect_err("no broker");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lag_command_prints_each_partition() {
    let sb = Sandbox::new();
    let topic = format!("{}-cmd", sb.project);
    let group = format!("{}-cmd-group", sb.project);
    sb.fixture.consumer(
        "reader",
        &format!("kind = \"worker\"\n[kafka]\ngroup = \"{group}\"\ntopics = [\"{topic}\"]\n"),
    );
    backlog(
        &sb.var("KAFKA_BOOTSTRAP"),
        &topic,
        2,
        5,
        &group,
        &[Some(1), None],
    )
    .await;
    let out = sb.shoal(&["lag", "--env", "sandbox", "--sample", "1s", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::text(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["lag"], 4);
    assert_eq!(rows[0]["partition"], 0);
    assert_eq!(
        rows[1]["lag"],
        serde_json::Value::Null,
        "never committed: not lag"
    );
    assert_eq!(rows[1]["end_offset"], 5);
}
