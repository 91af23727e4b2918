//! The brokers, through rdkafka's admin client: what topics exist, and the calls that change
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tracing::debug;

use super::{wire, Connection, KafkaError};
use crate::manifest::{Environment, KafkaAuth};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A topic as the brokers report it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveTopic {
    pub partitions: u32,
    /// Replicas of the first partition (Kafka keeps one factor per topic).
    pub replication: u16,
    /// Configs set on the topic (DescribeConfigs source DYNAMIC_TOPIC_CONFIG).
    pub dynamic: BTreeMap<String, String>,
    /// Every other config the broker reported (broker and built-in defaults), with its value.
    pub other: BTreeMap<String, String>,
}

/// An admin connection to one environment's brokers.
pub struct Admin {
    client: Arc<AdminClient<DefaultClientContext>>,
    pub bootstrap: String,
    /// How the brokers are reached: IncrementalAlterConfigs goes over shoal's own plaintext
    /// wire code ([`wire`]) only on plaintext listeners.
    pub auth: KafkaAuth,
}

impl Admin {
    /// Connects to an environment's brokers; an MSK cluster is resolved first (see
    /// [`super::connect_config_blocking`]). In async code, prefer [`Admin::open`].
    pub fn connect(env: &Environment) -> Result<Admin, KafkaError> {
        Admin::with(&super::connect_config_blocking(env)?)
    }

    /// Resolves an environment's brokers ([`super::connect_config`]) and connects.
    pub async fn open(env: &Environment) -> Result<Admin, KafkaError> {
        Admin::with(&super::connect_config(env).await?)
    }

    /// An admin client for a resolved connection. MSK IAM is refused: rdkafka 0.38's admin
    /// client never serves OAUTHBEARER token refreshes.
    pub fn with(conn: &Connection) -> Result<Admin, KafkaError> {
        let bootstrap = conn.bootstrap().to_string();
        if conn.resolved.auth == KafkaAuth::Iam {
            return Err(KafkaError::AdminIamUnsupported { bootstrap });
        }
        let client = conn.config.create().map_err(|e| KafkaError::Client {
            bootstrap: bootstrap.clone(),
            message: e.to_string(),
        })?;
        Ok(Admin {
            client: Arc::new(client),
            bootstrap,
            auth: conn.resolved.auth,
        })
    }

