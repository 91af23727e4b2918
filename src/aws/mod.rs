//! AWS: one client factory for every service shoal calls, and one error type that turns SDK
//! failures into a readable line.
//!
//! Every client is made from [`sdk_config`] (or [`loader`], when a caller such as a test has
//! to add something, e.g. static credentials): the environment's region, its optional
//! `profile`, and its optional `endpoint_url`, which points every service at an AWS API
//! emulator (moto, in the local stack). Credentials come from the SDK's default chain
//! (environment variables, profile, SSO, container and instance roles).
//!
//! Service clients are made by this module's factories ([`ecs`], [`ecr`]) rather than with
//! `Client::new`, so that a failed connection names the endpoint that could not be reached.

pub mod cloudwatch;
pub mod ecr;
pub mod msk;

use std::fmt;

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_runtime::retries::classifiers::THROTTLING_ERRORS;
use aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextMut;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::{
    BoxError, ConnectorError, DisplayErrorContext, ProvideErrorMetadata, SdkError,
};
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;

use crate::manifest::Environment;

/// The shared configuration of every AWS client for one environment: its region, profile and
/// endpoint override applied to the SDK's defaults. Add to it (credentials, retries) through
/// [`loader`].
pub fn loader(env: &Environment) -> ConfigLoader {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(env.region.clone()));
    if let Some(profile) = &env.profile {
        loader = loader.profile_name(profile);
    }
    match &env.endpoint_url {
        Some(url) => loader = loader.endpoint_url(url),
        None => {
            // The SDK honours AWS_ENDPOINT_URL from the shell; after `. .stack/env` that would
            // send a real environment's calls to the local emulator. Say so.
            if let Some(url) = std::env::var_os("AWS_ENDPOINT_URL") {
                tracing::warn!(
                    environment = %env.name,
                    endpoint = %url.to_string_lossy(),
                    "AWS_ENDPOINT_URL is set in the shell: this environment's AWS calls go there"
                );
            }
        }
    }
    loader
}

/// Loads the shared AWS configuration of an environment (see [`loader`]).
pub async fn sdk_config(env: &Environment) -> SdkConfig {
    loader(env).load().await
}

/// AWS API calls made by this process (each operation once, whatever its retries).
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many AWS API calls this process has made so far; `deploy` reports it.
pub fn calls() -> u64 {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Defines a client factory: the SDK's client for `cfg`, with the interceptor that names the
/// endpoint (`$endpoint`, the service's host prefix) in connection errors and counts calls.
macro_rules! client {
    ($(#[$doc:meta])* $name:ident, $sdk:ident, $endpoint:literal) => {
        $(#[$doc])*
        pub fn $name(cfg: &SdkConfig) -> $sdk::Client {
            let conf = $sdk::config::Builder::from(cfg)
                .interceptor(NameEndpoint::new(cfg, $endpoint))
                .build();
            $sdk::Client::from_conf(conf)
        }
    };
}

client!(
    /// An ECS client for this configuration.
    ecs, aws_sdk_ecs, "ecs"
);
client!(
    /// An ECR client for this configuration.
    ecr, aws_sdk_ecr, "api.ecr"
);
client!(
    /// A CloudWatch client for this configuration (metrics and dashboards).
    cloudwatch, aws_sdk_cloudwatch, "monitoring"
);
client!(
    /// A CloudWatch Logs client for this configuration.
    logs, aws_sdk_cloudwatchlogs, "logs"
);
client!(
    /// An MSK (control plane) client for this configuration.
    msk, aws_sdk_kafka, "kafka"
);
client!(
    /// A Secrets Manager client for this configuration (MSK SCRAM credentials).
    secrets, aws_sdk_secretsmanager, "secretsmanager"
);

/// A call to AWS that failed, or a request shoal would not send.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The service answered with an error.
    #[error("{service} {operation} failed: {code}: {message}")]
    Service {
        service: &'static str,
        operation: &'static str,
        code: String,
        message: String,
    },
    /// The endpoint could not be reached (refused, timed out, name not resolved, TLS).
    #[error(
        "{service} {operation} failed: could not reach {endpoint} ({cause}){}",
        unreachable_help(*.emulator)
    )]
    Unreachable {
        service: &'static str,
        operation: &'static str,
        endpoint: String,
        /// Whether the endpoint is an `endpoint_url` override (an emulator such as moto).
        emulator: bool,
        cause: String,
    },
    /// Anything else: no credentials, an answer that could not be read, a missing field in it.
    #[error("{service} {operation} failed: {problem}")]
    Other {
        service: &'static str,
        operation: &'static str,
        problem: String,
    },
    /// A request shoal would not send, such as a task definition that cannot be turned into
    /// a RegisterTaskDefinition request; the cause names what is wrong.
    #[error(transparent)]
    Request(Box<dyn std::error::Error + Send + Sync>),
}

