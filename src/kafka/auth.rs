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
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Why no MSK IAM token could be made or handed to librdkafka.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("OAUTHBEARER is only used with MSK IAM (auth = \"iam\")")]
    NotIam,
    /// The signer's own error (it fails on the credential chain or the presigning).
    #[error("cannot sign an MSK IAM token for {region}: {source}")]
    Sign {
        region: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    #[error("cannot start the runtime that signs MSK IAM tokens: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("signing the MSK IAM token panicked")]
    Panicked,
    #[error("librdkafka refused the MSK IAM token: {0}")]
    Refused(#[source] super::ffi::FfiError),
    #[error("cannot start the token refresh thread: {0}")]
    Thread(#[source] std::io::Error),
}

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
) -> Result<(String, i64), TokenError> {
    aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
        Region::new(region.to_string()),
        credentials,
    )
    .await
    .map_err(|e| TokenError::Sign {
        region: region.to_string(),
        source: Box::new(e),
    })
}

impl ShoalContext {
    /// Signs a token and counts it. Called on librdkafka's side, from a thread that may belong
    /// to an async runtime, so the token is made on a thread of its own, with a runtime of its
    /// own.
    pub fn token(&self) -> Result<OAuthToken, TokenError> {
        let Some(signer) = self.iam.clone() else {
            return Err(TokenError::NotIam);
        };
        let made = std::thread::spawn(move || -> Result<(String, i64), TokenError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(TokenError::Runtime)?;
            rt.block_on(iam_token(&signer.region, signer.credentials))
        })
        .join()
        .map_err(|_| TokenError::Panicked)?;
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

/// How loudly a librdkafka global error is logged. A connection that went down (a broker
/// restarting; tansu 0.6 closes one on DescribeGroups) is reconnected by librdkafka itself,
/// and a call that cannot reach a broker fails with an error of its own, so it is only news at
/// `-v`. Anything else is a warning.
fn global_error_level(code: Option<RDKafkaErrorCode>) -> tracing::Level {
    match code {
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
            tracing::Level::INFO
        }
        _ => tracing::Level::WARN,
    }
}

impl ClientContext for ShoalContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// librdkafka's global errors (rdkafka logs them as errors by default), at
    /// [`global_error_level`].
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if global_error_level(error.rdkafka_error_code()) == tracing::Level::INFO {
            tracing::info!(%error, reason, "a broker connection is down; librdkafka reconnects");
        } else {
            tracing::warn!(%error, reason, "librdkafka error");
        }
    }

    /// librdkafka's request for a token: [`ShoalContext::token`].
    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        Ok(self.token()?)
    }
}

impl ConsumerContext for ShoalContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_connection_is_info_and_other_global_errors_warn() {
        use tracing::Level;
        for down in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert_eq!(global_error_level(Some(down)), Level::INFO, "{down:?}");
        }
        for other in [
            RDKafkaErrorCode::Authentication,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::Fatal,
        ] {
            assert_eq!(global_error_level(Some(other)), Level::WARN, "{other:?}");
        }
        assert_eq!(global_error_level(None), Level::WARN);
    }
}
