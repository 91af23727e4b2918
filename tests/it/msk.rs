//! Reaching MSK: broker-string selection, IAM tokens, client configs and SCRAM secrets.
//!
//! None of this runs against the local stack, and the tests say so in their names:
//! - moto cannot answer for MSK in a form aws-sdk-kafka parses (it writes `creationTime`
//!   without a zone offset), and it does not implement GetBootstrapBrokers. The control plane
//!   is therefore tested on RECORDED DescribeClusterV2, GetBootstrapBrokers and GetSecretValue
//!   answers (tests/fixtures/msk/), replayed to the real SDK clients, made by shoal's own client
//!   factory, through `StaticReplayClient`. No AWS service is called.
//! - tansu (the local Kafka) has no SASL (IAM, SCRAM) and no TLS listener, so no client here
//!   authenticates to a broker: the IAM token is checked by decoding it (signed with static
//!   test credentials), and each auth mode by the librdkafka configuration it produces.
//!   Plaintext bootstrap lists are exercised end to end against tansu by tests/it/topics.rs
//!   and tests/it/lag.rs.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kafka::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime_api::http::{Request, Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientContext;

use shoal::aws::msk::{self, BrokerStrings, MskError};
use shoal::deploy::Session;
use shoal::kafka::admin::Admin;
use shoal::kafka::{self, auth, ffi, Connection, Resolved, ShoalContext};
use shoal::manifest::{Environment, KafkaAccess, KafkaAuth, Project};

const CLUSTER: &str =
    "arn:aws:kafka:us-east-1:123456789012:cluster/orders/7f3c2a9e-5b1d-4e6f-9a8b-0c1d2e3f4a5b-2";
const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_orders-shoal-Ab12Cd";
const HOSTS: [&str; 3] = [
    "b-1.orders.abc123.c2.kafka.us-east-1.amazonaws.com",
    "b-2.orders.abc123.c2.kafka.us-east-1.amazonaws.com",
    "b-3.orders.abc123.c2.kafka.us-east-1.amazonaws.com",
];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/msk/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replays these recorded answers (status 200), in order, to every client made from the
/// returned configuration.
fn replay(answers: &[&str]) -> (SdkConfig, StaticReplayClient) {
    let events = answers
        .iter()
        .map(|name| {
            ReplayEvent::new(
                Request::new(SdkBody::empty()),
                Response::new(
                    StatusCode::try_from(200).expect("status"),
                    SdkBody::from(fixture(name)),
                ),
            )
        })
        .collect();
    let http = StaticReplayClient::new(events);
    let cfg = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
        .http_client(http.clone())
        .build();
    (cfg, http)
}

/// The paths of the requests the SDK sent.
fn paths(http: &StaticReplayClient) -> Vec<String> {
    http.actual_requests()
        .map(|r| r.uri().split('?').next().unwrap_or_default().to_string())
        .collect()
}

