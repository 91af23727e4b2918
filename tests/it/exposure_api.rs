//! The exposure-api workload (consumers/exposure-api): the real binary over loopback, against
//! the local stack's tansu and PostgreSQL, and a tansu of the test's own for broker restarts.
//!
//! HTTP is spoken with a plain `TcpStream` (HTTP/1.1, `Connection: close`), so the tests need
//! no HTTP client crate.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::stack_env;
use crate::workloads::{
    database_url, free_port, http, psql, spawn_workload, tls_url, wait_for, OwnBroker, Running,
    SNAKEOIL,
};

// ---- harness -----------------------------------------------------------------------------

/// A lowercase alphanumeric name unique to this call.
fn unique() -> String {
    crate::support::unique_of(tempfile::tempdir().expect("temp dir").path())
}

fn shared_bootstrap() -> String {
    stack_env()
        .get("KAFKA_BOOTSTRAP")
        .cloned()
        .expect("KAFKA_BOOTSTRAP in .stack/env")
}

struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Panics unless this answer has `status` and a JSON `error` that mentions `needle`.
    fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains(needle)),
            "{self:?}"
        );
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// One HTTP/1.1 request with a JSON content type, through the harness's client; `None` when
/// the server could not be reached.
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Resp> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let answer = http(method, &format!("127.0.0.1:{port}"), path, &all, body)?;
    Some(Resp {
        status: answer.status,
        headers: answer.headers.into_iter().collect(),
        body: answer.body,
    })
}

/// The API key [`start_api`] configures unless a test sets its own auth.
const KEY: &str = "it-key";

/// A request with `X-API-Key: KEY` unless `headers` carry credentials.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut all = headers.to_vec();
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("authorization")
    }) {
        all.push(("X-API-Key", KEY));
    }
    try_request(port, method, path, &all, body)
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}"))
}

/// A request exactly as given: no credentials unless `headers` carry them.
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}"))
}

fn post(port: u16, path: &str, body: &Value) -> Resp {
    request(port, "POST", path, &[], body.to_string().as_bytes())
}

fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[], b"")
}

/// The API on a port of its own; killed when dropped.
struct Api {
    port: u16,
    process: Running,
}

/// Starts the API with `env`, and `API_KEYS=KEY` when `env` sets no auth.
fn start_api(env: &[(&str, String)]) -> Api {
    let port = free_port();
    let mut all = vec![("PORT", port.to_string())];
    if !env
        .iter()
        .any(|(k, _)| ["API_KEYS", "JWT_SECRET", "AUTH"].contains(k))
    {
        all.push(("API_KEYS", KEY.to_string()));
    }
    all.extend(env.iter().cloned());
    let process = spawn_workload("exposure-api", &all);
    // Any answer will do: /health may say 503 while the broker is away.
    wait_for("exposure-api to listen", Duration::from_secs(60), || {
        try_request(port, "GET", "/openapi.json", &[], b"").filter(|r| r.status == 200)
    });
    Api { port, process }
}

/// A new topic of `partitions` on the shared broker, and the API producing to it with `env`
/// besides; returns the API and the topic's name.
fn api_on_a_new_topic(partitions: i32, env: &[(&str, String)]) -> (Api, String) {
    let bootstrap = shared_bootstrap();
    let topic = format!("exposures-api-{}", unique());
    create_topic(&bootstrap, &topic, partitions);
    let mut all = vec![
        ("KAFKA_BOOTSTRAP", bootstrap),
        ("EXPOSURES_TOPIC", topic.clone()),
    ];
    all.extend(env.iter().cloned());
    (start_api(&all), topic)
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(crate::workloads::create_topic(bootstrap, topic, partitions));
}

/// Every message on `topic` (acknowledged ones: see `workloads::read_topic`) as (key, JSON
/// value).
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(String, Value)> {
    crate::workloads::read_topic(bootstrap, topic)
        .into_iter()
        .map(|(key, value)| {
            let value = serde_json::from_str(&value).expect("a JSON value");
            (key, value)
        })
        .collect()
}