fn unreachable_help(emulator: bool) -> &'static str {
    if emulator {
        "; is the local stack up? run `scripts/stack up`"
    } else {
        "; check the network, the region and any proxy settings"
    }
}

impl AwsError {
    /// Describes a failed SDK call in one line: the operation, then the service's error code
    /// and message, or which endpoint could not be reached.
    pub fn from_sdk<E, R>(
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(_) => {
                let code = err.code().map(str::to_string);
                let message = err.message().map(str::to_string);
                match (code, message) {
                    (Some(code), message) => AwsError::Service {
                        service,
                        operation,
                        code,
                        message: message.unwrap_or_else(|| "(no message)".to_string()),
                    },
                    (None, _) => AwsError::Other {
                        service,
                        operation,
                        problem: one_line(&DisplayErrorContext(&err).to_string()),
                    },
                }
            }
            SdkError::DispatchFailure(failure) => {
                let found = failure
                    .as_connector_error()
                    .and_then(|c| find_source::<Unreachable>(c));
                match found {
                    Some(u) => AwsError::Unreachable {
                        service,
                        operation,
                        endpoint: u.endpoint.clone(),
                        emulator: u.emulator,
                        cause: u.cause.clone(),
                    },
                    // Not a connection problem: credentials or signing failed before sending.
                    None => AwsError::Other {
                        service,
                        operation,
                        problem: one_line(&DisplayErrorContext(&err).to_string()),
                    },
                }
            }
            _ => AwsError::Other {
                service,
                operation,
                problem: one_line(&DisplayErrorContext(&err).to_string()),
            },
        }
    }

    /// An answer that lacks something shoal needs.
    pub(crate) fn missing(service: &'static str, operation: &'static str, what: &str) -> AwsError {
        AwsError::Other {
            service,
            operation,
            problem: format!("the answer has no {what}"),
        }
    }

    /// The service's error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the service refused the call for its rate: the error codes the SDK's own retry
    /// classifier treats as throttling (ThrottlingException, TooManyRequestsException,
    /// RequestLimitExceeded, SlowDown, …).
    pub fn is_throttling(&self) -> bool {
        self.code()
            .is_some_and(|code| THROTTLING_ERRORS.contains(&code))
    }
}

/// Collapses the SDK's multi-part error text onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first error of type `T` in `err`'s source chain (including `err` itself).
fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// A connection failure, with the endpoint it was to.
#[derive(Debug)]
struct Unreachable {
    endpoint: String,
    emulator: bool,
    cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not reach {}: {}", self.endpoint, self.cause)
    }
}

impl std::error::Error for Unreachable {}

/// Puts the endpoint into connection errors: the SDK's own say only "Connection refused".
/// Runs once per operation, after retries, so retry classification is untouched.
#[derive(Debug)]
struct NameEndpoint {
    endpoint: String,
    emulator: bool,
}

impl NameEndpoint {
    fn new(cfg: &SdkConfig, service: &str) -> NameEndpoint {
        match cfg.endpoint_url() {
            Some(url) => NameEndpoint {
                endpoint: url.to_string(),
                emulator: true,
            },
            None => {
                let region = cfg.region().map(|r| r.as_ref()).unwrap_or("(no region)");
                NameEndpoint {
                    endpoint: format!("https://{service}.{region}.amazonaws.com"),
                    emulator: false,
                }
            }
        }
    }
}

impl Intercept for NameEndpoint {
    fn name(&self) -> &'static str {
        "shoal::aws::NameEndpoint"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_ecs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// After the operation's own configuration is applied, so its name is known.
    fn read_before_serialization(
        &self,
        _context: &aws_sdk_ecs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // One line per call (`-vv`, or RUST_LOG=shoal::aws=debug): what the deploy role's
        // policy must allow (docs/iam/deploy-policy.json; tests/it/iam_policy.rs reads them).
        if let Some(op) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            tracing::debug!(
                target: "shoal::aws::call",
                service = op.service(),
                operation = op.name(),
                "AWS call"
            );
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(err)) = context.output_or_error_mut() else {
            return Ok(());
        };
        let Some(connector) = err.as_connector_error() else {
            return Ok(());
        };
        if find_source::<Unreachable>(connector).is_some() {
            return Ok(());
        }
        let unreachable = Unreachable {
            endpoint: self.endpoint.clone(),
            emulator: self.emulator,
            cause: connection_cause(connector),
        };
        let replaced = if connector.is_timeout() {
            ConnectorError::timeout(Box::new(unreachable))
        } else {
            ConnectorError::io(Box::new(unreachable))
        };
        *err = OrchestratorError::connector(replaced);
        Ok(())
    }
}