fn brokers(port: u16) -> String {
    HOSTS
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn msk_env(auth: &str, scram_secret: Option<&str>) -> Environment {
    let secret = scram_secret
        .map(|s| format!(", scram_secret_arn = \"{s}\""))
        .unwrap_or_default();
    let text = format!(
        "project = \"p\"\ndefault_env = \"prod\"\n[env.prod]\nplatform = \"ecs\"\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\nexecution_role_arn = \"arn:aws:iam::123456789012:role/exec\"\ncluster = \"c\"\nsubnets = [\"subnet-1\"]\nsecurity_groups = [\"sg-1\"]\nkafka = {{ msk_cluster_arn = \"{CLUSTER}\", auth = \"{auth}\"{secret} }}\n"
    );
    let project = Project::parse(std::path::Path::new("."), &text).expect("project");
    project
        .environment_with("prod", &|_| None)
        .unwrap_or_else(|p| panic!("{p}"))
}

/// Each auth mode picks its own broker string from one recorded GetBootstrapBrokers answer,
/// after a recorded DescribeClusterV2 that shows the cluster ACTIVE.
#[tokio::test]
async fn recorded_answers_pick_the_broker_string_of_each_auth_mode() {
    for (auth, port) in [
        (KafkaAuth::Iam, 9098),
        (KafkaAuth::Tls, 9094),
        (KafkaAuth::Scram, 9096),
        (KafkaAuth::Plaintext, 9092),
    ] {
        let (cfg, http) = replay(&[
            "describe_cluster_v2_active.json",
            "get_bootstrap_brokers_all.json",
        ]);
        let got = msk::bootstrap(&shoal::aws::msk(&cfg), CLUSTER, auth)
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        assert_eq!(got, brokers(port), "{auth:?}");
        let encoded = CLUSTER.replace(':', "%3A").replace('/', "%2F");
        assert_eq!(
            paths(&http),
            vec![
                format!("https://kafka.us-east-1.amazonaws.com/api/v2/clusters/{encoded}"),
                format!(
                    "https://kafka.us-east-1.amazonaws.com/v1/clusters/{encoded}/bootstrap-brokers"
                ),
            ]
        );
    }
}

/// A recorded DescribeClusterV2 of an UPDATING cluster: a clear error naming the cluster and
/// its state, and GetBootstrapBrokers is never called.
#[tokio::test]
async fn recorded_answer_of_a_cluster_that_is_not_active_is_refused() {
    let (cfg, http) = replay(&["describe_cluster_v2_updating.json"]);
    let err = msk::bootstrap(&shoal::aws::msk(&cfg), CLUSTER, KafkaAuth::Iam)
        .await
        .expect_err("not active");
    assert!(matches!(err, MskError::NotActive { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("MSK cluster {CLUSTER} is UPDATING, not ACTIVE; wait until it is ACTIVE (aws kafka describe-cluster-v2 --cluster-arn {CLUSTER})")
    );
    assert_eq!(paths(&http).len(), 1, "only DescribeClusterV2 was sent");
}

/// A recorded GetBootstrapBrokers of a TLS-only cluster: asking for IAM names the modes the
/// cluster does offer.
#[tokio::test]
async fn recorded_answer_without_the_auth_mode_lists_the_offered_ones() {
    let (cfg, _http) = replay(&[
        "describe_cluster_v2_active.json",
        "get_bootstrap_brokers_tls_only.json",
    ]);
    let err = msk::bootstrap(&shoal::aws::msk(&cfg), CLUSTER, KafkaAuth::Iam)
        .await
        .expect_err("no IAM");
    assert!(matches!(err, MskError::AuthNotOffered { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("MSK cluster {CLUSTER} does not offer auth = \"iam\"; it offers: \"tls\"; set kafka.auth in shoal.toml to one of those, or enable iam on the cluster")
    );
}

#[test]
fn broker_strings_without_any_mode_say_none() {
    let err = MskError::AuthNotOffered {
        cluster_arn: CLUSTER.into(),
        auth: KafkaAuth::Scram,
        offered: BrokerStrings::default().offered(),
    };
    assert!(err.to_string().contains("it offers: none;"), "{err}");
}

/// The whole resolution of a SCRAM environment on recorded answers: DescribeClusterV2,
/// GetBootstrapBrokers, then GetSecretValue of the AmazonMSK_ secret; the client config
/// carries SASL_SSL, SCRAM-SHA-512 and the secret's username and password.
#[tokio::test]
async fn recorded_answers_resolve_a_scram_environment_with_its_secret() {
    let env = msk_env("scram", Some(SECRET));
    let (cfg, http) = replay(&[
        "describe_cluster_v2_active.json",
        "get_bootstrap_brokers_all.json",
        "get_secret_value_scram.json",
    ]);
    let resolved = kafka::resolve_with(&env, &cfg).await.expect("resolved");
    assert_eq!(resolved.bootstrap, brokers(9096));
    assert_eq!(resolved.auth, KafkaAuth::Scram);
    let c = resolved.client_config();
    assert_eq!(c.get("bootstrap.servers"), Some(brokers(9096).as_str()));
    assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(c.get("sasl.username"), Some("shoal"));
    assert_eq!(c.get("sasl.password"), Some("s3cr3t-for-tests"));
    assert_eq!(
        paths(&http).last().map(String::as_str),
        Some("https://secretsmanager.us-east-1.amazonaws.com/")
    );
    assert!(
        !format!("{resolved:?}").contains("s3cr3t"),
        "Debug hides the password"
    );
}

/// The whole resolution of an IAM environment on recorded answers: the client uses SASL_SSL
/// with OAUTHBEARER, and its context signs tokens with the configuration's credentials.
#[tokio::test]
async fn recorded_answers_resolve_an_iam_environment() {
    let env = msk_env("iam", None);
    let (cfg, _http) = replay(&[
        "describe_cluster_v2_active.json",
        "get_bootstrap_brokers_all.json",
    ]);
    let resolved = kafka::resolve_with(&env, &cfg).await.expect("resolved");
    let conn = Connection::new(resolved, Some(&cfg));
    assert_eq!(conn.bootstrap(), brokers(9098));
    assert_eq!(conn.config.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(conn.config.get("sasl.mechanism"), Some("OAUTHBEARER"));
    assert!(conn.context.is_iam());
    // rdkafka's admin client never asks for a token (rust-rdkafka issue 757): shoal signs one
    // and hands it to librdkafka before any request, which librdkafka accepts only from a
    // client configured for OAUTHBEARER (see the next test).
    let admin = Admin::with(&conn).expect("an admin client with its token");
    assert_eq!(
        conn.context.tokens_made(),
        1,
        "one token, before any request"
    );
    drop(admin);
}

/// The token hand-over is a real librdkafka call: a plaintext client refuses the token, an
/// OAUTHBEARER client (MSK IAM's settings) takes it. No broker is involved.
#[test]
fn librdkafka_takes_a_token_only_from_an_oauthbearer_client() {
    let token = ShoalContext::iam("us-east-1", static_credentials())
        .generate_oauth_token(None)
        .expect("token");
    let plain: AdminClient<DefaultClientContext> = Resolved::plaintext("127.0.0.1:1".into())
        .client_config()
        .create()
        .expect("plaintext client");
    let err = ffi::set_oauth_token(plain.inner(), &token).expect_err("not OAUTHBEARER");
    assert!(err.to_string().contains("OAUTHBEARER"), "{err}");
    let iam: AdminClient<DefaultClientContext> = Resolved {
        bootstrap: "127.0.0.1:1".into(),
        auth: KafkaAuth::Iam,
        region: "us-east-1".into(),
        scram: None,
    }
    .client_config()
    .create()
    .expect("IAM client");
    ffi::set_oauth_token(iam.inner(), &token).expect("taken");
}

/// An environment with a `bootstrap` list resolves to plaintext without any AWS call (the
/// replay client has no answer to give).
#[tokio::test]
async fn bootstrap_list_resolves_to_plaintext_without_aws() {
    let text = "project = \"p\"\n[env.local]\nplatform = \"docker\"\nkafka = { bootstrap = [\"127.0.0.1:9092\"] }\n";
    let project = Project::parse(std::path::Path::new("."), text).expect("project");
    let env = project.environment_with("local", &|_| None).expect("env");
    assert!(matches!(env.kafka, KafkaAccess::Bootstrap(_)));
    let (cfg, http) = replay(&[]);
    let resolved = kafka::resolve_with(&env, &cfg).await.expect("resolved");
    assert_eq!(resolved, Resolved::plaintext("127.0.0.1:9092".into()));
    assert_eq!(http.actual_requests().count(), 0);
    let session = Session::with_aws(&env, cfg);
    let conn = session.kafka().await.expect("resolved");
    assert_eq!(conn.resolved, Resolved::plaintext("127.0.0.1:9092".into()));
    assert_eq!(conn.config.get("security.protocol"), Some("PLAINTEXT"));
    assert_eq!(http.actual_requests().count(), 0);
}

/// One command resolves an MSK cluster once, however many of its steps reach Kafka: the
/// workloads' bootstrap, the topic plan and the topic changes of a deploy all share the
/// session's connection. The replay holds one DescribeClusterV2 and one GetBootstrapBrokers
/// answer; a second resolution would have none left and fail.
#[tokio::test]
async fn a_session_resolves_an_msk_cluster_once_for_every_step() {
    let env = msk_env("tls", None);
    let (cfg, http) = replay(&[
        "describe_cluster_v2_active.json",
        "get_bootstrap_brokers_all.json",
    ]);
    let session = Session::with_aws(&env, cfg);
    let workloads = session.workload_bootstrap().await.expect("bootstrap");
    assert_eq!(workloads, Some(brokers(9094)));
    for _ in 0..3 {
        let conn = session.kafka().await.expect("the same connection");
        assert_eq!(conn.bootstrap(), brokers(9094));
        assert_eq!(conn.config.get("security.protocol"), Some("SSL"));
    }
    assert_eq!(paths(&http).len(), 2, "{:?}", paths(&http));
}

/// The librdkafka settings of each auth mode (no broker here speaks TLS or SASL).
#[test]
fn client_config_of_each_auth_mode_without_a_tls_or_sasl_broker() {
    for (auth, protocol, mechanism) in [
        (KafkaAuth::Iam, "SASL_SSL", Some("OAUTHBEARER")),
        (KafkaAuth::Tls, "SSL", None),
        (KafkaAuth::Scram, "SASL_SSL", Some("SCRAM-SHA-512")),
        (KafkaAuth::Plaintext, "PLAINTEXT", None),
    ] {
        let r = Resolved {
            bootstrap: "b-1:9000".into(),
            auth,
            region: "eu-west-1".into(),
            scram: None,
        };
        let c = r.client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("b-1:9000"), "{auth:?}");
        assert_eq!(c.get("security.protocol"), Some(protocol), "{auth:?}");
        assert_eq!(c.get("sasl.mechanism"), mechanism, "{auth:?}");
        // librdkafka accepts the configuration (it was built with SSL and SASL support).
        let made: Result<rdkafka::consumer::BaseConsumer<ShoalContext>, _> = c
            .clone()
            .set("group.id", "g")
            .set("sasl.username", "u")
            .set("sasl.password", "p")
            .create_with_context(ShoalContext::default());
        assert!(made.is_ok(), "{auth:?}: {:?}", made.err());
    }
}

/// Splits a URL's query into its decoded-as-given pairs, in order.
fn query(url: &str) -> Vec<(String, String)> {
    let (_, q) = url.split_once('?').expect("a query");
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The lag reader's one client has no `group.id`, so librdkafka's token request lands on its
/// main queue rather than a consumer queue; the reader's polls must still serve it. The
/// broker is a closed port: the read fails, after the token was handed over.
#[tokio::test(flavor = "multi_thread")]
async fn the_lag_reader_serves_its_clients_token_without_an_iam_broker() {
    let resolved = iam_on_a_closed_port();
    let ctx = ShoalContext::iam("us-east-1", static_credentials());
    let conn = Connection {
        config: resolved.client_config(),
        resolved,
        context: ctx.clone(),
    };
    let reader = shoal::kafka::lag::LagReader::with(conn, std::time::Duration::from_secs(1));
    let read = tokio::task::spawn_blocking(move || {
        reader.read_all(&[
            ("g".into(), vec!["t".into()]),
            ("h".into(), vec!["t".into()]),
        ])
    })
    .await
    .expect("the read's task");
    assert_eq!(read.len(), 2);
    assert!(read.iter().all(Result::is_err), "{read:?}");
    assert_eq!(
        ctx.tokens_made(),
        1,
        "one token for the reader's one client"
    );
}

/// MSK IAM on a port nothing listens on.
fn iam_on_a_closed_port() -> Resolved {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    Resolved {
        bootstrap: format!("127.0.0.1:{port}"),
        auth: KafkaAuth::Iam,
        region: "us-east-1".into(),
        scram: None,
    }
}

fn static_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "static test credentials",
    ))
}

fn check_token_shape(token: &str, region: &str) {
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .expect("base64url without padding"),
    )
    .expect("UTF-8");
    assert!(
        url.starts_with(&format!("https://kafka.{region}.amazonaws.com/?")),
        "{url}"
    );
    let q = query(&url);
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "Action",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
            "User-Agent"
        ],
        "{url}"
    );
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    assert_eq!(get("Action"), "kafka-cluster%3AConnect");
    assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    let date = get("X-Amz-Date");
    assert_eq!(date.len(), 16, "{date}");
    assert!(date.ends_with('Z') && date.as_bytes()[8] == b'T', "{date}");
    assert_eq!(
        get("X-Amz-Credential"),
        format!(
            "AKIDEXAMPLE%2F{}%2F{region}%2Fkafka-cluster%2Faws4_request",
            &date[..8]
        )
    );
    assert_eq!(get("X-Amz-Expires"), "900");
    assert_eq!(get("X-Amz-SignedHeaders"), "host");
    let sig = get("X-Amz-Signature");
    assert!(
        sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sig}"
    );
    assert!(
        get("User-Agent").starts_with("aws-msk-iam-sasl-signer-rs%2F"),
        "{}",
        get("User-Agent")
    );
}