    fn broker_error(&self, op: &'static str, message: impl ToString) -> KafkaError {
        KafkaError::Broker {
            op,
            bootstrap: self.bootstrap.clone(),
            message: message.to_string(),
        }
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(TIMEOUT))
            .operation_timeout(Some(TIMEOUT))
    }

    /// Every topic but the internal ones (`__consumer_offsets` and the like), with the
    /// partition count, replication factor and configs.
    pub async fn live_topics(&self) -> Result<BTreeMap<String, LiveTopic>, KafkaError> {
        let client = self.client.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            client.inner().fetch_metadata(None, Duration::from_secs(15))
        })
        .await
        .map_err(|e| self.broker_error("Metadata", e))?
        .map_err(|e| self.broker_error("Metadata", e))?;
        let mut topics = BTreeMap::new();
        for t in metadata.topics() {
            if t.name().starts_with("__") {
                continue;
            }
            if let Some(err) = t.error() {
                return Err(self.broker_error(
                    "Metadata",
                    format!("topic {}: {}", t.name(), RDKafkaErrorCode::from(err)),
                ));
            }
            let replication = t
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(0);
            topics.insert(
                t.name().to_string(),
                LiveTopic {
                    partitions: t.partitions().len() as u32,
                    replication: u16::try_from(replication).unwrap_or(u16::MAX),
                    ..LiveTopic::default()
                },
            );
        }
        if topics.is_empty() {
            return Ok(topics);
        }
        let names: Vec<String> = topics.keys().cloned().collect();
        let specs: Vec<ResourceSpecifier<'_>> = names
            .iter()
            .map(|n| ResourceSpecifier::Topic(n.as_str()))
            .collect();
        let results = self
            .client
            .describe_configs(specs.iter(), &Self::options())
            .await
            .map_err(|e| self.broker_error("DescribeConfigs", e))?;
        for (name, result) in names.iter().zip(results) {
            let resource = result.map_err(|code| {
                self.broker_error("DescribeConfigs", format!("topic {name}: {code}"))
            })?;
            let Some(t) = topics.get_mut(name) else {
                continue;
            };
            for e in resource.entries {
                let Some(value) = e.value else { continue };
                if e.source == ConfigSource::DynamicTopic {
                    t.dynamic.insert(e.name, value);
                } else {
                    t.other.insert(e.name, value);
                }
            }
        }
        Ok(topics)
    }

    /// CreateTopics for one topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication: u16,
        config: &BTreeMap<String, String>,
    ) -> Result<(), KafkaError> {
        let mut topic = NewTopic::new(
            name,
            i32::try_from(partitions).unwrap_or(i32::MAX),
            TopicReplication::Fixed(i32::from(replication)),
        );
        for (k, v) in config {
            topic = topic.set(k, v);
        }
        let results = self
            .client
            .create_topics([&topic], &Self::options())
            .await
            .map_err(|e| self.broker_error("CreateTopics", e))?;
        one_result("CreateTopics", self, results)
    }

    /// CreatePartitions: grows a topic to `total` partitions.
    pub async fn grow_partitions(&self, name: &str, total: u32) -> Result<(), KafkaError> {
        let request = grow_request(name, total);
        let results = self
            .client
            .create_partitions([&request], &Self::options())
            .await
            .map_err(|e| self.broker_error("CreatePartitions", e))?;
        one_result("CreatePartitions", self, results)
    }

    /// IncrementalAlterConfigs: sets and deletes (resets) these keys, leaving the others.
    /// On TLS and SASL listeners, which shoal's wire code does not speak, the same result is
    /// reached with AlterConfigs (which rdkafka binds): the topic's current dynamic configs
    /// with these alterations applied, as the topic's whole dynamic configuration.
    pub async fn alter_configs(
        &self,
        name: &str,
        alterations: &wire::Alterations,
    ) -> Result<(), KafkaError> {
        if self.auth != KafkaAuth::Plaintext {
            return self.replace_configs(name, alterations).await;
        }
        let broker = self
            .bootstrap
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        let (topic, alt) = (name.to_string(), alterations.clone());
        debug!(%broker, topic = name, "IncrementalAlterConfigs");
        tokio::task::spawn_blocking(move || {
            wire::incremental_alter_configs(&broker, &topic, &alt, TIMEOUT)
        })
        .await
        .map_err(|e| self.broker_error("IncrementalAlterConfigs", e))?
        .map_err(|e| self.broker_error("IncrementalAlterConfigs", e))
    }

    /// AlterConfigs with the topic's dynamic configs after `alterations`.
    async fn replace_configs(
        &self,
        name: &str,
        alterations: &wire::Alterations,
    ) -> Result<(), KafkaError> {
        let results = self
            .client
            .describe_configs([&ResourceSpecifier::Topic(name)], &Self::options())
            .await
            .map_err(|e| self.broker_error("DescribeConfigs", e))?;
        let mut dynamic = BTreeMap::new();
        for r in results {
            let resource = r.map_err(|code| {
                self.broker_error("DescribeConfigs", format!("topic {name}: {code}"))
            })?;
            for e in resource.entries {
                if let (ConfigSource::DynamicTopic, Some(v)) = (e.source, e.value) {
                    dynamic.insert(e.name, v);
                }
            }
        }
        let full = merged(&dynamic, alterations);
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &full {
            alter = alter.set(k, v);
        }
        debug!(topic = name, "AlterConfigs");
        let results = self
            .client
            .alter_configs([&alter], &Self::options())
            .await
            .map_err(|e| self.broker_error("AlterConfigs", e))?;
        for r in results {
            if let Err((_, code)) = r {
                return Err(self.broker_error("AlterConfigs", format!("topic {name}: {code}")));
            }
        }
        Ok(())
    }

    /// DeleteTopics for one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), KafkaError> {
        let results = self
            .client
            .delete_topics(&[name], &Self::options())
            .await
            .map_err(|e| self.broker_error("DeleteTopics", e))?;
        one_result("DeleteTopics", self, results)
    }
}

/// The CreatePartitions request for growing `name` to `total` partitions: Kafka takes the new
/// total, not the number to add, and picks the brokers of the new replicas itself.
pub fn grow_request(name: &str, total: u32) -> NewPartitions<'_> {
    NewPartitions::new(name, total as usize)
}

/// A topic's dynamic configs after incremental alterations: what AlterConfigs must send to
/// have the same effect as IncrementalAlterConfigs.
pub fn merged(
    dynamic: &BTreeMap<String, String>,
    alterations: &wire::Alterations,
) -> BTreeMap<String, String> {
    let mut out = dynamic.clone();
    for (k, v) in alterations {
        match v {
            Some(v) => {
                out.insert(k.clone(), v.clone());
            }
            None => {
                out.remove(k);
            }
        }
    }
    out
}

fn one_result(
    op: &'static str,
    admin: &Admin,
    results: Vec<rdkafka::admin::TopicResult>,
) -> Result<(), KafkaError> {
    for r in results {
        if let Err((topic, code)) = r {
            return Err(admin.broker_error(op, format!("topic {topic}: {code}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request shoal sends to grow a topic (tansu 0.6 has no CreatePartitions, so this is
    /// checked here rather than against a broker): the new total, no manual assignment.
    #[test]
    fn grow_request_carries_the_new_total() {
        let r = grow_request("orders", 12);
        assert_eq!(r.topic_name, "orders");
        assert_eq!(r.new_partition_count, 12);
        assert!(r.assignment.is_none());
    }

    /// On TLS/SASL listeners shoal sends AlterConfigs (the whole dynamic configuration):
    /// set keys are added or replaced, deleted keys left out, the others kept.
    #[test]
    fn alter_configs_fallback_sends_the_whole_dynamic_set() {
        let dynamic: BTreeMap<String, String> = [("retention.ms", "1"), ("segment.ms", "5")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut alt = wire::Alterations::new();
        alt.insert("retention.ms".into(), Some("2".into()));
        alt.insert("segment.ms".into(), None);
        alt.insert("cleanup.policy".into(), Some("compact".into()));
        let full = merged(&dynamic, &alt);
        assert_eq!(
            full.into_iter().collect::<Vec<_>>(),
            vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("retention.ms".to_string(), "2".to_string())
            ]
        );
    }
}