fn exposure(user: &str, n: usize) -> Value {
    json!({
        "ds_user_id": user,
        "experiment_id": format!("exp-{n}"),
        "variation_id": if n % 2 == 0 { "control" } else { "treatment" },
        "attributes": {"n": n, "country": "NL"},
        "source": "web",
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as the contract says.
fn is_rfc3339_millis_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// An HS256 JWT, built by hand so that the test does not share the API's JWT library.
fn jwt(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---- tests -------------------------------------------------------------------------------

/// What, path, body, status, field.
type Case = (
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    Option<&'static str>,
);

#[test]
fn every_malformed_request_gets_its_status_and_a_json_error() {
    let topic = format!("exposures-api-{}", unique());
    let api = start_api(&[
        ("KAFKA_BOOTSTRAP", shared_bootstrap()),
        ("EXPOSURES_TOPIC", topic),
        ("MAX_BODY_BYTES", "4096".into()),
        ("MAX_BATCH", "3".into()),
        // A warehouse nobody listens on: reads answer 503.
        (
            "DATABASE_URL",
            format!("postgres://shoal:shoal@127.0.0.1:{}/shoal", free_port()),
        ),
    ]);
    let p = api.port;
    let good = exposure("u-1", 1);
    let with = |k: &str, v: Value| {
        let mut e = good.clone();
        e[k] = v;
        e
    };
    let without = |k: &str| {
        let mut e = good.clone();
        e.as_object_mut().expect("object").remove(k);
        e
    };
    // A single event answered 422 naming `field`.
    let refused = |what: &'static str, body: Value, field: &'static str| -> Case {
        (what, "/exposure", body.to_string().into(), 422, Some(field))
    };
    // (what, path, body, status, field)
    let cases: Vec<Case> = vec![
        refused("missing field", without("ds_user_id"), "ds_user_id"),
        refused("missing source", without("source"), "source"),
        refused(
            "empty string",
            with("experiment_id", json!("")),
            "experiment_id",
        ),
        refused("wrong type", with("variation_id", json!(7)), "variation_id"),
        refused("too long", with("source", json!("s".repeat(257))), "source"),
        refused(
            "bad timestamp",
            with("timestamp", json!("22/11/2026")),
            "timestamp",
        ),
        refused(
            "numeric timestamp",
            with("timestamp", json!(1795314792)),
            "timestamp",
        ),
        refused(
            "attributes not an object",
            with("attributes", json!(["a"])),
            "attributes",
        ),
        (
            "body not an object",
            "/exposure",
            b"[1,2]".to_vec(),
            422,
            Some("body"),
        ),
        (
            "malformed JSON",
            "/exposure",
            b"{\"ds_user_id\": ".to_vec(),
            400,
            Some("body"),
        ),
        ("empty body", "/exposure", Vec::new(), 400, Some("body")),
        (
            "oversized body",
            "/exposure",
            with("attributes", json!({"pad": "x".repeat(10_000)}))
                .to_string()
                .into(),
            413,
            Some("body"),
        ),
        (
            "batch: bad item names its index",
            "/exposures",
            json!({"exposures": [good, good, with("ds_user_id", json!(""))]})
                .to_string()
                .into(),
            422,
            Some("exposures[2].ds_user_id"),
        ),
        (
            "bare batch: bad item",
            "/exposures",
            json!([good, without("variation_id")]).to_string().into(),
            422,
            Some("exposures[1].variation_id"),
        ),
        (
            "batch over MAX_BATCH",
            "/exposures",
            json!({"exposures": [good, good, good, good]})
                .to_string()
                .into(),
            413,
            Some("exposures"),
        ),
        (
            "empty batch",
            "/exposures",
            json!({"exposures": []}).to_string().into(),
            422,
            Some("exposures"),
        ),
        (
            "batch without exposures",
            "/exposures",
            json!({"events": [good]}).to_string().into(),
            422,
            Some("exposures"),
        ),
        (
            "batch malformed JSON",
            "/exposures",
            b"[{]".to_vec(),
            400,
            Some("body"),
        ),
    ];
    for (what, path, body, status, field) in cases {
        let r = request(p, "POST", path, &[], &body);
        assert_eq!(r.status, status, "{what}: {r:?}");
        let v = r.json();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {r:?}"
        );
        assert_eq!(v["field"].as_str(), field, "{what}: {r:?}");
    }

    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage!", "cursor"),
    ] {
        for path in ["/exposures/u-1", "/exposures/experiment/exp-1"] {
            let r = get(p, &format!("{path}?{q}"));
            assert_eq!(r.status, 422, "{path}?{q}: {r:?}");
            assert_eq!(r.json()["field"], field, "{path}?{q}: {r:?}");
        }
    }
    // The warehouse is down: 503 with a JSON error and Retry-After.
    let r = get(p, "/exposures/u-1?limit=5");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.json()["error"].is_string(), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");

    let r = get(p, "/no/such/route");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"].is_string());

    // The OpenAPI document is served (the unit test `openapi_names_every_route` checks it
    // names every route).
    let r = get(p, "/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"].get("/exposures").is_some(), "{r:?}");

    // Rejections are counted.
    let m = get(p, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains(
            r#"exposure_api_http_requests_total{route="/exposure",method="POST",status="422"}"#
        ),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(
            r#"exposure_api_http_requests_total{route="/exposures",method="POST",status="413"} 1"#
        ),
        "{}",
        m.body
    );
    assert!(
        !m.body
            .contains("exposure_api_events_rejected_total{reason=\"invalid\"} 0"),
        "{}",
        m.body
    );
}

#[test]
fn reads_without_database_url_answer_503() {
    let api = start_api(&[
        ("KAFKA_BOOTSTRAP", shared_bootstrap()),
        ("EXPOSURES_TOPIC", format!("exposures-api-{}", unique())),
    ]);
    for path in ["/exposures/u-1", "/exposures/experiment/e-1"] {
        get(api.port, path).assert_error(503, "DATABASE_URL");
    }
}

#[test]
fn reads_before_the_consumer_created_the_table_answer_an_empty_page() {
    // A database of its own, without the growthbook schema.
    let db = format!("exposure_api_empty_{}", unique());
    psql(&format!("CREATE DATABASE {db}"));
    let url = database_url();
    let (base, _) = url.rsplit_once('/').expect("database URL with a database");
    let mut api = start_api(&[
        ("KAFKA_BOOTSTRAP", shared_bootstrap()),
        ("EXPOSURES_TOPIC", format!("exposures-api-{}", unique())),
        ("DATABASE_URL", format!("{base}/{db}")),
    ]);
    for path in ["/exposures/u-1?limit=5", "/exposures/experiment/e-1"] {
        let r = get(api.port, path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(
            r.json(),
            json!({"items": [], "next_cursor": null}),
            "{path}"
        );
    }
    api.process.kill();
    psql(&format!("DROP DATABASE {db}"));
}

#[test]
fn bad_settings_exit_2_naming_the_variable() {
    let bin = crate::workloads::workload_bin("exposure-api");
    for (env, var) in [
        (vec![], "KAFKA_BOOTSTRAP"),
        (
            vec![("KAFKA_BOOTSTRAP", "127.0.0.1:1"), ("PORT", "eighty")],
            "PORT",
        ),
        (
            vec![
                ("KAFKA_BOOTSTRAP", "127.0.0.1:1"),
                ("PRODUCE_TIMEOUT_MS", "-1"),
            ],
            "PRODUCE_TIMEOUT_MS",
        ),
        (
            vec![
                ("KAFKA_BOOTSTRAP", "127.0.0.1:1"),
                ("RDKAFKA_NO_SUCH_PROPERTY", "1"),
            ],
            "RDKAFKA_NO_SUCH_PROPERTY",
        ),
        (
            vec![
                ("KAFKA_BOOTSTRAP", "127.0.0.1:1"),
                ("DATABASE_URL", "mysql://x"),
            ],
            "DATABASE_URL",
        ),
        // Auth is on by default: no credentials configured and no AUTH=none is an error.
        (
            vec![("KAFKA_BOOTSTRAP", "127.0.0.1:1"), ("API_KEYS", "")],
            "neither API_KEYS nor JWT_SECRET is set",
        ),
        (
            vec![("KAFKA_BOOTSTRAP", "127.0.0.1:1"), ("AUTH", "off")],
            "AUTH",
        ),
        // A batch over the queue's high-water mark would be shed on every try.
        (
            vec![
                ("KAFKA_BOOTSTRAP", "127.0.0.1:1"),
                ("MAX_BATCH", "101"),
                ("SHED_QUEUE_MESSAGES", "100"),
            ],
            "MAX_BATCH: is 101, more than SHED_QUEUE_MESSAGES (100)",
        ),
    ] {
        let mut cmd = std::process::Command::new(&bin);
        cmd.env_clear()
            .env("PORT", free_port().to_string())
            .env("API_KEYS", KEY);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run exposure-api");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(var),
            "{env:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn api_keys_and_jwts_guard_the_routes() {
    let bootstrap = shared_bootstrap();
    let topic = format!("exposures-api-{}", unique());
    create_topic(&bootstrap, &topic, 1);
    let api = start_api(&[
        ("KAFKA_BOOTSTRAP", bootstrap),
        ("EXPOSURES_TOPIC", topic),
        ("API_KEYS", "key-one, key-two".into()),
        ("JWT_SECRET", "jwt-secret".into()),
    ]);
    let p = api.port;
    let body = exposure("u-auth", 1).to_string();
    let send = |headers: &[(&str, &str)]| raw(p, "POST", "/exposure", headers, body.as_bytes());

    let exp = now_secs() + 600;
    let good_jwt = format!(
        "Bearer {}",
        jwt("jwt-secret", &json!({"sub": "svc", "exp": exp}))
    );
    let wrong_key_jwt = format!(
        "Bearer {}",
        jwt("other-secret", &json!({"sub": "svc", "exp": exp}))
    );
    let expired_jwt = format!(
        "Bearer {}",
        jwt(
            "jwt-secret",
            &json!({"sub": "svc", "exp": now_secs() - 3600})
        )
    );
    // One character of the signature changed (its first: the last one carries padding bits).
    let signed = jwt("jwt-secret", &json!({"sub": "svc", "exp": exp}));
    let at = signed.rfind('.').expect("signature") + 1;
    let changed = if signed[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("Bearer {}{changed}{}", &signed[..at], &signed[at + 1..]);

    let unauthorized: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no credentials", vec![]),
        ("wrong API key", vec![("X-API-Key", "key-three")]),
        (
            "wrong bearer key",
            vec![("Authorization", "Bearer key-three")],
        ),
        (
            "Basic scheme",
            vec![("Authorization", "Basic a2V5LW9uZTo=")],
        ),
        (
            "JWT signed with another secret",
            vec![("Authorization", &wrong_key_jwt)],
        ),
        ("expired JWT", vec![("Authorization", &expired_jwt)]),
        ("tampered JWT", vec![("Authorization", &tampered)]),
        ("not a JWT", vec![("Authorization", "Bearer a.b.c")]),
    ];
    for (what, headers) in &unauthorized {
        let r = send(headers);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}: {r:?}"
        );
        assert!(r.json()["error"].is_string(), "{what}: {r:?}");
    }
    // Reads are guarded too; operations are not.
    assert_eq!(raw(p, "GET", "/exposures/u-auth", &[], b"").status, 401);
    assert_eq!(raw(p, "GET", "/metrics", &[], b"").status, 200);
    assert_eq!(raw(p, "GET", "/openapi.json", &[], b"").status, 200);

    let authorized: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("X-API-Key", vec![("X-API-Key", "key-one")]),
        ("bearer API key", vec![("Authorization", "Bearer key-two")]),
        ("valid JWT", vec![("Authorization", &good_jwt)]),
    ];
    for (what, headers) in &authorized {
        let r = send(headers);
        assert_eq!(r.status, 202, "{what}: {r:?}");
        assert_eq!(r.json()["status"], "accepted", "{what}: {r:?}");
    }
}

