//! MSK IAM for the exposure workloads: librdkafka cannot sign in to MSK with IAM by itself, so
//! this crate makes its OAUTHBEARER tokens from the task role, the way shoal does for its own
//! clients (`src/kafka/auth.rs` at the repository root).
//!
//! shoal deploys a workload of an `auth = "iam"` environment with `KAFKA_AUTH=iam`,
//! `AWS_REGION` and the SASL settings as `RDKAFKA_*` variables (README, "Kafka auth").
//! [`IamSettings::from_vars`] reads those; [`Signer::start`] loads the AWS credential chain
//! (the ECS task role, through the container credentials endpoint) and checks, before the
//! workload starts, that it yields credentials. Each rdkafka client context then answers
//! librdkafka's token requests with [`token`].
//!
//! A token is the base64url (unpadded) text of a SigV4-presigned URL,
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&…`, valid for 15
//! minutes; librdkafka asks for a fresh one before it expires.

use std::error::Error;
use std::fmt;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
pub use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::ClientContext;
use tokio::sync::mpsc;

/// How long the first credentials may take at start (the ECS endpoint answers in
/// milliseconds; a missing role fails at once).
const FIRST_CREDENTIALS: Duration = Duration::from_secs(15);
/// How long librdkafka's callback waits for one token.
const SIGN_TIMEOUT: Duration = Duration::from_secs(30);

/// The values `KAFKA_AUTH` takes, as shoal sets them.
const AUTH_MODES: [&str; 4] = ["plaintext", "tls", "scram", "iam"];

/// A variable that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub var: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

fn problem(var: &str, what: impl Into<String>) -> Problem {
    Problem {
        var: var.to_string(),
        problem: what.into(),
    }
}

/// `KAFKA_AUTH=iam` and the cluster's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamSettings {
    pub region: String,
}

impl IamSettings {
    /// Reads `KAFKA_AUTH`, `AWS_REGION` (or `AWS_DEFAULT_REGION`) and the SASL mechanism
    /// variables. `None` unless `KAFKA_AUTH` is `iam`: with `plaintext`, `tls` or `scram`
    /// (or unset) librdkafka does everything from the `RDKAFKA_*` variables.
    pub fn from_vars<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<IamSettings>, Problem> {
        let get = |k: &str| get(k).map(str::trim).filter(|v| !v.is_empty());
        match get("KAFKA_AUTH").map(str::to_ascii_lowercase).as_deref() {
            None | Some("plaintext" | "tls" | "scram") => return Ok(None),
            Some("iam") => {}
            Some(other) => {
                return Err(problem(
                    "KAFKA_AUTH",
                    format!("{other:?} is not one of {}", AUTH_MODES.join(", ")),
                ))
            }
        }
        for var in ["RDKAFKA_SASL_MECHANISM", "RDKAFKA_SASL_MECHANISMS"] {
            if let Some(m) = get(var).filter(|m| !m.eq_ignore_ascii_case("OAUTHBEARER")) {
                return Err(problem(
                    var,
                    format!(
                        "is {m:?}, but KAFKA_AUTH=iam signs in with OAUTHBEARER: \
                         unset it or set it to OAUTHBEARER"
                    ),
                ));
            }
        }
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                problem(
                    "AWS_REGION",
                    "is required with KAFKA_AUTH=iam: the MSK cluster's region, which the tokens \
                 are signed for",
                )
            })?;
        Ok(Some(IamSettings {
            region: region.to_string(),
        }))
    }

    /// The client settings IAM needs, set before the `RDKAFKA_*` variables (which may
    /// still override them).
    pub fn apply(&self, config: &mut ClientConfig) {
        config
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER");
    }
}

/// One token request: where the answer goes.
type Request = std_mpsc::SyncSender<Result<(String, i64), String>>;

/// Signs MSK IAM tokens on a thread of its own, with an async runtime of its own that also
/// owns the credential provider's HTTP connections. librdkafka asks for tokens from its own
/// threads or from inside the workload's runtime; neither may block on async code there.
#[derive(Clone)]
pub struct Signer {
    region: String,
    requests: mpsc::UnboundedSender<Request>,
    /// Token requests by result; clones share them.
    tokens: Family<TokenResult, Counter>,
}

/// The label of the token counter: whether librdkafka got its token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenResult {
    result: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    made,
    failed,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Starts signing with the AWS default credential chain (environment, profile, the ECS
    /// task role, instance profile), and waits until the chain yields credentials: a task
    /// without a role fails at start with a message, not later in librdkafka's logs.
    pub fn start(settings: &IamSettings) -> Result<Signer, String> {
        Signer::start_with(settings, None)
    }

    /// As [`Signer::start`], with these credentials instead of the default chain.
    pub fn start_with(
        settings: &IamSettings,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Signer, String> {
        let region = settings.region.clone();
        let (requests, mut incoming) = mpsc::unbounded_channel::<Request>();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<(), String>>(1);
        let thread_region = region.clone();
        std::thread::Builder::new()
            .name("msk-iam".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let credentials = match first_credentials(&thread_region, credentials).await {
                        Ok(c) => {
                            let _ = ready_tx.send(Ok(()));
                            c
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while let Some(reply) = incoming.recv().await {
                        let made =
                            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                                Region::new(thread_region.clone()),
                                credentials.clone(),
                            )
                            .await
                            .map_err(|e| format!("cannot sign an MSK IAM token: {e}"));
                        let _ = reply.send(made);
                    }
                });
            })
            .map_err(|e| format!("cannot start the MSK IAM signing thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the MSK IAM signing thread stopped".to_string())??;
        Ok(Signer {
            region,
            requests,
            tokens: {
                let tokens = Family::default();
                for result in [Outcome::made, Outcome::failed] {
                    tokens.get_or_create_owned(&TokenResult { result });
                }
                tokens
            },
        })
    }

    /// A fresh token, for librdkafka.
    pub fn sign(&self) -> Result<OAuthToken, String> {
        let answer = (|| {
            let (reply, answer) = std_mpsc::sync_channel(1);
            self.requests
                .send(reply)
                .map_err(|_| "the MSK IAM signing thread stopped".to_string())?;
            answer
                .recv_timeout(SIGN_TIMEOUT)
                .map_err(|_| format!("no MSK IAM token within {}s", SIGN_TIMEOUT.as_secs()))?
        })();
        match answer {
            Ok((token, lifetime_ms)) => {
                self.count(Outcome::made).inc();
                tracing::debug!(lifetime_ms, "made an MSK IAM token");
                Ok(OAuthToken {
                    token,
                    // MSK takes the principal from the signature; librdkafka only needs a name.
                    principal_name: "msk-iam".to_string(),
                    lifetime_ms,
                })
            }
            Err(e) => {
                self.count(Outcome::failed).inc();
                tracing::warn!(error = %e, region = %self.region, "MSK IAM token not made; librdkafka asks again");
                Err(e)
            }
        }
    }

    fn count(&self, result: Outcome) -> Counter {
        self.tokens.get_or_create_owned(&TokenResult { result })
    }

    /// Registers the token counter as `<prefix>_kafka_iam_tokens_total`, by result.
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_kafka_iam_tokens"),
            "MSK IAM tokens asked for by librdkafka, by result",
            self.tokens.clone(),
        );
    }

    /// Tokens handed to librdkafka so far, by this signer and its clones.
    pub fn tokens_made(&self) -> u64 {
        self.count(Outcome::made).get()
    }

    /// Token requests that failed so far.
    pub fn tokens_failed(&self) -> u64 {
        self.count(Outcome::failed).get()
    }
}

/// The credential provider, once it has yielded credentials.
async fn first_credentials(
    region: &str,
    given: Option<SharedCredentialsProvider>,
) -> Result<SharedCredentialsProvider, String> {
    let provider = match given {
        Some(p) => p,
        None => aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .load()
            .await
            .credentials_provider()
            .ok_or("KAFKA_AUTH=iam: the AWS SDK found no credential provider")?,
    };
    match tokio::time::timeout(FIRST_CREDENTIALS, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(provider),
        Ok(Err(e)) => Err(format!(
            "KAFKA_AUTH=iam: no AWS credentials to sign MSK IAM tokens with: {}. On ECS, give \
             the task a role (task_role in consumer.toml) allowed kafka-cluster:Connect",
            chain(&e)
        )),
        Err(_) => Err(format!(
            "KAFKA_AUTH=iam: the AWS credential chain gave no credentials within {}s",
            FIRST_CREDENTIALS.as_secs()
        )),
    }
}

/// An error and its causes, on one line (the SDK's "no credentials in the chain" error lists
/// each provider it tried on a line of its own).
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a client context's `generate_oauth_token` answers: a token when the workload runs
/// with `KAFKA_AUTH=iam`, an error otherwise (librdkafka asks only when the client uses
/// OAUTHBEARER).
pub fn token(signer: Option<&Signer>) -> Result<OAuthToken, Box<dyn Error>> {
    match signer {
        Some(s) => Ok(s.sign()?),
        None => Err("SASL OAUTHBEARER needs KAFKA_AUTH=iam (MSK IAM); \
                     other OAUTHBEARER providers are not supported"
            .into()),
    }
}

/// Inside an `impl rdkafka::ClientContext` block: librdkafka's OAUTHBEARER token requests are
/// answered by [`token`] with the context's `Option<Signer>` field named here.
///
/// ```ignore
/// impl ClientContext for MyContext {
///     msk_iam::answer_token_requests!(iam);
/// }
/// ```
#[macro_export]
macro_rules! answer_token_requests {
    ($signer:tt) => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            _oauthbearer_config: Option<&str>,
        ) -> Result<$crate::OAuthToken, Box<dyn std::error::Error>> {
            $crate::token(self.$signer.as_ref())
        }
    };
}

