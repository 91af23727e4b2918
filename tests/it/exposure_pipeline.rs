//! The two exposure workloads together, as built on this machine: exposure-api in front of a
//! broker of the test's own (tansu, which the test stops and restarts), exposure-consumer
//! behind it, PostgreSQL from the local stack as the warehouse, checked with psql.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workloads::{
    create_topic, database_url, free_port, http, post_json, psql, spawn_workload, wait_for,
    OwnBroker, Running,
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
}

impl Pipeline {
    /// Starts the broker, a 3-partition topic, the consumer and the API with `auth` (one
    /// environment variable: auth is on by default), and waits for the API's /health.
    async fn start(name: &str, auth: (&str, &str)) -> Pipeline {
        let broker = OwnBroker::start();
        let bootstrap = broker.bootstrap();
        let id = format!("{name}{}", std::process::id());
        let topic = format!("exposures-{id}");
        create_topic(&bootstrap, &topic, 3).await;
        let consumer = spawn_workload(
            "exposure-consumer",
            &[
                ("KAFKA_BOOTSTRAP", bootstrap.clone()),
                ("DATABASE_URL", database_url()),
                ("EXPOSURES_TOPIC", topic.clone()),
                ("DLQ_TOPIC", format!("{topic}.dlq")),
                ("KAFKA_GROUP", format!("group-{id}")),
                ("PORT", free_port().to_string()),
            ],
        );
        let api_port = free_port();
        let api = spawn_workload(
            "exposure-api",
            &[
                ("KAFKA_BOOTSTRAP", bootstrap),
                ("EXPOSURES_TOPIC", topic),
                ("PORT", api_port.to_string()),
                ("PRODUCE_TIMEOUT_MS", "1500".to_string()),
                (auth.0, auth.1.to_string()),
            ],
        );
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
    } = Pipeline::start("pipe", ("AUTH", "none")).await;

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
/// retried after each 503, while the broker is killed and restarted in the middle of it (so
/// batches are answered 503 after some of their events were written). Each request is keyed,
/// by an `Idempotency-Key` or by the events' own `exposure_id`s: every 202 for a request names
/// the same ids, and the warehouse ends with exactly one row per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_with_idempotency_keys_writes_one_row_per_key() {
    let Pipeline {
        mut broker,
        id,
        experiment,
        addr,
        api: _api,
        consumer: _consumer,
        ..
    } = Pipeline::start("storm", ("API_KEYS", "storm-key")).await;

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
    let other: Arc<Mutex<Vec<String>>> = Arc::default();
    let storm: Vec<_> = (0..4)
        .map(|thread| {
            let (requests, answers, unavailable, other, addr) = (
                requests.clone(),
                answers.clone(),
                unavailable.clone(),
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
    eprintln!(
        "{} requests sent 8 times each, {} answered 503 along the way, {} rows for {events} events",
        requests.len(),
        unavailable.load(Ordering::Relaxed),
        rows.len()
    );
}
