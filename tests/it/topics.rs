//! `shoal topics plan|apply|delete` against the local stack's tansu (a Kafka-protocol broker),
//! checked with rdkafka clients the test makes itself (not through shoal's code):
//! - existence and partition counts with a consumer's Metadata request, which never asks the
//!   broker to create the topic;
//! - configs with DescribeConfigs.
//!
//! Every test uses topic names unique to its run (from its temporary folder), so tests run in
//! parallel and reruns never meet their own leftovers; other tests' topics show up as
//! unmanaged, which is exactly what they are.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use crate::support::{shoal, stack_env, text, Fixture, WORKER};

struct Kafka {
    fixture: Fixture,
    bootstrap: String,
    prefix: String,
}

type Decl<'a> = (&'a str, u32, u16, &'a [(&'a str, &'a str)]);

impl Kafka {
    fn new() -> Kafka {
        let bootstrap = stack_env()
            .get("KAFKA_BOOTSTRAP")
            .cloned()
            .expect(".stack/env has KAFKA_BOOTSTRAP; run `scripts/stack up`");
        let fixture = Fixture::new(&format!(
            "project = \"topics\"\ndefault_env = \"local\"\n\n[env.local]\nplatform = \"docker\"\nkafka = {{ bootstrap = [\"{bootstrap}\"] }}\n"
        ));
        let prefix = fixture.unique();
        Kafka {
            fixture,
            bootstrap,
            prefix: format!("it-{prefix}"),
        }
    }

    fn topic(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Writes `consumers/<consumer>/consumer.toml` declaring these topics (short names).
    fn declare(&self, consumer: &str, topics: &[Decl<'_>]) {
        let mut m = String::from("kind = \"worker\"\ncpu = 256\nmemory = 512\n");
        for (name, partitions, replication, config) in topics {
            let config: Vec<String> = config
                .iter()
                .map(|(k, v)| format!("\"{k}\" = \"{v}\""))
                .collect();
            m.push_str(&format!(
                "\n[[topic]]\nname = \"{}\"\npartitions = {partitions}\nreplication = {replication}\nconfig = {{ {} }}\n",
                self.topic(name),
                config.join(", ")
            ));
        }
        self.fixture.consumer(consumer, &m);
    }

    fn shoal(&self, args: &[&str]) -> Output {
        shoal(self.fixture.root(), args)
    }

    /// Runs shoal and asserts it succeeded; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// The partition count the broker reports in Metadata, `None` when the topic does not
    /// exist. Read with a consumer of the test's own: a consumer's Metadata request says
    /// `allow_auto_topic_creation = false`, so asking cannot create the topic on a broker that
    /// auto-creates (nisshi does, as Kafka with `auto.create.topics.enable=true`).
    fn broker_partitions(&self, short: &str) -> Option<usize> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::types::RDKafkaRespErr;
        let topic = self.topic(short);
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(20))
            .expect("Metadata");
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        match t.error() {
            None => Some(t.partitions().len()),
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => None,
            Some(e) => panic!("Metadata for {topic}: {e:?}"),
        }
    }

    /// The topic's configs as DescribeConfigs reports them, read with rdkafka directly.
    fn configs(&self, short: &str) -> BTreeMap<String, String> {
        use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::config::ClientConfig;
        let topic = self.topic(short);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(20)));
        let results = rt
            .block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &opts))
            .expect("DescribeConfigs");
        results
            .into_iter()
            .flat_map(|r| r.expect("topic configs").entries)
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    }
}

fn plan_json(k: &Kafka) -> serde_json::Value {
    serde_json::from_str(&k.ok(&["topics", "plan", "-o", "json"])).expect("plan JSON")
}

