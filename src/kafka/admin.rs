//! The brokers, through rdkafka's admin client: what topics exist, and the calls that change
//! them.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tracing::{debug, warn};

use super::auth::{ShoalContext, TokenError};
use super::ffi::{self, Alterations};
use super::{Connection, KafkaError};
use crate::manifest::KafkaAuth;

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

type Client = AdminClient<DefaultClientContext>;

/// An admin connection to one environment's brokers.
pub struct Admin {
    client: Arc<Client>,
    pub bootstrap: String,
    pub auth: KafkaAuth,
    /// With MSK IAM: keeps the client's token fresh while the connection lives.
    _token: Option<TokenRefresh>,
}

impl Admin {
    /// An admin client for a resolved connection. With MSK IAM it is given its first token
    /// before any request, and a fresh one before each expires ([`TokenRefresh`]): rdkafka's
    /// admin client never asks for one itself (rust-rdkafka issue 757).
    pub fn with(conn: &Connection) -> Result<Admin, KafkaError> {
        let bootstrap = conn.bootstrap().to_string();
        let fail = |message: String| KafkaError::Client {
            bootstrap: bootstrap.clone(),
            message,
        };
        let client: Arc<Client> = Arc::new(conn.config.create().map_err(|e| fail(e.to_string()))?);
        let token = if conn.resolved.auth == KafkaAuth::Iam {
            if !conn.context.is_iam() {
                return Err(fail(
                    "MSK IAM needs AWS credentials to sign its token, and the environment's credential chain gave none".into(),
                ));
            }
            Some(
                TokenRefresh::start(&client, conn.context.clone()).map_err(|source| {
                    KafkaError::Token {
                        bootstrap: bootstrap.clone(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Admin {
            client,
            bootstrap,
            auth: conn.resolved.auth,
            _token: token,
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
    pub async fn alter_configs(
        &self,
        name: &str,
        alterations: &Alterations,
    ) -> Result<(), KafkaError> {
        let client = self.client.clone();
        let (topic, alt) = (name.to_string(), alterations.clone());
        debug!(topic = name, "IncrementalAlterConfigs");
        tokio::task::spawn_blocking(move || {
            ffi::incremental_alter_configs(client.inner(), &topic, &alt, TIMEOUT)
        })
        .await
        .map_err(|e| self.broker_error("IncrementalAlterConfigs", e))?
        .map_err(|e| self.broker_error("IncrementalAlterConfigs", format!("topic {name}: {e}")))
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

/// Signs MSK IAM tokens for an admin client and hands them to librdkafka: the first one at
/// once (so a signing failure is an error of [`Admin::with`]), then a new one on a thread of
/// its own when 80 % of the last one's lifetime has passed. The thread ends with the admin
/// connection.
struct TokenRefresh {
    _stop: mpsc::Sender<()>,
}

impl TokenRefresh {
    fn start(client: &Arc<Client>, context: ShoalContext) -> Result<TokenRefresh, TokenError> {
        let mut wait = hand_over(client, &context)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let weak: Weak<Client> = Arc::downgrade(client);
        std::thread::Builder::new()
            .name("msk-iam-token".into())
            .spawn(move || loop {
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(client) = weak.upgrade() else { return };
                wait = hand_over(&client, &context).unwrap_or_else(|e| {
                    warn!("cannot refresh the MSK IAM token: {e}; trying again in 10s");
                    Duration::from_secs(10)
                });
            })
            .map_err(TokenError::Thread)?;
        Ok(TokenRefresh { _stop: stop })
    }
}

/// Signs a token and sets it on the client; returns how long until the next should be made.
fn hand_over(client: &Client, context: &ShoalContext) -> Result<Duration, TokenError> {
    let token = context.token()?;
    ffi::set_oauth_token(client.inner(), &token).map_err(TokenError::Refused)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let left = u64::try_from(token.lifetime_ms.saturating_sub(now_ms)).unwrap_or(0);
    Ok(Duration::from_millis(left * 4 / 5).max(Duration::from_secs(1)))
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
}
