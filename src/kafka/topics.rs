//! Topics as code: the fleet's `[[topic]]` declarations against the live topics, as a
//! [`Plan`] of `topic` resources, the steps that apply it, and `shoal topics plan|apply|delete`.
//!
//! Topics are never deleted by omission: a live topic nothing declares is "unmanaged".
//! Partitions only grow; a lower partition count or another replication factor is refused
//! before anything is changed, every refusal listed at once.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};
use tracing::info;

use super::admin::{Admin, LiveTopic};
use super::ffi::Alterations;
use super::KafkaError;
use crate::discover::Fleet;
use crate::manifest::Topic;
use crate::plan::{self, Kind, Live, Plan, Resource};

/// The declared topics of a fleet, one per name. Fleet validation has already refused two
/// manifests declaring the same topic differently, so the first declaration stands for all.
pub fn declared(fleet: &Fleet) -> Vec<Topic> {
    let mut out: BTreeMap<String, Topic> = BTreeMap::new();
    for c in &fleet.consumers {
        for t in &c.topics {
            out.entry(t.name.clone()).or_insert_with(|| t.clone());
        }
    }
    out.into_values().collect()
}

/// A topic's spec as `plan::desired` renders it: `{partitions, replicationFactor, config}`.
fn spec(partitions: u32, replication: u16, config: &BTreeMap<String, String>) -> Value {
    json!({
        "partitions": partitions,
        "replicationFactor": replication,
        "config": config,
    })
}

/// The desired resource of a declared topic.
pub fn desired_resource(t: &Topic) -> Resource {
    Resource {
        kind: Kind::Topic,
        name: t.name.clone(),
        consumer: None,
        spec: spec(t.partitions, t.replication, &t.config),
    }
}

/// The configs of a live topic that are compared with the declaration: those set on the topic
/// (source DYNAMIC_TOPIC_CONFIG), so that broker defaults never show as differences, plus the
/// current value of each declared key the broker reports with another source. The second part
/// makes a declared value equal to the effective one count as unchanged, and is what makes
/// tansu 0.6 work at all: it reports the configs a topic was created with as DEFAULT_CONFIG.
pub fn compared_config(
    live: &LiveTopic,
    declared: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = live.dynamic.clone();
    for k in declared.into_iter().flat_map(BTreeMap::keys) {
        if let (false, Some(v)) = (out.contains_key(k), live.other.get(k)) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Something the plan asks for that Kafka cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    PartitionDecrease {
        topic: String,
        live: u32,
        desired: u32,
    },
    ReplicationChange {
        topic: String,
        live: u16,
        desired: u16,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PartitionDecrease {
                topic,
                live,
                desired,
            } => write!(
                f,
                "topic {topic}: partitions {live} → {desired}: Kafka cannot remove partitions: create a new topic and migrate"
            ),
            Refusal::ReplicationChange {
                topic,
                live,
                desired,
            } => write!(
                f,
                "topic {topic}: replication factor {live} → {desired}: shoal does not change a topic's replication factor; use kafka-reassign-partitions --reassignment-json-file … --execute to give each partition {desired} replicas, then the plan matches"
            ),
        }
    }
}

/// One change to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create(Topic),
    GrowPartitions {
        topic: String,
        from: u32,
        to: u32,
    },
    AlterConfigs {
        topic: String,
        alterations: Alterations,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create(t) => write!(
                f,
                "create topic {} ({} partitions, replication factor {}, {} configs)",
                t.name,
                t.partitions,
                t.replication,
                t.config.len()
            ),
            Step::GrowPartitions { topic, from, to } => {
                write!(f, "grow topic {topic} from {from} to {to} partitions")
            }
            Step::AlterConfigs { topic, alterations } => {
                let parts: Vec<String> = alterations
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("set {k}={v}"),
                        None => format!("delete {k}"),
                    })
                    .collect();
                write!(f, "alter configs of topic {topic}: {}", parts.join(", "))
            }
        }
    }
}

/// The plan, the steps that carry it out, and what Kafka cannot do.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPlan {
    pub plan: Plan,
    pub steps: Vec<Step>,
    /// When not empty, nothing may be applied.
    pub refusals: Vec<Refusal>,
}