/// The token's signed URL, decoded: there is no SASL/IAM broker here (tansu has none), so the
/// shape MSK verifies is checked instead, with static test credentials.
#[tokio::test]
async fn iam_token_is_a_presigned_connect_url_checked_without_an_iam_broker() {
    let (token, expiry_ms) = auth::iam_token("eu-west-1", static_credentials())
        .await
        .expect("token");
    check_token_shape(&token, "eu-west-1");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let left = expiry_ms - now_ms;
    assert!(
        (800_000..=900_000).contains(&left),
        "expires in 15 minutes, not {left} ms"
    );
}

/// rdkafka's token refresh callback, called as librdkafka calls it (from a thread of its own,
/// outside any async runtime), with no IAM broker to present the token to.
#[test]
fn token_refresh_callback_signs_without_an_iam_broker() {
    let ctx = ShoalContext::iam("ap-southeast-2", static_credentials());
    let t = ctx.generate_oauth_token(None).expect("token");
    check_token_shape(&t.token, "ap-southeast-2");
    assert!(t.lifetime_ms > 0);
    let err = ShoalContext::default()
        .generate_oauth_token(None)
        .err()
        .expect("no IAM");
    assert!(err.to_string().contains("only used with MSK IAM"), "{err}");
}

/// librdkafka asks the context for a token as soon as an IAM consumer exists, and a poll
/// serves the request (what `LagReader` does). The broker address is a closed port: no SASL/IAM
/// broker exists here (tansu has none), so only the hand-over of the token is checked.
#[test]
fn iam_consumer_asks_the_context_for_a_token_without_an_iam_broker() {
    let resolved = iam_on_a_closed_port();
    let ctx = ShoalContext::iam("us-east-1", static_credentials());
    let consumer: rdkafka::consumer::BaseConsumer<ShoalContext> = resolved
        .client_config()
        .set("group.id", "g")
        .create_with_context(ctx.clone())
        .expect("consumer");
    assert_eq!(ctx.tokens_made(), 0, "nothing is signed before a poll");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ctx.tokens_made() == 0 && std::time::Instant::now() < deadline {
        let _ = consumer.poll(std::time::Duration::from_millis(100));
    }
    assert_eq!(ctx.tokens_made(), 1, "one token for the new client");
}