#[test]
fn accepted_events_are_on_the_topic_with_the_contract_and_sigterm_exits_0() {
    let bootstrap = shared_bootstrap();
    let (mut api, topic) = api_on_a_new_topic(3, &[]);
    let p = api.port;
    let user = format!("u-{}", unique());
    // The first event waits for the producer's first connection and producer id.
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    for n in 0..5 {
        let mut e = exposure(&user, n);
        if n == 0 {
            e["timestamp"] = json!("2026-11-22T03:33:12.5+01:00");
            e.as_object_mut().expect("object").remove("attributes");
        }
        let r = post(p, "/exposure", &e);
        assert_eq!(r.status, 202, "{r:?}");
        let v = r.json();
        assert_eq!(v["status"], "accepted");
        let id = v["exposure_id"].as_str().expect("exposure_id").to_string();
        assert!(expected.insert(id, e).is_none(), "ids are unique");
    }
    let batch: Vec<Value> = (10..17)
        .map(|n| exposure(&format!("{user}-{n}"), n))
        .collect();
    let r = post(p, "/exposures", &json!({ "exposures": batch }));
    assert_eq!(r.status, 202, "{r:?}");
    let ids = r.json()["exposure_ids"]
        .as_array()
        .expect("exposure_ids")
        .clone();
    assert_eq!(ids.len(), batch.len());
    for (id, e) in ids.iter().zip(&batch) {
        expected.insert(id.as_str().expect("id").to_string(), e.clone());
    }
    let bare: Vec<Value> = (20..23).map(|n| exposure(&user, n)).collect();
    let r = post(p, "/exposures", &json!(bare));
    assert_eq!(r.status, 202, "{r:?}");
    let ids = r.json()["exposure_ids"]
        .as_array()
        .expect("exposure_ids")
        .clone();
    for (id, e) in ids.iter().zip(&bare) {
        expected.insert(id.as_str().expect("id").to_string(), e.clone());
    }
    assert_eq!(expected.len(), 15);

    let messages = read_topic(&bootstrap, &topic);
    let seen: BTreeSet<String> = messages
        .iter()
        .map(|(_, v)| v["exposure_id"].as_str().expect("exposure_id").to_string())
        .collect();
    assert_eq!(
        messages.len(),
        expected.len(),
        "exactly the accepted events: {messages:?}"
    );
    assert_eq!(seen, expected.keys().cloned().collect::<BTreeSet<_>>());
    for (key, v) in &messages {
        let id = v["exposure_id"].as_str().expect("id");
        let sent = &expected[id];
        let keys: BTreeSet<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "exposure_id",
                "ds_user_id",
                "experiment_id",
                "variation_id",
                "attributes",
                "source",
                "timestamp",
                "accepted_at"
            ]),
            "{v}"
        );
        assert_eq!(key, &sent["ds_user_id"], "the key is ds_user_id");
        for f in ["ds_user_id", "experiment_id", "variation_id", "source"] {
            assert_eq!(v[f], sent[f], "{f} of {v}");
        }
        assert_eq!(
            v["attributes"],
            sent.get("attributes").cloned().unwrap_or(json!({})),
            "{v}"
        );
        let ts = v["timestamp"].as_str().expect("timestamp");
        let accepted_at = v["accepted_at"].as_str().expect("accepted_at");
        assert!(
            is_rfc3339_millis_utc(ts) && is_rfc3339_millis_utc(accepted_at),
            "{v}"
        );
        if sent.get("timestamp").is_some() {
            assert_eq!(ts, "2026-11-22T02:33:12.500Z", "normalised to UTC");
        } else {
            assert_eq!(
                ts, accepted_at,
                "the default timestamp is the time of acceptance"
            );
        }
        let uuid = id.as_bytes();
        assert!(uuid.len() == 36 && uuid[14] == b'4', "a v4 UUID: {id}");
    }

    let m = get(p, "/metrics").body;
    for needle in [
        r#"exposure_api_http_requests_total{route="/exposure",method="POST",status="202"} 5"#,
        r#"exposure_api_http_requests_total{route="/exposures",method="POST",status="202"} 2"#,
        "exposure_api_events_accepted_total 15",
        "exposure_api_produce_in_flight 0",
        "exposure_api_produce_duration_seconds_count 15",
        "# TYPE exposure_api_produce_duration_seconds histogram",
    ] {
        assert!(m.contains(needle), "{needle} not in\n{m}");
    }
    let h = get(p, "/health");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.json(), json!({"status": "ok", "broker": "reachable"}));

    let status = api.process.terminate(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM: {status:?}");
}