impl TopicPlan {
    /// Fails with every refusal at once, if there are any.
    pub fn check(&self) -> Result<(), KafkaError> {
        if self.refusals.is_empty() {
            Ok(())
        } else {
            Err(KafkaError::Refused(self.refusals.clone()))
        }
    }
}

/// Compares the declared topics with the live ones, noting every change Kafka cannot make.
pub fn plan_topics(declared: &[Topic], live: &BTreeMap<String, LiveTopic>) -> TopicPlan {
    let desired: Vec<Resource> = declared.iter().map(desired_resource).collect();
    let mut live_resources = Live::default();
    for (name, l) in live {
        let decl = declared.iter().find(|t| &t.name == name);
        live_resources.insert(Resource {
            kind: Kind::Topic,
            name: name.clone(),
            consumer: None,
            spec: spec(
                l.partitions,
                l.replication,
                &compared_config(l, decl.map(|t| &t.config)),
            ),
        });
    }
    let the_plan = plan::diff(&desired, &live_resources);
    let mut refusals = Vec::new();
    let mut steps = Vec::new();
    for t in declared {
        let Some(l) = live.get(&t.name) else {
            steps.push(Step::Create(t.clone()));
            continue;
        };
        if t.partitions < l.partitions {
            refusals.push(Refusal::PartitionDecrease {
                topic: t.name.clone(),
                live: l.partitions,
                desired: t.partitions,
            });
        }
        if t.replication != l.replication {
            refusals.push(Refusal::ReplicationChange {
                topic: t.name.clone(),
                live: l.replication,
                desired: t.replication,
            });
        }
        if t.partitions > l.partitions {
            steps.push(Step::GrowPartitions {
                topic: t.name.clone(),
                from: l.partitions,
                to: t.partitions,
            });
        }
        let current = compared_config(l, Some(&t.config));
        let mut alterations = Alterations::new();
        for (k, v) in &t.config {
            if current.get(k) != Some(v) {
                alterations.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in current.keys() {
            if !t.config.contains_key(k) {
                alterations.insert(k.clone(), None);
            }
        }
        if !alterations.is_empty() {
            steps.push(Step::AlterConfigs {
                topic: t.name.clone(),
                alterations,
            });
        }
    }
    TopicPlan {
        plan: the_plan,
        steps,
        refusals,
    }
}

/// Reads the live topics and plans.
pub async fn plan_live(admin: &Admin, fleet: &Fleet) -> Result<TopicPlan, KafkaError> {
    let live = admin.live_topics().await?;
    Ok(plan_topics(&declared(fleet), &live))
}

/// Carries out the steps in order, logging each; returns what was done. A failed step does not
/// stop the others (they concern other topics or are independent); all failures are reported.
pub async fn apply(admin: &Admin, steps: &[Step]) -> Result<Vec<String>, KafkaError> {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for step in steps {
        info!(step = %step, "applying");
        let result = match step {
            Step::Create(t) => {
                admin
                    .create_topic(&t.name, t.partitions, t.replication, &t.config)
                    .await
            }
            Step::GrowPartitions { topic, to, .. } => admin.grow_partitions(topic, *to).await,
            Step::AlterConfigs { topic, alterations } => {
                admin.alter_configs(topic, alterations).await
            }
        };
        match result {
            Ok(()) => {
                info!(step = %step, "done");
                done.push(step.to_string());
            }
            Err(e) => {
                let mut message = format!("{step}: {e}");
                if matches!(step, Step::GrowPartitions { .. })
                    && message.contains("UnsupportedFeature")
                {
                    message.push_str(
                        " (the broker does not implement CreatePartitions, so the partition count is unchanged)",
                    );
                }
                info!(step = %step, error = %e, "failed");
                failed.push(message);
            }
        }
    }
    if failed.is_empty() {
        Ok(done)
    } else {
        Err(KafkaError::Apply { done, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: u32, replication: u16, config: &[(&str, &str)]) -> Topic {
        Topic {
            name: name.into(),
            partitions,
            replication,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn live(partitions: u32, replication: u16, dynamic: &[(&str, &str)]) -> LiveTopic {
        LiveTopic {
            partitions,
            replication,
            dynamic: dynamic
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            other: [("retention.ms", "604800000"), ("cleanup.policy", "delete")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn create_grow_alter_and_unmanaged() {
        let declared = vec![
            topic("new", 3, 1, &[("retention.ms", "1000")]),
            topic("grow", 6, 1, &[]),
            topic("alter", 1, 1, &[("retention.ms", "2000")]),
            topic("same", 1, 1, &[("cleanup.policy", "delete")]),
        ];
        let mut l = BTreeMap::new();
        l.insert("grow".to_string(), live(3, 1, &[]));
        l.insert(
            "alter".to_string(),
            live(1, 1, &[("retention.ms", "1000"), ("segment.ms", "5")]),
        );
        l.insert("same".to_string(), live(1, 1, &[]));
        l.insert("other".to_string(), live(1, 1, &[]));
        let tp = plan_topics(&declared, &l);
        assert!(tp.check().is_ok());
        assert_eq!(tp.plan.create.len(), 1);
        assert_eq!(tp.plan.change.len(), 2);
        assert_eq!(tp.plan.unchanged, 1, "a declared default is not a change");
        assert_eq!(tp.plan.unmanaged[0].name, "other");
        let mut alt = Alterations::new();
        alt.insert("retention.ms".into(), Some("2000".into()));
        alt.insert("segment.ms".into(), None);
        assert_eq!(
            tp.steps,
            vec![
                Step::Create(declared[0].clone()),
                Step::GrowPartitions {
                    topic: "grow".into(),
                    from: 3,
                    to: 6
                },
                Step::AlterConfigs {
                    topic: "alter".into(),
                    alterations: alt
                },
            ]
        );
    }

    #[test]
    fn every_refusal_at_once() {
        let declared = vec![topic("a", 2, 1, &[]), topic("b", 3, 3, &[])];
        let mut l = BTreeMap::new();
        l.insert("a".to_string(), live(4, 1, &[]));
        l.insert("b".to_string(), live(3, 1, &[]));
        let tp = plan_topics(&declared, &l);
        assert_eq!(
            tp.plan.change.len(),
            2,
            "the plan still shows what was asked"
        );
        let err = tp.check().expect_err("refused");
        let KafkaError::Refused(r) = &err else {
            panic!("{err}")
        };
        assert_eq!(r.len(), 2);
        let text = err.to_string();
        assert!(text.contains("Kafka cannot remove partitions: create a new topic and migrate"));
        assert!(text.contains("kafka-reassign-partitions"));
    }

    #[test]
    fn spec_matches_the_deploy_plan() {
        let root = tempfile::tempdir().expect("tmp");
        let project = crate::manifest::Project::parse(
            root.path(),
            "project = \"p\"\n[env.local]\nplatform = \"docker\"\n",
        )
        .expect("project");
        let env = project.environment_with("local", &|_| None).expect("env");
        let dir = root.path().join("consumers/w");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write");
        let consumer = crate::manifest::Consumer::parse(
            root.path(),
            &dir,
            "kind = \"worker\"\ncpu = 256\nmemory = 512\n[[topic]]\nname = \"t\"\npartitions = 3\nreplication = 2\nconfig = { \"retention.ms\" = \"1\" }\n",
        )
        .expect("consumer");
        let fleet = Fleet {
            consumers: vec![consumer],
            skipped: Vec::new(),
            elsewhere: Vec::new(),
        };
        let renderer = crate::render::Renderer::for_project(root.path()).expect("renderer");
        let tags = BTreeMap::new();
        let all = plan::desired(&plan::DesiredInputs {
            target: crate::render::Target {
                project: "p",
                env: &env,
                bootstrap: None,
            },
            fleet: &fleet,
            renderer: &renderer,
            tags: &tags,
            service: &|_| json!({}),
            prerequisites: &|_| Vec::new(),
        })
        .expect("desired");
        let from_deploy: Vec<&Resource> = all.iter().filter(|r| r.kind == Kind::Topic).collect();
        let ours: Vec<Resource> = declared(&fleet).iter().map(desired_resource).collect();
        assert_eq!(from_deploy, ours.iter().collect::<Vec<_>>());
    }
}
