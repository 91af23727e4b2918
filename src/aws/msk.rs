//! MSK: which brokers an `msk_cluster_arn` environment reaches, and how.
//!
//! DescribeClusterV2 must show the cluster ACTIVE; GetBootstrapBrokers then gives one broker
//! string per auth mode the cluster offers, and the environment's `auth` picks one. For SCRAM,
//! the username and password come from a Secrets Manager secret (MSK's convention: its name
//! starts with `AmazonMSK_`, its value is `{"username": …, "password": …}`).
//!
//! moto cannot answer these calls in a form aws-sdk-kafka parses (it writes `creationTime`
//! without a zone offset) and does not implement GetBootstrapBrokers, so this module is tested
//! on recorded answers replayed to the real SDK client (tests/it/msk.rs).

use crate::manifest::KafkaAuth;

use super::AwsError;

/// The broker strings a cluster offers, one per auth mode (GetBootstrapBrokers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStrings {
    pub plaintext: Option<String>,
    pub tls: Option<String>,
    pub sasl_scram: Option<String>,
    pub sasl_iam: Option<String>,
}

impl BrokerStrings {
    /// The broker string of one auth mode, when the cluster offers it.
    pub fn for_auth(&self, auth: KafkaAuth) -> Option<&str> {
        let s = match auth {
            KafkaAuth::Iam => &self.sasl_iam,
            KafkaAuth::Tls => &self.tls,
            KafkaAuth::Scram => &self.sasl_scram,
            KafkaAuth::Plaintext => &self.plaintext,
        };
        s.as_deref().filter(|s| !s.is_empty())
    }

    /// The auth modes the cluster offers, in the order shoal lists them.
    pub fn offered(&self) -> Vec<KafkaAuth> {
        [
            KafkaAuth::Iam,
            KafkaAuth::Tls,
            KafkaAuth::Scram,
            KafkaAuth::Plaintext,
        ]
        .into_iter()
        .filter(|a| self.for_auth(*a).is_some())
        .collect()
    }
}

/// The name of an auth mode as `shoal.toml` spells it.
pub fn auth_name(auth: KafkaAuth) -> &'static str {
    match auth {
        KafkaAuth::Iam => "iam",
        KafkaAuth::Tls => "tls",
        KafkaAuth::Scram => "scram",
        KafkaAuth::Plaintext => "plaintext",
    }
}

/// Why an MSK cluster's brokers could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum MskError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("MSK cluster {cluster_arn} is {state}, not ACTIVE; wait until it is ACTIVE (aws kafka describe-cluster-v2 --cluster-arn {cluster_arn})")]
    NotActive { cluster_arn: String, state: String },
    #[error("MSK cluster {cluster_arn} does not offer auth = \"{}\"; it offers: {}; set kafka.auth in shoal.toml to one of those, or enable {} on the cluster", auth_name(*.auth), offered_list(.offered), auth_name(*.auth))]
    AuthNotOffered {
        cluster_arn: String,
        auth: KafkaAuth,
        offered: Vec<KafkaAuth>,
    },
    #[error("SCRAM secret {secret_arn}: {problem}")]
    ScramSecret { secret_arn: String, problem: String },
}