#[test]
fn broker_down_answers_503_and_the_same_process_recovers_when_it_returns() {
    let mut broker = OwnBroker::start();
    let topic = format!("exposures-api-{}", unique());
    create_topic(&broker.bootstrap(), &topic, 1);
    let api = start_api(&[
        ("KAFKA_BOOTSTRAP", broker.bootstrap()),
        ("EXPOSURES_TOPIC", topic.clone()),
        ("PRODUCE_TIMEOUT_MS", "1500".into()),
    ]);
    let p = api.port;
    let user = format!("u-{}", unique());
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut accept = |r: &Resp| {
        if r.status == 202 {
            let v = r.json();
            if let Some(id) = v["exposure_id"].as_str() {
                accepted.insert(id.to_string());
            }
            for id in v["exposure_ids"].as_array().into_iter().flatten() {
                accepted.insert(id.as_str().expect("id").to_string());
            }
        }
    };
    let r = wait_for("a first 202", Duration::from_secs(30), || {
        Some(post(p, "/exposure", &exposure(&user, 0))).filter(|r| r.status == 202)
    });
    accept(&r);
    assert_eq!(get(p, "/health").status, 200);

    broker.stop();
    for n in 1..=3 {
        let start = Instant::now();
        let r = post(p, "/exposure", &exposure(&user, n));
        let took = start.elapsed();
        accept(&r);
        assert_eq!(r.status, 503, "broker down: {r:?}");
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
        assert!(r.json()["error"].is_string(), "{r:?}");
        assert!(
            took < Duration::from_millis(1500 + 1500),
            "answered after {took:?}"
        );
    }
    let r = post(
        p,
        "/exposures",
        &json!([exposure(&user, 4), exposure(&user, 5)]),
    );
    accept(&r);
    assert_eq!(r.status, 503, "batch, broker down: {r:?}");
    wait_for("/health to say 503", Duration::from_secs(10), || {
        let h = get(p, "/health");
        (h.status == 503).then(|| {
            assert_eq!(
                h.json(),
                json!({"status": "degraded", "broker": "unreachable"})
            )
        })
    });

    let mut returned = None;
    broker.resume_until(
        "a 202 after the broker returned",
        Duration::from_secs(60),
        || {
            let r = post(p, "/exposure", &exposure(&user, 6));
            accept(&r);
            let ok = r.status == 202;
            if ok {
                returned = Some(r);
            }
            ok
        },
    );
    let r = returned.expect("a 202");
    assert_eq!(r.json()["status"], "accepted");
    for n in 7..10 {
        let r = post(p, "/exposure", &exposure(&user, n));
        assert_eq!(r.status, 202, "after recovery: {r:?}");
        accept(&r);
    }
    let r = post(
        p,
        "/exposures",
        &json!([exposure(&user, 10), exposure(&user, 11)]),
    );
    assert_eq!(r.status, 202, "batch after recovery: {r:?}");
    accept(&r);
    wait_for("/health to say 200 again", Duration::from_secs(10), || {
        (get(p, "/health").status == 200).then_some(())
    });

    // Every 202'd id is on the topic (503'd events may or may not be: at least once).
    let messages = read_topic(&broker.bootstrap(), &topic);
    let seen: BTreeSet<String> = messages
        .iter()
        .map(|(_, v)| v["exposure_id"].as_str().expect("id").to_string())
        .collect();
    let missing: Vec<&String> = accepted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "202'd but not on the topic: {missing:?}"
    );
    assert!(accepted.len() >= 7);
}

