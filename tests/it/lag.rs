//! Lag reads against the real broker of the local stack: a topic with messages, a
//! group with committed offsets on some partitions, and shoal's reader.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use shoal::kafka::lag::MemberSource;

use crate::support::{lag_reader, Sandbox};

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Writes `per_partition` more messages to each of the first `partitions` partitions of `topic`.
pub async fn produce(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
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
}

/// Creates `topic` with `partitions`, writes `per_partition` messages to each, and commits
/// `committed[p]` for `group` where given (nothing at all when none is).
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
    produce(bootstrap, topic, partitions, per_partition).await;
    commit(bootstrap, group, topic, committed);
}

/// Commits `committed[p]` for `group` on `topic` where given (nothing at all when none is).
pub fn commit(bootstrap: &str, group: &str, topic: &str, committed: &[Option<i64>]) {
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
    if tpl.count() > 0 {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("OffsetCommit");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_first_then_end_offsets_and_the_log_start_where_nothing_is_committed() {
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

    let reader = lag_reader(&sb.env(), Duration::from_secs(10)).await;
    let o = reader.read(&group, &[topic]).expect("lag read");
    let ends: Vec<i64> = o.partitions.iter().map(|p| p.end_offset).collect();
    let committed: Vec<Option<i64>> = o.partitions.iter().map(|p| p.committed_offset).collect();
    let starts: Vec<Option<i64>> = o.partitions.iter().map(|p| p.log_start_offset).collect();
    assert_eq!(ends, vec![10, 10, 10]);
    assert_eq!(committed, vec![Some(4), Some(10), None]);
    assert_eq!(starts, vec![None, None, Some(0)]);
}

/// The rows of a `shoal lag -o json` that succeeded.
fn json_rows(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// What group `g` of [`many_groups_on_shared_topics_are_read_in_one_batch`] commits on a
/// partition of `topic`: each group its own offsets, some partitions never.
fn committed_by(g: usize, topic: usize, p: usize, end: i64) -> Option<i64> {
    ((g + topic + p) % 3 != 0).then_some(((g * 5 + topic * 3 + p) as i64) % (end + 1))
}

/// A tick's batch: six groups on two shared topics, one group also on a third topic (as a
/// dead-letter read), and one read of a topic that does not exist, all in one `read_all`.
/// Each group gets exactly its own committed offsets, every partition the topic's end
/// offset, and a partition the group never committed on its log start; only the read of
/// the missing topic fails.
#[tokio::test(flavor = "multi_thread")]
async fn many_groups_on_shared_topics_are_read_in_one_batch() {
    let sb = Sandbox::new();
    let bootstrap = sb.var("KAFKA_BOOTSTRAP");
    let topics = [
        (format!("{}-a", sb.project), 3, 6i64),
        (format!("{}-b", sb.project), 2, 4i64),
    ];
    let dlq = format!("{}-dlq", sb.project);
    let groups: Vec<String> = (0..6).map(|g| format!("{}-g{g}", sb.project)).collect();
    for (t, (topic, partitions, per)) in topics.iter().enumerate() {
        backlog(
            &bootstrap,
            topic,
            *partitions,
            *per as usize,
            &groups[0],
            &[],
        )
        .await;
        for (g, group) in groups.iter().enumerate() {
            let committed: Vec<Option<i64>> = (0..*partitions as usize)
                .map(|p| committed_by(g, t, p, *per))
                .collect();
            commit(&bootstrap, group, topic, &committed);
        }
    }
    backlog(&bootstrap, &dlq, 1, 2, &groups[0], &[]).await;

    let all: Vec<String> = topics.iter().map(|(t, _, _)| t.clone()).collect();
    let mut reads: Vec<(String, Vec<String>)> =
        groups.iter().map(|g| (g.clone(), all.clone())).collect();
    reads.push((groups[1].clone(), vec![dlq.clone()]));
    let missing = format!("{}-missing", sb.project);
    reads.push((groups[2].clone(), vec![missing.clone()]));

    let reader = lag_reader(&sb.env(), Duration::from_secs(10)).await;
    let mut answers = reader.read_all(&reads);
    assert_eq!(answers.len(), reads.len());
    let err = answers
        .pop()
        .expect("the missing topic's read")
        .expect_err("no such topic");
    assert!(err.to_string().contains(&missing), "{err}");
    let dead = answers
        .pop()
        .expect("the dead-letter read")
        .expect("the dead-letter topic");
    assert_eq!(
        dead.partitions
            .iter()
            .map(|p| (p.end_offset, p.committed_offset, p.log_start_offset))
            .collect::<Vec<_>>(),
        vec![(2, None, Some(0))]
    );
    for (g, answer) in answers.into_iter().enumerate() {
        let o = answer.unwrap_or_else(|e| panic!("group {g}: {e}"));
        let mut expected = Vec::new();
        for (t, (_, partitions, per)) in topics.iter().enumerate() {
            for p in 0..*partitions as usize {
                let committed = committed_by(g, t, p, *per);
                expected.push((*per, committed, committed.is_none().then_some(0)));
            }
        }
        let got: Vec<(i64, Option<i64>, Option<i64>)> = o
            .partitions
            .iter()
            .map(|p| (p.end_offset, p.committed_offset, p.log_start_offset))
            .collect();
        assert_eq!(got, expected, "group {g}");
        assert_eq!(
            o.topics.iter().map(|t| t.partitions).collect::<Vec<_>>(),
            vec![3, 2]
        );
    }
}

/// `shoal lag` over eight groups runs one librdkafka client, not one per group: the process
/// never has more than one librdkafka main thread (`rdk:main`, one per client), watched
/// through /proc while both of its reads and the sample between them run.
#[tokio::test(flavor = "multi_thread")]
async fn the_lag_command_reads_every_group_on_one_client() {
    let sb = Sandbox::new();
    let topic = format!("{}-one", sb.project);
    backlog(&sb.var("KAFKA_BOOTSTRAP"), &topic, 2, 3, "unused", &[]).await;
    for i in 0..8 {
        sb.fixture.consumer(
            &format!("c{i}"),
            &format!(
                "kind = \"worker\"\n[kafka]\ngroup = \"{}-g{i}\"\ntopics = [\"{topic}\"]\n",
                sb.project
            ),
        );
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["lag", "--env", "sandbox", "--sample", "2s", "-o", "json"])
        .current_dir(sb.root())
        .envs(&sb.vars)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs shoal");
    let tasks = format!("/proc/{}/task", child.id());
    let mut most = 0;
    let out = std::thread::scope(|s| {
        let waited = s.spawn(|| child.wait_with_output().expect("shoal's output"));
        while !waited.is_finished() {
            let clients = std::fs::read_dir(&tasks)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|name| name.trim() == "rdk:main")
                })
                .count();
            most = most.max(clients);
            std::thread::sleep(Duration::from_millis(20));
        }
        waited.join().expect("the wait")
    });
    let rows = json_rows(&out);
    assert_eq!(rows.as_array().map(Vec::len), Some(16), "{rows}");
    assert_eq!(most, 1, "librdkafka clients at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_topic_of_the_group_is_read_in_order() {
    let sb = Sandbox::new();
    let bootstrap = sb.var("KAFKA_BOOTSTRAP");
    let group = format!("{}-group", sb.project);
    let (a, b) = (format!("{}-a", sb.project), format!("{}-b", sb.project));
    backlog(&bootstrap, &a, 2, 5, &group, &[Some(1), Some(2)]).await;
    backlog(&bootstrap, &b, 3, 7, &group, &[Some(3), None, Some(7)]).await;
    let reader = lag_reader(&sb.env(), Duration::from_secs(10)).await;
    let o = reader
        .read(&group, &[a.clone(), b.clone()])
        .expect("lag read");
    let spans: Vec<(String, u32)> = o
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions))
        .collect();
    assert_eq!(spans, vec![(a, 2), (b, 3)]);
    let reads: Vec<(i64, Option<i64>)> = o
        .partitions
        .iter()
        .map(|p| (p.end_offset, p.committed_offset))
        .collect();
    assert_eq!(
        reads,
        vec![
            (5, Some(1)),
            (5, Some(2)),
            (7, Some(3)),
            (7, None),
            (7, Some(7))
        ]
    );
}

