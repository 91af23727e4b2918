//! The two exposure workloads together, as built on this machine: exposure-api in front of a
//! broker of the test's own (tansu, which the test stops and restarts), exposure-consumer
//! behind it, PostgreSQL from the local stack as the warehouse, checked with psql.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::workloads::{
    create_topic, database_url, free_port, http, metric, post_json, psql, read_topic,
    spawn_workload, wait_for, OwnBroker, Running,
};

/// What the posting thread saw.
#[derive(Default)]
struct Posted {
    accepted: BTreeSet<String>,
    unavailable: usize,
    unavailable_without_retry_after: usize,
    other: Vec<String>,
}

/// The pair under test: exposure-api and exposure-consumer on a broker of the test's own, with
/// PostgreSQL from the local stack as the warehouse.
struct Pipeline {
    api: Running,
    consumer: Running,
    broker: OwnBroker,
    /// Names this run's topic, group and keys.
    id: String,
    /// The experiment id this run's events carry, so its rows can be told apart.
    experiment: String,
    /// The API's address, once its /health answers.
    addr: String,
    /// The consumer's address, for its /metrics.
    consumer_addr: String,
    /// The topic the API produces to and the consumer reads.
    topic: String,
    /// The consumer's DLQ topic, created with the topic.
    dlq: String,
}

impl Pipeline {
    /// Starts the broker, a 3-partition topic and its DLQ, the consumer and the API with
    /// `settings` besides its broker, topic and port (its auth among them: auth is on by
    /// default), and waits for the API's /health.
    async fn start(name: &str, settings: &[(&str, &str)]) -> Pipeline {
        let broker = OwnBroker::start();
        let bootstrap = broker.bootstrap();
        let id = format!("{name}{}", std::process::id());
        let topic = format!("exposures-{id}");
        let dlq = format!("{topic}.dlq");
        create_topic(&bootstrap, &topic, 3).await;
        create_topic(&bootstrap, &dlq, 1).await;
        let consumer_port = free_port();
        let consumer = spawn_workload(
            "exposure-consumer",
            &[
                ("KAFKA_BOOTSTRAP", bootstrap.clone()),
                ("DATABASE_URL", database_url()),
                ("EXPOSURES_TOPIC", topic.clone()),
                ("DLQ_TOPIC", dlq.clone()),
                ("KAFKA_GROUP", format!("group-{id}")),
                ("PORT", consumer_port.to_string()),
            ],
        );
        let api_port = free_port();
        let mut env = vec![
            ("KAFKA_BOOTSTRAP", bootstrap),
            ("EXPOSURES_TOPIC", topic.clone()),
            ("PORT", api_port.to_string()),
            ("PRODUCE_TIMEOUT_MS", "1500".to_string()),
        ];
        env.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
        let api = spawn_workload("exposure-api", &env);
        let addr = format!("127.0.0.1:{api_port}");
        wait_for("the API's /health", Duration::from_secs(60), || {
            http("GET", &addr, "/health", &[], b"").filter(|a| a.status == 200)
        });
        Pipeline {
            api,
            consumer,
            broker,
            experiment: format!("exp-{id}-{}", free_port()),
            id,
            addr,
            consumer_addr: format!("127.0.0.1:{consumer_port}"),
            topic,
            dlq,
        }
    }
}