/// The exposure-consumer's table, as it creates it (for tests that need it first).
pub const DDL: &str = "CREATE SCHEMA IF NOT EXISTS growthbook; \
    CREATE TABLE IF NOT EXISTS growthbook.experiment_exposures ( \
    exposure_id varchar(64) PRIMARY KEY, ds_user_id varchar(256) NOT NULL, \
    experiment_id varchar(256) NOT NULL, variation_id varchar(256) NOT NULL, \
    ts timestamptz NOT NULL, attributes jsonb NOT NULL DEFAULT '{}'::jsonb, \
    source varchar(256) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());";

/// Pages through `path` with `limit` and returns the ids in the order served.
fn page_through(port: u16, path: &str, limit: usize) -> (Vec<String>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
            None => format!("{path}?limit={limit}"),
        };
        let r = get(port, &url);
        assert_eq!(r.status, 200, "{url}: {r:?}");
        let v = r.json();
        let page = v["items"].as_array().expect("items").clone();
        assert!(page.len() <= limit, "{url}: {v}");
        for item in &page {
            ids.push(item["exposure_id"].as_str().expect("id").to_string());
            items.push(item.clone());
        }
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page.len(), limit, "only full pages have a next cursor");
                cursor = Some(c.to_string());
            }
            None => {
                assert!(v["next_cursor"].is_null(), "{v}");
                return (ids, items);
            }
        }
    }
    panic!("{path}: more than 100 pages");
}