#[test]
fn scram_secret_that_is_not_json_is_a_clear_error() {
    let err = msk::parse_scram_secret(SECRET, "username=shoal").expect_err("bad JSON");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("SCRAM secret {SECRET}: the value is not JSON")),
        "{text}"
    );
    assert!(
        text.contains("{\"username\": \"…\", \"password\": \"…\"}"),
        "{text}"
    );
    assert!(!text.contains("username=shoal"), "the value never shows");
    let err = msk::parse_scram_secret(SECRET, "[1,2]").expect_err("not an object");
    assert!(err.to_string().contains("is not a JSON object"), "{err}");
}

#[test]
fn scram_secret_missing_fields_are_named() {
    let err = msk::parse_scram_secret(SECRET, r#"{"username":"shoal"}"#).expect_err("no password");
    assert!(
        err.to_string()
            .starts_with(&format!("SCRAM secret {SECRET}: has no \"password\" field")),
        "{err}"
    );
    let err = msk::parse_scram_secret(SECRET, r#"{"password":"x"}"#).expect_err("no username");
    assert!(
        err.to_string().contains("has no \"username\" field"),
        "{err}"
    );
    let err =
        msk::parse_scram_secret(SECRET, r#"{"username":"","password":"x"}"#).expect_err("empty");
    assert!(err.to_string().contains("\"username\" is empty"), "{err}");
    let ok = msk::parse_scram_secret(SECRET, r#"{"username":"u","password":"p","extra":1}"#)
        .expect("extra keys are fine");
    assert_eq!((ok.username.as_str(), ok.password.as_str()), ("u", "p"));
}

fn project_problem(kafka: &str) -> String {
    let text = format!(
        "project = \"p\"\ndefault_env = \"prod\"\n[env.prod]\nplatform = \"ecs\"\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\nexecution_role_arn = \"arn:aws:iam::123456789012:role/exec\"\ncluster = \"c\"\nsubnets = [\"subnet-1\"]\nsecurity_groups = [\"sg-1\"]\nkafka = {kafka}\n"
    );
    match Project::parse(std::path::Path::new("."), &text) {
        Err(p) => p.to_string(),
        Ok(project) => match project.environment_with("prod", &|_| None) {
            Ok(_) => String::new(),
            Err(p) => p.to_string(),
        },
    }
}

#[test]
fn scram_secret_arn_is_required_with_scram_and_only_then() {
    let p = project_problem(&format!(
        "{{ msk_cluster_arn = \"{CLUSTER}\", auth = \"scram\" }}"
    ));
    assert!(
        p.contains("kafka.scram_secret_arn") && p.contains("is required with auth = \"scram\""),
        "{p}"
    );
    let p = project_problem(&format!(
        "{{ msk_cluster_arn = \"{CLUSTER}\", auth = \"iam\", scram_secret_arn = \"{SECRET}\" }}"
    ));
    assert!(p.contains("only applies with auth = \"scram\""), "{p}");
    let p = project_problem(&format!(
        "{{ msk_cluster_arn = \"{CLUSTER}\", auth = \"scram\", scram_secret_arn = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse\" }}"
    ));
    assert!(p.contains("is not the ARN of an MSK SCRAM secret"), "{p}");
    assert!(p.contains("AmazonMSK_"), "{p}");
    let p = project_problem("{ bootstrap = [\"a:9092\"], scram_secret_arn = \"x\" }");
    assert!(p.contains("only applies with msk_cluster_arn"), "{p}");
    assert_eq!(
        project_problem(&format!(
            "{{ msk_cluster_arn = \"{CLUSTER}\", auth = \"scram\", scram_secret_arn = \"{SECRET}\" }}"
        )),
        ""
    );
    let env = msk_env("scram", Some(SECRET));
    assert_eq!(
        env.kafka,
        KafkaAccess::Msk {
            cluster_arn: CLUSTER.into(),
            auth: KafkaAuth::Scram,
            scram_secret_arn: Some(SECRET.into()),
        }
    );
}