/// The rdkafka context of a client that needs nothing else: rdkafka's defaults, and tokens
/// when `KAFKA_AUTH=iam`.
#[derive(Clone, Default)]
pub struct IamContext(pub Option<Signer>);

impl ClientContext for IamContext {
    answer_token_requests!(0);
}

impl ConsumerContext for IamContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use base64::Engine;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<IamSettings>, Problem> {
        let vars: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        IamSettings::from_vars(|k| vars.get(k).copied())
    }

    #[test]
    fn only_kafka_auth_iam_asks_for_tokens() {
        assert_eq!(settings(&[]), Ok(None));
        for mode in ["plaintext", "tls", "scram", ""] {
            assert_eq!(settings(&[("KAFKA_AUTH", mode)]), Ok(None), "{mode}");
        }
        assert_eq!(
            settings(&[("KAFKA_AUTH", "IAM"), ("AWS_REGION", "eu-west-1")]),
            Ok(Some(IamSettings {
                region: "eu-west-1".into()
            }))
        );
        assert_eq!(
            settings(&[("KAFKA_AUTH", "iam"), ("AWS_DEFAULT_REGION", "us-east-2")]),
            Ok(Some(IamSettings {
                region: "us-east-2".into()
            }))
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        let e = settings(&[("KAFKA_AUTH", "kerberos")]).expect_err("unknown mode");
        assert_eq!(e.var, "KAFKA_AUTH");
        assert!(e.problem.contains("plaintext, tls, scram, iam"), "{e}");

        let e = settings(&[("KAFKA_AUTH", "iam")]).expect_err("no region");
        assert_eq!(e.var, "AWS_REGION");
        assert!(e.problem.contains("region"), "{e}");

        let e = settings(&[
            ("KAFKA_AUTH", "iam"),
            ("AWS_REGION", "eu-west-1"),
            ("RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ])
        .expect_err("other mechanism");
        assert_eq!(e.var, "RDKAFKA_SASL_MECHANISM");
        assert!(e.problem.contains("OAUTHBEARER"), "{e}");
    }

    #[test]
    fn iam_sets_sasl_ssl_and_oauthbearer() {
        let mut c = ClientConfig::new();
        IamSettings {
            region: "eu-west-1".into(),
        }
        .apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
    }

    /// AWS's documented example key pair.
    fn static_credentials() -> SharedCredentialsProvider {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        SharedCredentialsProvider::new(Credentials::new("AKIDEXAMPLE", secret, None, None, "test"))
    }

    /// What MSK checks in a token, decoded (there is no IAM broker here to present it to).
    #[test]
    fn a_token_is_a_presigned_connect_url_for_the_region() {
        let iam = IamSettings {
            region: "eu-central-1".into(),
        };
        let signer = Signer::start_with(&iam, Some(static_credentials())).expect("signer");
        let t = token(Some(&signer)).expect("token");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&t.token)
                .expect("base64url without padding"),
        )
        .expect("UTF-8");
        assert!(
            url.starts_with(
                "https://kafka.eu-central-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-Credential=AKIDEXAMPLE%2F")
                && url.contains("%2Feu-central-1%2Fkafka-cluster%2Faws4_request"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=900"), "{url}");
        assert!(t.lifetime_ms > 0);
        assert_eq!(signer.tokens_made(), 1);
        // A clone shares the thread and the counts.
        let clone = signer.clone();
        clone.sign().expect("second token");
        assert_eq!(signer.tokens_made(), 2);
        assert_eq!(signer.tokens_failed(), 0);
        let mut registry = prometheus_client::registry::Registry::default();
        signer.register(&mut registry, "w");
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encoded");
        assert!(
            text.contains("\nw_kafka_iam_tokens_total{result=\"made\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("\nw_kafka_iam_tokens_total{result=\"failed\"} 0\n"),
            "{text}"
        );
    }

    /// A credential source that has none, as a task without a role.
    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "no role in this test. Attempted:\n  Environment: not set",
                ),
            ))
        }
    }

    #[test]
    fn no_credentials_fail_at_start_with_what_to_do() {
        let iam = IamSettings {
            region: "eu-west-1".into(),
        };
        let e = Signer::start_with(&iam, Some(SharedCredentialsProvider::new(NoCredentials)))
            .expect_err("no credentials");
        assert!(e.starts_with("KAFKA_AUTH=iam: no AWS credentials"), "{e}");
        assert!(
            e.contains("no role in this test. Attempted:; Environment: not set"),
            "{e}"
        );
        assert!(e.contains("task_role"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn without_kafka_auth_iam_no_token_is_made() {
        let Err(e) = token(None) else {
            panic!("a token without a signer")
        };
        assert!(e.to_string().contains("KAFKA_AUTH=iam"), "{e}");
    }
}