#[test]
fn reads_page_newest_first_through_both_endpoints() {
    psql(DDL);
    let tag = unique();
    let user = format!("u-read-{tag}");
    let other = format!("u-read-other-{tag}");
    let experiment = format!("exp-read-{tag}");
    // 8 rows of `user` and 3 of `other` in `experiment`; two pairs share a timestamp, so the
    // exposure_id breaks the tie.
    let mut rows = Vec::new();
    for i in 0..11 {
        let who = if i < 8 { &user } else { &other };
        let ts = match i {
            3 | 4 => "2026-11-20T10:00:03.000001Z".to_string(),
            9 | 10 => "2026-11-20T10:00:09.5Z".to_string(),
            i => format!("2026-11-20T10:00:{i:02}.123456Z"),
        };
        let id = format!(
            "{tag}-{}",
            ["c", "a", "k", "b", "j", "d", "i", "e", "h", "f", "g"][i]
        );
        rows.push((id, who.clone(), ts));
    }
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, who, ts))| {
            format!(
                "('{id}', '{who}', '{experiment}', 'v{}', '{ts}', '{{\"i\": {i}}}', 'it')",
                i % 2
            )
        })
        .collect();
    psql(&format!(
        "INSERT INTO growthbook.experiment_exposures \
         (exposure_id, ds_user_id, experiment_id, variation_id, ts, attributes, source) VALUES {}",
        values.join(", ")
    ));
    // Newest first, then exposure_id descending; PostgreSQL orders it as the reference.
    let want = |col: &str, val: &str| -> Vec<String> {
        psql(&format!(
            "SELECT exposure_id FROM growthbook.experiment_exposures WHERE {col} = '{val}' \
             ORDER BY ts DESC, exposure_id DESC"
        ))
        .lines()
        .map(String::from)
        .collect()
    };
    let by_user = want("ds_user_id", &user);
    let by_experiment = want("experiment_id", &experiment);
    assert_eq!(by_user.len(), 8);
    assert_eq!(by_experiment.len(), 11);

    let api = start_api(&[
        ("KAFKA_BOOTSTRAP", shared_bootstrap()),
        ("EXPOSURES_TOPIC", format!("exposures-api-{tag}")),
        ("DATABASE_URL", database_url()),
    ]);
    let p = api.port;
    for limit in [1, 3, 8, 100] {
        let (ids, items) = page_through(p, &format!("/exposures/{user}"), limit);
        assert_eq!(ids, by_user, "by user, limit {limit}");
        assert!(items.iter().all(|i| i["ds_user_id"] == user.as_str()));
        let (ids, _) = page_through(p, &format!("/exposures/experiment/{experiment}"), limit);
        assert_eq!(ids, by_experiment, "by experiment, limit {limit}");
    }
    // The items carry every column.
    let r = get(p, &format!("/exposures/{user}?limit=1"));
    let item = &r.json()["items"][0];
    let (id, _, ts) = &rows[7];
    assert_eq!(item["exposure_id"], id.as_str());
    assert_eq!(item["experiment_id"], experiment.as_str());
    assert_eq!(item["variation_id"], "v1");
    assert_eq!(item["attributes"], json!({"i": 7}));
    assert_eq!(item["source"], "it");
    assert_eq!(item["timestamp"], ts.as_str());
    assert!(
        item["created_at"]
            .as_str()
            .is_some_and(|c| c.ends_with('Z')),
        "{item}"
    );
    // Nothing for someone else; the default limit is 100.
    let r = get(p, &format!("/exposures/nobody-{tag}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"items": [], "next_cursor": null}));
    let r = get(p, &format!("/exposures/experiment/{experiment}"));
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(11));
}

/// Reads go over TLS as `sslmode` says: verify-full against the server's certificate (Debian's
/// snakeoil, named localhost) reads through `localhost` and answers 503 through 127.0.0.1,
/// naming the certificate failure.
#[test]
fn reads_verify_the_warehouse_as_sslmode_says() {
    psql(DDL);
    let tag = unique();
    let user = format!("u-tls-{tag}");
    psql(&format!(
        "INSERT INTO growthbook.experiment_exposures \
         (exposure_id, ds_user_id, experiment_id, variation_id, ts, attributes, source) \
         VALUES ('{tag}-tls', '{user}', 'exp-tls-{tag}', 'v1', now(), '{{}}', 'it')"
    ));
    let read = |url: String| {
        let api = start_api(&[
            ("KAFKA_BOOTSTRAP", shared_bootstrap()),
            ("EXPOSURES_TOPIC", format!("exposures-api-{tag}")),
            ("DATABASE_URL", url),
            ("DATABASE_CA_FILE", SNAKEOIL.to_string()),
        ]);
        get(api.port, &format!("/exposures/{user}"))
    };
    let ok = read(tls_url("localhost", "verify-full"));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["items"][0]["exposure_id"], format!("{tag}-tls"));

    let refused = read(tls_url("127.0.0.1", "verify-full"));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.body.contains("certificate verify failed"),
        "{refused:?}"
    );
}