fn names(plan: &serde_json::Value, section: &str) -> Vec<String> {
    plan[section]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn create_then_a_second_apply_changes_nothing() {
    let k = Kafka::new();
    k.declare("w", &[("orders", 3, 1, &[("retention.ms", "86400000")])]);
    let orders = k.topic("orders");
    assert_eq!(k.broker_partitions("orders"), None);

    let plan = k.ok(&["topics", "plan"]);
    assert!(plan.contains(&format!("+ topic {orders}")), "{plan}");
    assert!(plan.contains("+ partitions = 3"), "{plan}");

    let applied = k.ok(&["topics", "apply"]);
    assert!(
        applied.contains(&format!("create topic {orders} (3 partitions")),
        "{applied}"
    );
    assert_eq!(k.broker_partitions("orders"), Some(3));
    assert_eq!(
        k.configs("orders").get("retention.ms").map(String::as_str),
        Some("86400000")
    );

    let again = k.ok(&["topics", "apply"]);
    assert!(again.contains("No changes"), "{again}");
    assert!(!again.contains("Applied"), "{again}");
    let plan = plan_json(&k);
    assert!(!names(&plan, "create").contains(&orders), "{plan}");
    assert!(!names(&plan, "change").contains(&orders), "{plan}");
    assert_eq!(k.broker_partitions("orders"), Some(3));
}

#[test]
fn a_config_change_is_applied_and_read_back() {
    let k = Kafka::new();
    k.declare(
        "w",
        &[(
            "events",
            1,
            1,
            &[("retention.ms", "3600000"), ("cleanup.policy", "delete")],
        )],
    );
    k.ok(&["topics", "apply"]);
    k.declare(
        "w",
        &[(
            "events",
            1,
            1,
            &[("retention.ms", "7200000"), ("cleanup.policy", "delete")],
        )],
    );
    let plan = k.ok(&["topics", "plan"]);
    assert!(
        plan.contains("~ config.retention.ms: \"3600000\" → \"7200000\""),
        "{plan}"
    );
    assert!(
        !plan.contains("cleanup.policy"),
        "unchanged keys stay out: {plan}"
    );

    let applied = k.ok(&["topics", "apply"]);
    assert!(applied.contains("set retention.ms=7200000"), "{applied}");
    let configs = k.configs("events");
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("7200000")
    );
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    assert!(k.ok(&["topics", "apply"]).contains("No changes"));
}

#[test]
fn a_partition_decrease_is_refused_and_nothing_changes() {
    let k = Kafka::new();
    k.declare("w", &[("wide", 4, 1, &[("retention.ms", "1000")])]);
    k.ok(&["topics", "apply"]);
    k.declare("w", &[("wide", 2, 1, &[("retention.ms", "2000")])]);
    for cmd in ["plan", "apply"] {
        let out = k.shoal(&["topics", cmd]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "topic {}: partitions 4 → 2: Kafka cannot remove partitions: create a new topic and migrate",
                k.topic("wide")
            )),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        let shown = text(&out.stdout);
        assert!(
            shown.contains("~ partitions: 4 → 2"),
            "the plan is shown: {shown}"
        );
    }
    let out = k.shoal(&["topics", "plan", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON error");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot remove partitions"),
        "{v}"
    );
    assert_eq!(k.broker_partitions("wide"), Some(4));
    assert_eq!(
        k.configs("wide").get("retention.ms").map(String::as_str),
        Some("1000"),
        "the config change beside the refusal was not applied either"
    );
}

