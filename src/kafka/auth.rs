//! MSK IAM: OAUTHBEARER tokens for librdkafka, made by `aws-msk-iam-sasl-signer` from the
//! environment's AWS credential chain (the same SdkConfig every other AWS call uses).
//!
//! A token is the base64url (unpadded) text of a SigV4-presigned URL,
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=…`,
//! which MSK brokers verify. librdkafka asks for one on start and before the previous one
//! expires, through [`ShoalContext::generate_oauth_token`] (served when a consumer polls).

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_config::Region;
use aws_sdk_kafka::config::SharedCredentialsProvider;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;
use rdkafka::ClientContext;

use super::KafkaError;

/// The rdkafka context of every shoal Kafka client: with MSK IAM it signs tokens, otherwise it
/// behaves like rdkafka's default context.
#[derive(Clone, Default)]
pub struct ShoalContext {
    iam: Option<IamSigner>,
    /// Tokens handed to librdkafka so far (shared by the clones of one context).
    tokens: Arc<AtomicU64>,
}

#[derive(Clone)]
struct IamSigner {
    region: String,
    credentials: SharedCredentialsProvider,
}

impl ShoalContext {
    /// A context that makes MSK IAM tokens for `region` with these credentials.
    pub fn iam(region: &str, credentials: SharedCredentialsProvider) -> ShoalContext {
        ShoalContext {
            iam: Some(IamSigner {
                region: region.to_string(),
                credentials,
            }),
            tokens: Arc::default(),
        }
    }

    pub fn is_iam(&self) -> bool {
        self.iam.is_some()
    }

    /// How many tokens librdkafka was given through this context (and its clones).
    pub fn tokens_made(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

/// An MSK IAM token and its expiry (milliseconds since the Unix epoch).
pub async fn iam_token(
    region: &str,
    credentials: SharedCredentialsProvider,
) -> Result<(String, i64), KafkaError> {
    aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
        Region::new(region.to_string()),
        credentials,
    )
    .await
    .map_err(|e| KafkaError::Client {
        bootstrap: format!("MSK IAM in {region}"),
        message: format!("cannot sign an IAM auth token: {e}"),
    })
}

impl ClientContext for ShoalContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// Called on librdkafka's side, from a thread that may belong to an async runtime: the
    /// token is made on a thread of its own, with a runtime of its own.
    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        let Some(signer) = self.iam.clone() else {
            return Err("OAUTHBEARER is only used with MSK IAM (auth = \"iam\")".into());
        };
        let made = std::thread::spawn(move || -> Result<(String, i64), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            rt.block_on(iam_token(&signer.region, signer.credentials))
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "signing the MSK IAM token panicked".to_string())?;
        let (token, lifetime_ms) = made?;
        self.tokens.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(lifetime_ms, "made an MSK IAM auth token");
        Ok(OAuthToken {
            token,
            // MSK takes the principal from the signed credentials; this name is not checked.
            principal_name: "shoal".to_string(),
            lifetime_ms,
        })
    }
}

impl ConsumerContext for ShoalContext {}