/// The exposure ids the warehouse holds for `experiment`: none before the consumer has created
/// its table.
fn warehouse_ids(experiment: &str) -> Vec<String> {
    let table = psql("SELECT to_regclass('growthbook.experiment_exposures') IS NOT NULL");
    if table != "t" {
        return Vec::new();
    }
    psql(&format!(
        "SELECT exposure_id FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

/// Stop the broker while events keep arriving: the API answers 503 (with Retry-After) instead
/// of 202, and recovers by itself when the broker is back; every event it answered 202 for
/// reaches the warehouse, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_accepted_event() {
    let Pipeline {
        mut broker,
        experiment,
        addr,
        api: _api,
        consumer: _consumer,
        ..
    } = Pipeline::start("pipe", &[("AUTH", "none")]).await;

    let posted = Arc::new(Mutex::new(Posted::default()));
    let running = Arc::new(AtomicBool::new(true));
    let poster = {
        let (posted, running, addr, experiment) = (
            posted.clone(),
            running.clone(),
            addr.clone(),
            experiment.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                i += 1;
                let body = serde_json::json!({
                    "ds_user_id": format!("user-{}", i % 17),
                    "experiment_id": experiment,
                    "variation_id": "control",
                    "attributes": {"i": i},
                    "source": "exposure_pipeline test",
                });
                let answer = post_json(&addr, "/exposure", &body);
                let mut p = posted.lock().unwrap_or_else(|e| e.into_inner());
                match answer {
                    Some(a) if a.status == 202 => {
                        let id = a.json()["exposure_id"].as_str().map(str::to_string);
                        p.accepted.insert(id.expect("a 202 names the exposure_id"));
                    }
                    Some(a) if a.status == 503 => {
                        p.unavailable += 1;
                        if a.header("retry-after").is_none() {
                            p.unavailable_without_retry_after += 1;
                        }
                    }
                    Some(a) => p.other.push(format!("{} {}", a.status, a.body)),
                    None => p.other.push("no answer".to_string()),
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let accepted = || {
        posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted
            .len()
    };
    wait_for("100 accepted events", Duration::from_secs(60), || {
        (accepted() >= 100).then_some(())
    });

    broker.stop();
    let before_outage = accepted();
    wait_for(
        "503s while the broker is down",
        Duration::from_secs(30),
        || {
            let p = posted.lock().unwrap_or_else(|e| e.into_inner());
            (p.unavailable >= 3).then_some(())
        },
    );
    let health = http("GET", &addr, "/health", &[], b"").expect("/health answers");
    assert_eq!(
        health.status, 503,
        "health with the broker down: {}",
        health.body
    );
    assert!(
        accepted() <= before_outage + 50,
        "events accepted while the broker was down: {} after {before_outage}",
        accepted()
    );

    let restarted = Instant::now();
    let after_restart = accepted();
    broker.resume_until(
        "the same API process to accept again by itself",
        Duration::from_secs(90),
        || accepted() >= after_restart + 100,
    );
    let recovery = restarted.elapsed();
    running.store(false, Ordering::Relaxed);
    poster.join().expect("poster");

    let p = posted.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        p.other.is_empty(),
        "only 202 and 503 answers: {:?}",
        p.other
    );
    assert_eq!(
        p.unavailable_without_retry_after, 0,
        "every 503 carries Retry-After"
    );
    let rows = wait_for(
        "every accepted event in the warehouse",
        Duration::from_secs(120),
        || {
            let rows = warehouse_ids(&experiment);
            let present: BTreeSet<String> = rows.iter().cloned().collect();
            p.accepted.is_subset(&present).then_some(rows)
        },
    );
    let present: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(rows.len(), present.len(), "one row per exposure_id");
    eprintln!(
        "accepted {}, answered 503 {} times, {} rows (a 503'd event may still have been written), recovered {:.1}s after the restart",
        p.accepted.len(),
        p.unavailable,
        rows.len(),
        recovery.as_secs_f64()
    );
}

/// One request of the retry storm: where it goes, its `Idempotency-Key` (if any), its body.
struct Retried {
    path: &'static str,
    key: Option<String>,
    body: serde_json::Value,
}

/// A retry storm: every request is sent again and again from several threads at once, and
/// retried after each 503, while the broker is killed and restarted in the middle of it. The
/// API's producer queue holds 8 messages, so concurrent batches also meet a full queue part way
/// through: answered 503 after some of their events were queued, and so written. Each request
/// is keyed, by an `Idempotency-Key` or by the events' own `exposure_id`s: every 202 for a
/// request names the same ids, some 503'd batch was partly written (told by the `accepted_at`
/// its events carry on the topic), and the warehouse ends with exactly one row per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_with_idempotency_keys_writes_one_row_per_key() {
    let Pipeline {
        mut broker,
        id,
        experiment,
        addr,
        topic,
        api: _api,
        consumer: _consumer,
        ..
    } = Pipeline::start(
        "storm",
        &[
            ("API_KEYS", "storm-key"),
            ("RDKAFKA_QUEUE_BUFFERING_MAX_MESSAGES", "8"),
        ],
    )
    .await;

    let event = |n: usize| {
        serde_json::json!({
            "ds_user_id": format!("user-{}", n % 13),
            "experiment_id": experiment,
            "variation_id": if n % 2 == 0 { "control" } else { "treatment" },
            "attributes": {"n": n},
            "source": "exposure_pipeline retry storm",
        })
    };
    // 30 batches of 5 under an Idempotency-Key, 30 single events under one, 20 events with
    // their own exposure_id: 200 events.
    let mut requests = Vec::new();
    for r in 0..30 {
        let batch: Vec<_> = (0..5).map(|i| event(r * 5 + i)).collect();
        requests.push(Retried {
            path: "/exposures",
            key: Some(format!("batch-{id}-{r}")),
            body: serde_json::json!({ "exposures": batch }),
        });
    }
    for r in 0..30 {
        requests.push(Retried {
            path: "/exposure",
            key: Some(format!("single-{id}-{r}")),
            body: event(1000 + r),
        });
    }
    for r in 0..20 {
        let mut e = event(2000 + r);
        e["exposure_id"] = serde_json::json!(format!(
            "{:08x}-0000-4000-8000-{r:012x}",
            std::process::id()
        ));
        requests.push(Retried {
            path: "/exposure",
            key: None,
            body: e,
        });
    }
    let events = 30 * 5 + 30 + 20;
    let requests = Arc::new(requests);

    // Per request: the id lists of its 202s; and how many 503s were answered.
    let answers: Arc<Mutex<BTreeMap<usize, Vec<Vec<String>>>>> = Arc::default();
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Each batch attempt answered 503: (request, sent, answered), in the system clock's time.
    let refused: Arc<Mutex<Vec<(usize, SystemTime, SystemTime)>>> = Arc::default();
    let other: Arc<Mutex<Vec<String>>> = Arc::default();
    let storm: Vec<_> = (0..4)
        .map(|thread| {
            let (requests, answers, unavailable, refused, other, addr) = (
                requests.clone(),
                answers.clone(),
                unavailable.clone(),
                refused.clone(),
                other.clone(),
                addr.clone(),
            );
            std::thread::spawn(move || {
                // Every thread sends every request twice, each thread starting elsewhere.
                for round in 0..2 {
                    for k in 0..requests.len() {
                        let i = (k + thread * 17 + round * 31) % requests.len();
                        let r = &requests[i];
                        let mut headers = vec![
                            ("Content-Type", "application/json"),
                            ("X-API-Key", "storm-key"),
                        ];
                        if let Some(key) = &r.key {
                            headers.push(("Idempotency-Key", key));
                        }
                        let deadline = Instant::now() + Duration::from_secs(120);
                        loop {
                            let body = r.body.to_string();
                            let sent = SystemTime::now();
                            match http("POST", &addr, r.path, &headers, body.as_bytes()) {
                                Some(a) if a.status == 202 => {
                                    let v = a.json();
                                    let ids: Vec<String> = match v.get("exposure_ids") {
                                        Some(ids) => ids
                                            .as_array()
                                            .into_iter()
                                            .flatten()
                                            .filter_map(|i| i.as_str().map(str::to_string))
                                            .collect(),
                                        None => v["exposure_id"]
                                            .as_str()
                                            .map(str::to_string)
                                            .into_iter()
                                            .collect(),
                                    };
                                    answers
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .entry(i)
                                        .or_default()
                                        .push(ids);
                                    break;
                                }
                                Some(a) if a.status == 503 => {
                                    unavailable.fetch_add(1, Ordering::Relaxed);
                                    if r.path == "/exposures" {
                                        refused.lock().unwrap_or_else(|e| e.into_inner()).push((
                                            i,
                                            sent,
                                            SystemTime::now(),
                                        ));
                                    }
                                }
                                Some(a) => other
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(format!("{} {}", a.status, a.body)),
                                None => other
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push("no answer".into()),
                            }
                            assert!(Instant::now() < deadline, "request {i}: no 202 in 120 s");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
        })
        .collect();

    // The outage, once a third of the requests were answered 202.
    let answered = || answers.lock().unwrap_or_else(|e| e.into_inner()).len();
    wait_for(
        "a third of the requests answered",
        Duration::from_secs(60),
        || (answered() >= requests.len() / 3).then_some(()),
    );
    broker.stop();
    wait_for(
        "503s while the broker is down",
        Duration::from_secs(30),
        || (unavailable.load(Ordering::Relaxed) >= 4).then_some(()),
    );
    broker.resume_until(
        "every request answered 202 at least once",
        Duration::from_secs(150),
        || answered() == requests.len(),
    );
    for t in storm {
        t.join().expect("a storm thread");
    }

    let other = other.lock().unwrap_or_else(|e| e.into_inner());
    assert!(other.is_empty(), "only 202 and 503 answers: {other:?}");
    let answers = answers.lock().unwrap_or_else(|e| e.into_inner());
    let mut expected = BTreeSet::new();
    for (i, lists) in answers.iter() {
        assert!(
            lists.iter().all(|l| l == &lists[0]),
            "request {i} got different ids: {lists:?}"
        );
        assert_eq!(lists.len(), 8, "request {i}: one 202 per send");
        expected.extend(lists[0].iter().cloned());
    }
    assert_eq!(expected.len(), events, "one id per event");

    wait_for(
        "every event in the warehouse",
        Duration::from_secs(120),
        || {
            let present: BTreeSet<String> = warehouse_ids(&experiment).into_iter().collect();
            expected.is_subset(&present).then_some(())
        },
    );
    // A moment for late duplicates to arrive, then: exactly one row per event.
    std::thread::sleep(Duration::from_secs(3));
    let rows = warehouse_ids(&experiment);
    let present: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), present.len(), "one row per exposure_id");
    assert_eq!(present, expected, "exactly the events sent, once each");

    // The case the keys are for: a batch answered 503 after some of its events were written.
    // The API stamps `accepted_at` on each attempt's events as it takes the request, so an
    // event on the topic stamped within a 503'd attempt was written by that attempt.
    let mut stamped: BTreeMap<String, Vec<SystemTime>> = BTreeMap::new();
    for (_, value) in read_topic(&broker.bootstrap(), &topic) {
        let v: serde_json::Value = serde_json::from_str(&value).expect("a JSON event");
        if let (Some(id), Some(at)) = (v["exposure_id"].as_str(), v["accepted_at"].as_str()) {
            let at = humantime::parse_rfc3339(at).expect("accepted_at in RFC 3339");
            stamped.entry(id.to_string()).or_default().push(at);
        }
    }
    let refused = refused.lock().unwrap_or_else(|e| e.into_inner());
    let written_then_refused = refused
        .iter()
        .filter(|&&(i, sent, answered)| {
            // `accepted_at` has whole milliseconds.
            let from = sent - Duration::from_millis(1);
            answers[&i][0].iter().any(|id| {
                let mut at = stamped.get(id).into_iter().flatten();
                at.any(|at| (from..=answered).contains(at))
            })
        })
        .count();
    assert!(
        written_then_refused > 0,
        "none of the {} batch attempts answered 503 had written an event",
        refused.len()
    );
    eprintln!(
        "{} requests sent 8 times each, {} answered 503 along the way ({written_then_refused} of {} batch 503s after some of the batch was written), {} rows for {events} events",
        requests.len(),
        unavailable.load(Ordering::Relaxed),
        refused.len(),
        rows.len()
    );
}

/// The contract's limits (consumers/exposure-event/src/lib.rs): text fields in bytes of UTF-8,
/// attributes in bytes of compact JSON, and their nesting (the object itself is 1).
const TEXT_MAX_BYTES: usize = 256;
const ATTRIBUTES_MAX_BYTES: usize = 65_535;
const ATTRIBUTES_MAX_DEPTH: usize = 32;

/// Exactly `bytes` bytes of UTF-8: `prefix`, then `fill` as often as it fits, then ASCII `a`s
/// for what `fill`'s width leaves.
fn exactly(bytes: usize, prefix: &str, fill: char) -> String {
    let mut s = prefix.to_string();
    while s.len() + fill.len_utf8() <= bytes {
        s.push(fill);
    }
    while s.len() < bytes {
        s.push('a');
    }
    s
}

/// 0 for a scalar, 1 for an empty array or object, and so on, as the contract counts.
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// One event the API must accept, and the row it must become.
struct Edge {
    event: serde_json::Value,
    /// `ts` as stored, in the wire's format (UTC, milliseconds).
    ts: &'static str,
    /// `attributes` as stored.
    attributes: serde_json::Value,
    /// The `exposure_id` the API must answer with, when the client sent one.
    exposure_id: Option<String>,
}

/// The row of `id` as `{ds_user_id, experiment_id, variation_id, source, ts}` plus
/// `attributes_equal`: whether its `attributes` equal `attributes` as JSON, by PostgreSQL's
/// `jsonb` equality (key order aside; numbers by their exact decimal values, so one changed on
/// the way, even in its last digit, differs).
fn stored_row(id: &str, attributes: &serde_json::Value) -> serde_json::Value {
    let attributes = attributes.to_string();
    assert!(!attributes.contains("$attrs$"), "the dollar quote's tag");
    let row = psql(&format!(
        "SELECT json_build_object('ds_user_id', ds_user_id, 'experiment_id', experiment_id, \
           'variation_id', variation_id, 'source', source, \
           'ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
           'attributes_equal', attributes = $attrs${attributes}$attrs$::jsonb) \
         FROM growthbook.experiment_exposures WHERE exposure_id = '{id}'"
    ));
    serde_json::from_str(&row).unwrap_or_else(|e| panic!("row of {id} ({e}): {row:?}"))
}

/// Events at the edges of the contract, which the API accepts, go API → broker →
/// exposure-consumer → PostgreSQL unchanged: text fields of exactly 256 bytes in characters of
/// 2, 3 and 4 bytes and with the unicode the contract allows (whitespace, format characters,
/// combining marks); timestamps in years 1 and 9999, with offsets, and a leap second; attributes
/// of exactly the size and depth limits with unicode keys and every JSON value type, with
/// control characters other than NUL. None goes to the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_case_events_the_api_accepts_reach_the_warehouse_unchanged() {
    use serde_json::json;

    let pipeline = Pipeline::start("edge", &[("AUTH", "none")]).await;
    let exp = |fill: char| exactly(TEXT_MAX_BYTES, &format!("{}-", pipeline.experiment), fill);

    let every_type = json!({
        "null": null, "true": true, "false": false,
        "i64::MIN": i64::MIN, "u64::MAX": u64::MAX, "zero": 0, "minus one": -1,
        "one and a half": 1.5, "minus a quarter": -0.25,
        "f64::MAX": f64::MAX, "smallest subnormal": 5e-324,
        "ключ": "значение", "🔑": "🎉", "鍵": ["値", 1, null, {"ネスト": true}],
        "empty object": {}, "empty array": [], "empty string": ""
    });
    // Exactly ATTRIBUTES_MAX_BYTES as compact JSON: U+0001 is written as the 6 bytes
    // `\u0001`, é as 2 bytes, and ASCII fills the rest.
    let mut at_size_limit = json!({
        "κλειδί\u{1f}": "\u{1}\u{7f}\u{85}\u{9f}", "🎉": [1, 2.5, true, null], "pad": ""
    });
    let room = ATTRIBUTES_MAX_BYTES - at_size_limit.to_string().len();
    let escaped = room / 2 / 6;
    let two_bytes = (room - 6 * escaped) / 2;
    let ascii = room - 6 * escaped - 2 * two_bytes;
    at_size_limit["pad"] = json!(format!(
        "{}{}{}",
        "\u{1}".repeat(escaped),
        "é".repeat(two_bytes),
        "a".repeat(ascii)
    ));
    assert_eq!(at_size_limit.to_string().len(), ATTRIBUTES_MAX_BYTES);
    // Exactly ATTRIBUTES_MAX_DEPTH deep: arrays and objects with unicode keys in turn, around
    // an array of scalars.
    let mut nested = json!(["bottom", 1, -1.5, true, false, null, u64::MAX]);
    for level in 0..ATTRIBUTES_MAX_DEPTH - 2 {
        nested = if level % 2 == 0 {
            json!([nested])
        } else {
            json!({ format!("κλειδί {level}"): nested })
        };
    }
    let at_depth_limit = json!({ "🔑": nested });
    assert_eq!(depth(&at_depth_limit), ATTRIBUTES_MAX_DEPTH);
    let controls = json!({
        "\u{1}key\u{1f}": "\t\n\r\u{8}\u{c}",
        "escape": "\u{1b}[31mred\u{1b}[0m",
        "DEL and C1": "\u{7f}\u{80}\u{85}\u{9f}",
        "not a NUL": "\\u0000",
        "\u{7}": ["\u{2028}\u{2029}", "\u{feff}"]
    });

    let edge = |user: String,
                experiment: String,
                variation: String,
                source: String,
                timestamp: &str,
                attributes: Option<serde_json::Value>| {
        let mut event = json!({
            "ds_user_id": user, "experiment_id": experiment, "variation_id": variation,
            "source": source, "timestamp": timestamp,
        });
        if let Some(a) = attributes {
            event["attributes"] = a;
        }
        event
    };
    let singles = [
        Edge {
            event: edge(
                "é".repeat(128),
                exp('é'),
                exactly(TEXT_MAX_BYTES, "", '€'),
                "🎉".repeat(64),
                "0001-01-01T00:00:00Z",
                Some(every_type.clone()),
            ),
            ts: "0001-01-01T00:00:00.000Z",
            attributes: every_type,
            exposure_id: None,
        },
        Edge {
            event: edge(
                exactly(TEXT_MAX_BYTES, "", '€'),
                exp('€'),
                "🎉".repeat(64),
                "é".repeat(128),
                "9999-12-31T23:59:59.999Z",
                Some(at_size_limit.clone()),
            ),
            ts: "9999-12-31T23:59:59.999Z",
            attributes: at_size_limit,
            exposure_id: None,
        },
        Edge {
            event: edge(
                "🎉".repeat(64),
                exp('🎉'),
                "é".repeat(128),
                exactly(TEXT_MAX_BYTES, "", '€'),
                "2016-12-31T23:59:60.500Z",
                Some(at_depth_limit.clone()),
            ),
            // A leap second is the next second.
            ts: "2017-01-01T00:00:00.500Z",
            attributes: at_depth_limit,
            exposure_id: None,
        },
    ];
    let mut with_client_id = edge(
        // Whitespace around, a no-break space, a line separator, a byte order mark, a
        // right-to-left mark, a joined emoji and a combining accent: not control characters.
        " \u{a0}spaced\u{2028}line\u{feff}bom\u{200f}rtl👩\u{200d}💻e\u{301} ".to_string(),
        exp('a'),
        "ünïcödé".to_string(),
        "aé€🎉".repeat(25) + "aé€",
        "9999-12-31T22:59:59.999-01:00",
        Some(controls.clone()),
    );
    // The client's id in the simple uppercase form, new on every run (the warehouse keeps the
    // first row of an id), and the canonical form the API must answer with.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos();
    let client_id = format!("{:08X}{:024X}", std::process::id(), nanos & ((1 << 96) - 1));
    let lower = client_id.to_lowercase();
    let canonical = [
        &lower[..8],
        &lower[8..12],
        &lower[12..16],
        &lower[16..20],
        &lower[20..],
    ]
    .join("-");
    with_client_id["exposure_id"] = json!(client_id);
    let batch = [
        Edge {
            event: with_client_id,
            ts: "9999-12-31T23:59:59.999Z",
            attributes: controls,
            exposure_id: Some(canonical),
        },
        Edge {
            event: edge(
                "u5".into(),
                exp('a'),
                "v".into(),
                "s".into(),
                "0001-01-01T00:59:59+00:59",
                Some(serde_json::Value::Null),
            ),
            ts: "0001-01-01T00:00:59.000Z",
            attributes: json!({}),
            exposure_id: None,
        },
        Edge {
            event: edge(
                "u6".into(),
                exp('a'),
                "v".into(),
                "s".into(),
                "2026-11-22T02:33:12.123999999+14:00",
                None,
            ),
            ts: "2026-11-21T12:33:12.123Z",
            attributes: json!({}),
            exposure_id: None,
        },
    ];
    // The singles' text fields are at the limit; the batch's within it.
    let text = |e: &Edge, field: &str| e.event[field].as_str().map_or(0, str::len);
    for field in ["ds_user_id", "experiment_id", "variation_id", "source"] {
        assert!(singles.iter().all(|e| text(e, field) == TEXT_MAX_BYTES));
        assert!(batch.iter().all(|e| text(e, field) <= TEXT_MAX_BYTES));
    }

    // Every event is accepted: three alone, three in one batch.
    let mut accepted: Vec<(String, &Edge)> = Vec::new();
    for e in &singles {
        let a = post_json(&pipeline.addr, "/exposure", &e.event).expect("an answer");
        assert_eq!(a.status, 202, "{}: {}", e.event, a.body);
        let id = a.json()["exposure_id"].as_str().expect("an id").to_string();
        accepted.push((id, e));
    }
    let events: Vec<_> = batch.iter().map(|e| e.event.clone()).collect();
    let a = post_json(
        &pipeline.addr,
        "/exposures",
        &json!({ "exposures": events }),
    )
    .expect("an answer");
    assert_eq!(a.status, 202, "{}", a.body);
    let ids = a.json()["exposure_ids"].clone();
    for (i, e) in batch.iter().enumerate() {
        let id = ids[i].as_str().expect("an id").to_string();
        if let Some(expected) = &e.exposure_id {
            assert_eq!(&id, expected, "the client's id, in canonical form");
        }
        accepted.push((id, e));
    }

    let dlq_total = || metric(&pipeline.consumer_addr, "exposure_consumer_dlq_total");
    let experiments: BTreeSet<String> = accepted
        .iter()
        .map(|(_, e)| {
            e.event["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let expected: BTreeSet<&String> = accepted.iter().map(|(id, _)| id).collect();
    wait_for(
        "every accepted event in the warehouse",
        Duration::from_secs(120),
        || {
            assert_eq!(
                dlq_total().unwrap_or(0.0),
                0.0,
                "an accepted event went to the DLQ"
            );
            let present: BTreeSet<String> =
                experiments.iter().flat_map(|e| warehouse_ids(e)).collect();
            expected
                .iter()
                .all(|id| present.contains(*id))
                .then_some(())
        },
    );

    for (id, e) in &accepted {
        let row = stored_row(id, &e.attributes);
        let want = json!({
            "ds_user_id": e.event["ds_user_id"], "experiment_id": e.event["experiment_id"],
            "variation_id": e.event["variation_id"], "source": e.event["source"],
            "ts": e.ts, "attributes_equal": true,
        });
        if row != want {
            let stored = psql(&format!(
                "SELECT left(attributes::text, 2000) FROM growthbook.experiment_exposures \
                 WHERE exposure_id = '{id}'"
            ));
            panic!("{id}: stored {row}, expected {want}; stored attributes: {stored}");
        }
    }

    let dead = read_topic(&pipeline.broker.bootstrap(), &pipeline.dlq);
    assert!(
        dead.is_empty(),
        "messages in the DLQ {}: {dead:?}",
        pipeline.dlq
    );
    assert_eq!(dlq_total(), Some(0.0), "exposure_consumer_dlq_total");
}