/// Without credentials configured the API starts only with `AUTH=none`, says so with a warning
/// at every start, takes writes from anyone, and still refuses reads.
#[test]
fn auth_none_opens_writes_only_and_warns_at_every_start() {
    let bootstrap = shared_bootstrap();
    let topic = format!("exposures-api-{}", unique());
    create_topic(&bootstrap, &topic, 1);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let port = free_port();
    let child = std::process::Command::new(crate::workloads::workload_bin("exposure-api"))
        .env_clear()
        .env("KAFKA_BOOTSTRAP", &bootstrap)
        .env("EXPOSURES_TOPIC", &topic)
        .env("PORT", port.to_string())
        .env("AUTH", "none")
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("start exposure-api");
    let _api = Running { child };
    wait_for("exposure-api to listen", Duration::from_secs(60), || {
        try_request(port, "GET", "/openapi.json", &[], b"").filter(|r| r.status == 200)
    });
    let logged = std::fs::read_to_string(log.path()).expect("log");
    assert!(
        logged.contains("WARN") && logged.contains("AUTH=none"),
        "a warning at start: {logged}"
    );
    let r = wait_for("a 202 without credentials", Duration::from_secs(30), || {
        Some(raw(
            port,
            "POST",
            "/exposure",
            &[],
            exposure("u-open", 1).to_string().as_bytes(),
        ))
        .filter(|r| r.status == 202)
    });
    assert_eq!(r.json()["status"], "accepted");
    for path in ["/exposures/u-open", "/exposures/experiment/exp-1"] {
        raw(port, "GET", path, &[], b"").assert_error(401, "API_KEYS or JWT_SECRET");
    }
}

/// An event whose Kafka message the producer would refuse (over `message.max.bytes`) is
/// answered 413 naming it, not 503 forever; the body limit's default follows the same setting.
#[test]
fn an_event_over_message_max_bytes_is_413_and_the_body_limit_follows_it() {
    let bootstrap = shared_bootstrap();
    let (api, topic) = api_on_a_new_topic(
        1,
        &[
            ("RDKAFKA_MESSAGE_MAX_BYTES", "20000".into()),
            ("MAX_BODY_BYTES", "200000".into()),
        ],
    );
    let p = api.port;
    let padded = |bytes: usize| {
        let mut e = exposure("u-big", 1);
        e["attributes"] = json!({ "pad": "x".repeat(bytes) });
        e
    };
    let r = wait_for("a 202 for a 15 kB event", Duration::from_secs(30), || {
        Some(post(p, "/exposure", &padded(15_000))).filter(|r| r.status == 202)
    });
    assert_eq!(r.json()["status"], "accepted");
    // The per-event check, not the body limit (200000 here), refuses these.
    let r = post(p, "/exposure", &padded(30_000));
    r.assert_error(413, "as a Kafka message");
    assert_eq!(r.json()["field"], "body", "{r:?}");
    assert!(r.body.contains("message.max.bytes (20000)"), "{r:?}");
    let r = post(p, "/exposures", &json!([padded(10), padded(30_000)]));
    r.assert_error(413, "as a Kafka message");
    assert_eq!(r.json()["field"], "exposures[1]", "{r:?}");
    let m = get(p, "/metrics").body;
    assert!(
        m.contains("exposure_api_events_rejected_total{reason=\"too_large\"} 3"),
        "{m}"
    );

    // Without MAX_BODY_BYTES the body limit is message.max.bytes, exactly. A small event
    // padded with spaces to a size in bytes, which the per-event check would take: only the
    // body limit can refuse it.
    let derived = start_api(&[
        ("KAFKA_BOOTSTRAP", bootstrap),
        ("EXPOSURES_TOPIC", topic),
        ("RDKAFKA_MESSAGE_MAX_BYTES", "20000".into()),
    ]);
    let spaced = |len: usize| {
        let mut body = exposure("u-spaced", 2).to_string().into_bytes();
        body.resize(len, b' ');
        body
    };
    let r = request(derived.port, "POST", "/exposure", &[], &spaced(20_001));
    r.assert_error(413, "larger than MAX_BODY_BYTES");
    assert_eq!(r.json()["field"], "body", "{r:?}");
    let r = request(derived.port, "POST", "/exposure", &[], &spaced(20_000));
    assert_eq!(r.status, 202, "{r:?}");
}