/// The members come from DescribeGroups where the broker answers it: one live member that
/// owns the topic's partitions. A broker that answers without any member's assignment (nisshi
/// 0.8) gives the stable group's member list; the test then checks that the broker really gives
/// no assignment. Only a broker that cannot answer (tansu 0.6 drops the connection) leaves the
/// count to the platform's running count; the test then checks that it cannot.
#[tokio::test(flavor = "multi_thread")]
async fn members_come_from_the_group_where_the_broker_can_describe_it() {
    let sb = Sandbox::new();
    let bootstrap = sb.var("KAFKA_BOOTSTRAP");
    let topic = format!("{}-members", sb.project);
    let group = format!("{}-group", sb.project);
    backlog(&bootstrap, &topic, 2, 3, &group, &[Some(0), Some(0)]).await;
    let member: BaseConsumer = config(&bootstrap)
        .set("group.id", &group)
        .set("session.timeout.ms", "6000")
        .create()
        .expect("member");
    member.subscribe(&[&topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while member.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no assignment in 30 s"
        );
        let _ = member.poll(Duration::from_millis(200));
    }
    let reader = lag_reader(&sb.env(), Duration::from_secs(5)).await;
    let o = reader.read(&group, &[topic]).expect("lag read");
    let asked = member.fetch_group_list(Some(&group), Duration::from_secs(5));
    let assigned = asked.as_ref().ok().map(|list| {
        list.groups()
            .iter()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.members())
            .filter(|m| m.assignment().is_some())
            .count()
    });
    match o.members.map(|m| (m.count, m.source)) {
        Some((1, MemberSource::Group)) => assert_eq!(assigned, Some(1)),
        Some((1, MemberSource::GroupList)) => assert_eq!(
            assigned,
            Some(0),
            "the broker describes the group with assignments, but the reader counted the list"
        ),
        None => assert!(
            asked.is_err(),
            "the broker describes the group, but the reader left the count to the platform"
        ),
        other => panic!("one member, from the group: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_an_error_not_a_reading() {
    let sb = Sandbox::new();
    let mut env = sb.env();
    env.kafka = shoal::manifest::KafkaAccess::Bootstrap(vec!["127.0.0.1:1".into()]);
    let reader = lag_reader(&env, Duration::from_secs(2)).await;
    let err = reader.read("g", &["t".into()]).expect_err("no broker");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lag_command_prints_each_partition() {
    let sb = Sandbox::new();
    let topic = format!("{}-cmd", sb.project);
    let group = format!("{}-cmd-group", sb.project);
    let reader = format!("{}-reader", sb.project);
    sb.fixture.consumer(
        &reader,
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
    let ecs = crate::metrics::ecs_service(&sb, &reader, 2).await;
    let rows = json_rows(&sb.shoal(&["lag", "--env", "sandbox", "--sample", "1s", "-o", "json"]));
    assert_eq!(rows[0]["lag"], 4);
    assert_eq!(rows[0]["partition"], 0);
    assert_eq!(rows[1]["lag"], 5, "never committed: from the log start");
    assert_eq!(rows[1]["end_offset"], 5);
    // No member has joined; a broker that cannot describe the group leaves the count to
    // the platform: the ECS service's runningCount.
    let members = &rows[0]["members"];
    match members["source"].as_str() {
        Some("group") => assert_eq!(members["count"], 0, "{members}"),
        Some("platform") => {
            let described = ecs
                .describe_services()
                .cluster(sb.env().cluster)
                .services(&reader)
                .send()
                .await
                .expect("DescribeServices");
            let running = described.services()[0].running_count();
            assert_eq!(members["count"], running, "{members}");
        }
        _ => panic!("no member count: {members}"),
    }
    let text = sb.shoal(&["lag", "--env", "sandbox", "--sample", "1s"]);
    let text = crate::support::text(&text.stdout);
    assert!(text.contains("MEMBERS"), "{text}");
    assert!(
        text.contains(&format!("({})", members["source"].as_str().unwrap_or("?"))),
        "{text}"
    );
}
