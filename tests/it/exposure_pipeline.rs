//! The two exposure workloads together, as built on this machine: exposure-api in front of a
//! broker of the test's own (tansu, which the test stops and restarts), exposure-consumer
//! behind it, PostgreSQL from the local stack as the warehouse, checked with psql.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workloads::{
    create_topic, database_url, free_port, http, post_json, psql, spawn_workload, wait_for,
    OwnBroker,
};

/// What the posting thread saw.
#[derive(Default)]
struct Posted {
    accepted: BTreeSet<String>,
    unavailable: usize,
    unavailable_without_retry_after: usize,
    other: Vec<String>,
}

/// Stop the broker while events keep arriving: the API answers 503 (with Retry-After) instead
/// of 202, and recovers by itself when the broker is back; every event it answered 202 for
/// reaches the warehouse, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_accepted_event() {
    let mut broker = OwnBroker::start();
    let bootstrap = broker.bootstrap();
    let id = format!("pipe{}", std::process::id());
    let topic = format!("exposures-{id}");
    create_topic(&bootstrap, &topic, 3).await;
    let experiment = format!("exp-{id}-{}", free_port());

    let _consumer = spawn_workload(
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
    let _api = spawn_workload(
        "exposure-api",
        &[
            ("KAFKA_BOOTSTRAP", bootstrap.clone()),
            ("EXPOSURES_TOPIC", topic.clone()),
            ("PORT", api_port.to_string()),
            ("PRODUCE_TIMEOUT_MS", "1500".to_string()),
            // Writes without credentials (auth is on by default).
            ("AUTH", "none".to_string()),
        ],
    );
    let addr = format!("127.0.0.1:{api_port}");
    wait_for("the API's /health", Duration::from_secs(60), || {
        http("GET", &addr, "/health", &[], b"").filter(|a| a.status == 200)
    });

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
    let ids_sql = format!(
        "SELECT exposure_id FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
    );
    let present = |sql: &str| -> BTreeSet<String> {
        let table = psql("SELECT to_regclass('growthbook.experiment_exposures') IS NOT NULL");
        if table != "t" {
            return BTreeSet::new();
        }
        psql(sql).lines().map(str::to_string).collect()
    };
    let rows = wait_for(
        "every accepted event in the warehouse",
        Duration::from_secs(120),
        || {
            let rows = present(&ids_sql);
            p.accepted.is_subset(&rows).then_some(rows)
        },
    );
    let missing: Vec<&String> = p.accepted.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "accepted but not in the warehouse: {missing:?}"
    );
    let distinct = psql(&format!(
        "SELECT count(*) = count(DISTINCT exposure_id) FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
    ));
    assert_eq!(distinct, "t");
    eprintln!(
        "accepted {}, answered 503 {} times, {} rows (a 503'd event may still have been written), recovered {:.1}s after the restart",
        p.accepted.len(),
        p.unavailable,
        rows.len(),
        recovery.as_secs_f64()
    );
}