/// Under overload the `/exposure*` routes answer 503 with `Retry-After` at once instead of
/// letting latency grow: past the producer queue's high-water mark, past `MAX_CONCURRENCY`
/// requests in progress, and after `REQUEST_TIMEOUT_MS`. The broker is unreachable, so
/// produced events wait in the queue for `PRODUCE_TIMEOUT_MS`.
#[test]
fn overload_is_answered_at_once_with_503_and_retry_after() {
    let unreachable = format!("127.0.0.1:{}", free_port());
    let start = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("KAFKA_BOOTSTRAP", unreachable.clone()),
            ("EXPOSURES_TOPIC", format!("exposures-api-{}", unique())),
            ("PRODUCE_TIMEOUT_MS", "8000".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        start_api(&env)
    };
    let in_flight = |port: u16, n: usize| {
        wait_for(
            &format!("{n} events waiting for the broker"),
            Duration::from_secs(10),
            || {
                get(port, "/metrics")
                    .body
                    .contains(&format!("exposure_api_produce_in_flight {n}\n"))
                    .then_some(())
            },
        )
    };
    let fast_503 = |port: u16, body: &Value, says: &str| {
        let started = Instant::now();
        let r = post(port, "/exposure", body);
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{says}: {r:?}");
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
        assert!(r.body.contains(says), "{says}: {r:?}");
        took
    };

    // The producer queue's high-water mark: 3 events wait, a 4th is shed.
    let shed = start(&[("SHED_QUEUE_MESSAGES", "3")]);
    let port = shed.port;
    let waiting = std::thread::spawn(move || {
        let batch = json!([exposure("u-1", 1), exposure("u-2", 2), exposure("u-3", 3)]);
        post(port, "/exposures", &batch).status
    });
    in_flight(shed.port, 3);
    let took = fast_503(shed.port, &exposure("u-4", 4), "high-water mark");
    assert!(took < Duration::from_secs(1), "shed after {took:?}");
    assert!(get(shed.port, "/metrics")
        .body
        .contains("exposure_api_events_rejected_total{reason=\"overloaded\"} 1"));

    // MAX_CONCURRENCY=1: one request waits for the broker, the next is shed at once; the
    // operational routes are not limited.
    let limited = start(&[("MAX_CONCURRENCY", "1")]);
    let port = limited.port;
    let holding = std::thread::spawn(move || post(port, "/exposure", &exposure("u-5", 5)).status);
    in_flight(limited.port, 1);
    let took = fast_503(limited.port, &exposure("u-6", 6), "MAX_CONCURRENCY");
    assert!(took < Duration::from_secs(1), "shed after {took:?}");
    assert_eq!(get(limited.port, "/metrics").status, 200);
    assert_eq!(get(limited.port, "/openapi.json").status, 200);

    // REQUEST_TIMEOUT_MS=500: answered 503 after half a second, not after PRODUCE_TIMEOUT_MS.
    let timed = start(&[("REQUEST_TIMEOUT_MS", "500")]);
    let took = fast_503(timed.port, &exposure("u-7", 7), "REQUEST_TIMEOUT_MS");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "timed out after {took:?}"
    );

    assert_eq!(waiting.join().expect("batch"), 503, "never acknowledged");
    assert_eq!(holding.join().expect("event"), 503, "never acknowledged");
}

/// A client's retries are recognisable: the same `Idempotency-Key` (with the same
/// credentials) gives the same exposure ids, a client's own `exposure_id` is kept, and
/// clients that send neither get a new UUIDv4 each time.
#[test]
fn idempotency_keys_and_client_ids_give_stable_exposure_ids() {
    let bootstrap = shared_bootstrap();
    let (api, topic) = api_on_a_new_topic(1, &[("API_KEYS", format!("{KEY},other-key"))]);
    let p = api.port;
    let send = |path: &str, key: Option<&str>, api_key: &str, body: &Value| {
        let mut headers = vec![("X-API-Key", api_key)];
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        request(p, "POST", path, &headers, body.to_string().as_bytes())
    };
    let single = |key: Option<&str>, api_key: &str| {
        let r = wait_for("a 202", Duration::from_secs(30), || {
            Some(send("/exposure", key, api_key, &exposure("u-idem", 1)))
                .filter(|r| r.status == 202)
        });
        r.json()["exposure_id"].as_str().expect("id").to_string()
    };
    let first = single(Some("order-1"), KEY);
    assert_eq!(
        first,
        single(Some("order-1"), KEY),
        "a retry gets the same id"
    );
    assert_eq!(first.as_bytes()[14], b'5', "a UUIDv5: {first}");
    assert_ne!(first, single(Some("order-2"), KEY));
    assert_ne!(
        first,
        single(Some("order-1"), "other-key"),
        "keys are per client"
    );
    assert_ne!(
        single(None, KEY),
        single(None, KEY),
        "no key: a new id each time"
    );

    let batch = json!([
        exposure("u-idem", 2),
        exposure("u-idem", 3),
        exposure("u-idem", 4)
    ]);
    let ids = |r: Resp| -> Vec<String> {
        assert_eq!(r.status, 202, "{r:?}");
        r.json()["exposure_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_str().expect("id").to_string())
            .collect()
    };
    let a = ids(send("/exposures", Some("batch-1"), KEY, &batch));
    assert_eq!(a, ids(send("/exposures", Some("batch-1"), KEY, &batch)));
    assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 3, "{a:?}");

    let mut own = exposure("u-idem", 5);
    own["exposure_id"] = json!("6F9619FF-8B86-D011-B42D-00C04FC964FF");
    let r = send("/exposure", Some("order-1"), KEY, &own);
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(
        r.json()["exposure_id"],
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "the client's own id wins"
    );

    let r = send(
        "/exposure",
        Some(&"k".repeat(256)),
        KEY,
        &exposure("u-idem", 6),
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["field"], "Idempotency-Key");
    let mut bad = exposure("u-idem", 7);
    bad["exposure_id"] = json!("order-7");
    let r = send("/exposure", None, KEY, &bad);
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["field"], "exposure_id");

    // On the topic, the retries are the same events.
    let messages = read_topic(&bootstrap, &topic);
    let with_first = messages
        .iter()
        .filter(|(_, v)| v["exposure_id"] == first.as_str())
        .count();
    assert_eq!(with_first, 2, "two deliveries of one event: {messages:?}");
    assert!(messages
        .iter()
        .any(|(_, v)| v["exposure_id"] == "6f9619ff-8b86-d011-b42d-00c04fc964ff"));
}