fn offered_list(offered: &[KafkaAuth]) -> String {
    if offered.is_empty() {
        "none".to_string()
    } else {
        offered
            .iter()
            .map(|a| format!("\"{}\"", auth_name(*a)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// DescribeClusterV2: fails unless the cluster is ACTIVE.
pub async fn check_active(
    client: &aws_sdk_kafka::Client,
    cluster_arn: &str,
) -> Result<(), MskError> {
    let out = client
        .describe_cluster_v2()
        .cluster_arn(cluster_arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("MSK", "DescribeClusterV2", e))?;
    let state = out
        .cluster_info()
        .and_then(|c| c.state())
        .ok_or_else(|| AwsError::missing("MSK", "DescribeClusterV2", "cluster state"))?;
    if *state == aws_sdk_kafka::types::ClusterState::Active {
        Ok(())
    } else {
        Err(MskError::NotActive {
            cluster_arn: cluster_arn.to_string(),
            state: state.as_str().to_string(),
        })
    }
}

/// GetBootstrapBrokers: the cluster's broker strings.
pub async fn broker_strings(
    client: &aws_sdk_kafka::Client,
    cluster_arn: &str,
) -> Result<BrokerStrings, MskError> {
    let out = client
        .get_bootstrap_brokers()
        .cluster_arn(cluster_arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("MSK", "GetBootstrapBrokers", e))?;
    Ok(BrokerStrings {
        plaintext: out.bootstrap_broker_string().map(str::to_string),
        tls: out.bootstrap_broker_string_tls().map(str::to_string),
        sasl_scram: out.bootstrap_broker_string_sasl_scram().map(str::to_string),
        sasl_iam: out.bootstrap_broker_string_sasl_iam().map(str::to_string),
    })
}

/// The broker string for `auth` of an ACTIVE cluster: DescribeClusterV2, then
/// GetBootstrapBrokers.
pub async fn bootstrap(
    client: &aws_sdk_kafka::Client,
    cluster_arn: &str,
    auth: KafkaAuth,
) -> Result<String, MskError> {
    check_active(client, cluster_arn).await?;
    let strings = broker_strings(client, cluster_arn).await?;
    match strings.for_auth(auth) {
        Some(s) => Ok(s.to_string()),
        None => Err(MskError::AuthNotOffered {
            cluster_arn: cluster_arn.to_string(),
            auth,
            offered: strings.offered(),
        }),
    }
}

/// A SCRAM username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses an MSK SCRAM secret's value, `{"username": "…", "password": "…"}`. The errors never
/// contain the secret's text.
pub fn parse_scram_secret(secret_arn: &str, text: &str) -> Result<ScramCredentials, MskError> {
    let problem = |p: String| MskError::ScramSecret {
        secret_arn: secret_arn.to_string(),
        problem: p,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        problem(format!(
            "the value is not JSON (line {}, column {}); MSK SCRAM secrets hold {{\"username\": \"…\", \"password\": \"…\"}}",
            e.line(),
            e.column()
        ))
    })?;
    let Some(obj) = value.as_object() else {
        return Err(problem(
            "the value is not a JSON object; MSK SCRAM secrets hold {\"username\": \"…\", \"password\": \"…\"}".into(),
        ));
    };
    let field = |name: &str| -> Result<String, MskError> {
        match obj.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::String(_)) => Err(problem(format!("\"{name}\" is empty"))),
            Some(_) => Err(problem(format!("\"{name}\" is not a string"))),
            None => Err(problem(format!(
                "has no \"{name}\" field; MSK SCRAM secrets hold {{\"username\": \"…\", \"password\": \"…\"}}"
            ))),
        }
    };
    Ok(ScramCredentials {
        username: field("username")?,
        password: field("password")?,
    })
}

/// GetSecretValue of an MSK SCRAM secret, parsed.
pub async fn scram_credentials(
    client: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
) -> Result<ScramCredentials, MskError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("Secrets Manager", "GetSecretValue", e))?;
    let text = out.secret_string().ok_or_else(|| MskError::ScramSecret {
        secret_arn: secret_arn.to_string(),
        problem: "has no SecretString (a binary secret); MSK SCRAM secrets are JSON text".into(),
    })?;
    parse_scram_secret(secret_arn, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_modes_skip_empty_strings() {
        let s = BrokerStrings {
            tls: Some("b-1:9094".into()),
            sasl_iam: Some(String::new()),
            ..BrokerStrings::default()
        };
        assert_eq!(s.offered(), vec![KafkaAuth::Tls]);
        assert_eq!(s.for_auth(KafkaAuth::Iam), None);
    }

    #[test]
    fn scram_secret_errors_do_not_leak_the_value() {
        let err = parse_scram_secret("arn:s", "{\"username\":\"u\",\"password\":5}")
            .expect_err("not a string");
        assert_eq!(
            err.to_string(),
            "SCRAM secret arn:s: \"password\" is not a string"
        );
        let err = parse_scram_secret("arn:s", "hunter2").expect_err("not JSON");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