/// The innermost message of a connection error ("Connection refused (os error 111)"), which is
/// the informative one; the outer layers say "io error", "client error (Connect)".
fn connection_cause(err: &ConnectorError) -> String {
    let mut last = crate::error::innermost(err);
    if err.is_timeout() && !last.contains("timed out") && !last.contains("timeout") {
        last = format!("timed out: {last}");
    }
    one_line(&last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{KafkaAccess, Platform};
    use aws_sdk_ecs::config::Credentials;

    fn env(endpoint_url: Option<&str>) -> Environment {
        Environment {
            name: "sandbox".into(),
            platform: Platform::Ecs,
            region: "us-east-1".into(),
            account_id: Some("123456789012".into()),
            profile: None,
            endpoint_url: endpoint_url.map(str::to_string),
            registry: None,
            cluster: "c".into(),
            subnets: vec![],
            security_groups: vec![],
            assign_public_ip: false,
            execution_role_arn: None,
            task_role_arn: None,
            log_group_prefix: "/x".into(),
            log_retention_days: 7,
            keep_images: 20,
            vars: Default::default(),
            secrets: Default::default(),
            allow_plain: Vec::new(),
            kafka: KafkaAccess::None,
            alarm_topic_arn: None,
        }
    }

    async fn config(endpoint_url: Option<&str>) -> SdkConfig {
        loader(&env(endpoint_url))
            .credentials_provider(Credentials::new("test", "test", None, None, "unit-test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }

    #[tokio::test]
    async fn config_carries_region_and_endpoint() {
        let cfg = config(Some("http://127.0.0.1:5050")).await;
        assert_eq!(cfg.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(cfg.endpoint_url(), Some("http://127.0.0.1:5050"));
        // Without an override shoal sets none: the SDK's own chain decides, which reads
        // AWS_ENDPOINT_URL (set after `. .stack/env`).
        let cfg = config(None).await;
        let from_shell = std::env::var("AWS_ENDPOINT_URL").ok();
        assert_eq!(cfg.endpoint_url(), from_shell.as_deref());
    }

    /// A closed port on loopback: the error names the endpoint and the way to start the stack.
    #[tokio::test]
    async fn connection_refused_names_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}");
        let client = ecs(&config(Some(&url)).await);
        let err = client
            .list_clusters()
            .send()
            .await
            .expect_err("nothing listens there");
        let err = AwsError::from_sdk("ECS", "ListClusters", err);
        let text = err.to_string();
        assert!(matches!(err, AwsError::Unreachable { .. }), "{err:?}");
        assert!(
            text.starts_with(&format!("ECS ListClusters failed: could not reach {url} (")),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
        assert!(text.ends_with("run `scripts/stack up`"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    /// A service's answer with this error code, as the SDK hands it to `from_sdk`.
    fn answered(code: &str) -> AwsError {
        use aws_sdk_ecs::error::ErrorMetadata;
        use aws_sdk_ecs::operation::update_service::UpdateServiceError;
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("Rate exceeded")
            .build();
        let err = SdkError::service_error(UpdateServiceError::generic(meta), ());
        AwsError::from_sdk("ECS", "UpdateService", err)
    }

    #[test]
    fn throttling_is_read_from_the_error_code() {
        for code in [
            "ThrottlingException",
            "Throttling",
            "TooManyRequestsException",
            "RequestLimitExceeded",
            "RequestThrottled",
            "RequestThrottledException",
            "ProvisionedThroughputExceededException",
            "SlowDown",
        ] {
            let err = answered(code);
            assert!(matches!(err, AwsError::Service { .. }), "{err:?}");
            assert!(err.is_throttling(), "{code}: {err}");
        }
        for code in ["AccessDeniedException", "ServiceNotFoundException"] {
            assert!(!answered(code).is_throttling(), "{code}");
        }
        // The code decides, not the words: a message that mentions throttling is not enough.
        let other = AwsError::Other {
            service: "ECS",
            operation: "UpdateService",
            problem: "Throttling: Rate exceeded".into(),
        };
        assert!(!other.is_throttling());
    }

    #[test]
    fn hint_depends_on_emulator() {
        let e = AwsError::Unreachable {
            service: "ECS",
            operation: "DescribeTaskDefinition",
            endpoint: "https://ecs.eu-west-1.amazonaws.com".into(),
            emulator: false,
            cause: "dns error".into(),
        };
        assert_eq!(
            e.to_string(),
            "ECS DescribeTaskDefinition failed: could not reach https://ecs.eu-west-1.amazonaws.com \
             (dns error); check the network, the region and any proxy settings"
        );
    }
}