#[test]
fn a_replication_change_is_refused_saying_how_to_reassign() {
    let k = Kafka::new();
    k.declare("w", &[("r", 1, 1, &[]), ("s", 3, 1, &[])]);
    k.ok(&["topics", "apply"]);
    k.declare("w", &[("r", 1, 2, &[]), ("s", 2, 1, &[])]);
    let out = k.shoal(&["topics", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("2 changes Kafka cannot make"), "{err}");
    assert!(
        err.contains(&format!("topic {}: replication factor 1 → 2", k.topic("r"))),
        "{err}"
    );
    assert!(err.contains("kafka-reassign-partitions"), "{err}");
    assert!(
        err.contains(&format!("topic {}: partitions 3 → 2", k.topic("s"))),
        "every refusal at once: {err}"
    );
    assert_eq!(k.broker_partitions("s"), Some(3));
}

/// A topic no longer declared is unmanaged: shown, never deleted by omission. `topics delete`
/// refuses without `--yes`, and names a topic that does not exist.
///
/// The deletion itself is NOT exercised against tansu: tansu 0.6 (SQLite engine) deletes every
/// topic on any DeleteTopics request, whichever topic it names (seen with librdkafka and with a
/// hand-made DeleteTopics v1 request naming one topic), which would wipe the topics of every
/// test running beside this one.
#[test]
fn unmanaged_topics_are_left_alone_and_delete_needs_yes() {
    let k = Kafka::new();
    k.declare("w", &[("kept", 1, 1, &[]), ("dropped", 2, 1, &[])]);
    k.ok(&["topics", "apply"]);
    k.declare("w", &[("kept", 1, 1, &[])]);
    let dropped = k.topic("dropped");

    let plan = k.ok(&["topics", "plan"]);
    assert!(
        plan.contains(&format!(
            "? topic {dropped}  unmanaged: not declared, left alone"
        )),
        "{plan}"
    );
    assert!(names(&plan_json(&k), "unmanaged").contains(&dropped));
    k.ok(&["topics", "apply"]);
    assert_eq!(
        k.broker_partitions("dropped"),
        Some(2),
        "never deleted by omission"
    );
    assert_eq!(k.broker_partitions("kept"), Some(1));

    let out = k.shoal(&["topics", "delete", &dropped]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("without --yes"));
    assert_eq!(k.broker_partitions("dropped"), Some(2));

    let missing = k.topic("never-created");
    let out = k.shoal(&["topics", "delete", &missing, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("topic {missing} does not exist")),
        "{}",
        text(&out.stderr)
    );
}

/// Growing partitions. tansu 0.6 does not support CreatePartitions (it does not advertise the
/// API), so against it this checks what can be checked: the plan shows the growth, and apply
/// fails naming CreatePartitions and the broker's refusal, leaving the count as it was. The
/// request shoal builds for MSK, which does support it, is checked by the unit test
/// `kafka::admin::tests::grow_request_carries_the_new_total`.
#[test]
fn growing_partitions_shows_in_the_plan_and_tansus_refusal_is_reported() {
    let k = Kafka::new();
    k.declare("w", &[("grows", 2, 1, &[])]);
    k.ok(&["topics", "apply"]);
    k.declare("w", &[("grows", 5, 1, &[])]);
    let grows = k.topic("grows");

    let plan = k.ok(&["topics", "plan"]);
    assert!(plan.contains(&format!("~ topic {grows}")), "{plan}");
    assert!(plan.contains("~ partitions: 2 → 5"), "{plan}");

    let out = k.shoal(&["topics", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "grow topic {grows} from 2 to 5 partitions: CreatePartitions"
        )),
        "{err}"
    );
    assert!(err.contains("UnsupportedFeature"), "{err}");
    assert!(err.contains("does not implement CreatePartitions"), "{err}");
    assert_eq!(k.broker_partitions("grows"), Some(2));
}

/// Two manifests declaring one topic differently: refused by fleet validation (see
/// `manifest::same_topic_declared_differently_by_two_consumers`) before any broker is asked.
#[test]
fn conflicting_declarations_fail_the_topic_plan() {
    let f = Fixture::standard();
    f.consumer("a", WORKER);
    f.consumer("b", &WORKER.replace("partitions = 6", "partitions = 12"));
    let out = shoal(f.root(), &["topics", "plan"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("consumers/b/consumer.toml"),
        "names the file: {err}"
    );
    assert!(
        err.contains("topic \"orders\" is also declared in consumers/a/consumer.toml with different settings"),
        "{err}"
    );
}
