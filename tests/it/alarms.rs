//! Alarms as code (`[alarms]`): the manifest's validation; on ECS, CloudWatch alarms created,
//! changed and pruned with the deploy on the local stack's moto (its PutMetricAlarm,
//! DescribeAlarms, DeleteAlarms and SetAlarmState are real implementations), read back with
//! the test's own CloudWatch client; on docker, `status` judging the same conditions from
//! tansu's offsets and the containers.

use std::collections::BTreeMap;

use serde_json::Value;
use shoal::discover;
use shoal::manifest::{Problem, Project};

use crate::docker_platform::{docker, Local};
use crate::manifest::consumer_problems;
use crate::support::{assert_ok, text, Fixture, Sandbox};

const SNS: &str = "arn:aws:sns:us-east-1:123456789012:it-alarms";

fn problem<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.key == key).collect();
    assert_eq!(found.len(), 1, "one problem at `{key}`: {problems:#?}");
    assert!(found[0].help.is_some(), "says what to do: {}", found[0]);
    assert_eq!(
        found[0].file,
        std::path::Path::new("consumers/c/consumer.toml")
    );
    found[0]
}

const SCALED: &str = "kind = \"worker\"\n[kafka]\ngroup = \"g\"\ntopics = [\"t\"]\n\
                      [scaling]\nmin = 1\nmax = 2\n";

#[test]
fn every_alarms_problem_is_reported_at_once_with_its_key() {
    let problems = consumer_problems(&format!(
        "{SCALED}[alarms]\nlag_minutes = -1\nno_data_minutes = 2000\ndlq = true\ncolour = \"red\"\n"
    ));
    assert!(problem(&problems, "alarms.lag_minutes")
        .message
        .contains("out of range"));
    assert!(problem(&problems, "alarms.no_data_minutes")
        .message
        .contains("out of range"));
    assert!(problem(&problems, "alarms.dlq")
        .message
        .contains("no dead-letter topic"));
    assert!(problem(&problems, "alarms.colour")
        .message
        .contains("unknown key"));
}

#[test]
fn alarms_need_scaling_and_a_bad_dlq_topic_is_named() {
    let problems = consumer_problems("kind = \"worker\"\n[alarms]\ndlq_topic = \"no good\"\n");
    assert!(problem(&problems, "alarms").message.contains("[scaling]"));
    assert!(problem(&problems, "alarms.dlq_topic")
        .message
        .contains("not a legal topic name"));
    let problems = consumer_problems(&format!(
        "{SCALED}[alarms]\ndlq = false\ndlq_topic = \"t.dlq\"\n"
    ));
    assert!(problem(&problems, "alarms.dlq_topic")
        .message
        .contains("dlq = false"));
}

#[test]
fn defaults_are_on_for_scaled_consumers_only_and_find_the_declared_dlq() {
    let f = Fixture::standard();
    f.consumer(
        "scaled",
        &format!("{SCALED}[[topic]]\nname = \"t\"\npartitions = 2\n[[topic]]\nname = \"t.dlq\"\npartitions = 1\n"),
    );
    f.consumer("plain", "kind = \"worker\"\n");
    f.consumer("off", &format!("{SCALED}[alarms]\nenabled = false\n"));
    let fleet = discover::discover(f.root()).unwrap_or_else(|p| panic!("{p}"));
    let scaled = fleet.get("scaled").expect("scaled").alarms.clone();
    let scaled = scaled.expect("alarms on by default with [scaling]");
    assert_eq!(
        (
            scaled.lag_minutes,
            scaled.below_desired_minutes,
            scaled.no_data_minutes
        ),
        (5, 10, 10)
    );
    assert_eq!(scaled.dlq_topic.as_deref(), Some("t.dlq"));
    assert!(fleet.get("plain").expect("plain").alarms.is_none());
    assert!(fleet.get("off").expect("off").alarms.is_none());
}

#[test]
fn an_alarm_topic_that_is_not_an_sns_arn_is_refused() {
    let f = Fixture::new(
        "project = \"demo\"\n[env.local]\nplatform = \"docker\"\nalarm_topic_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"\n",
    );
    let problems = match Project::load(f.root()) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    };
    let p: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.key == "env.local.alarm_topic_arn")
        .collect();
    assert_eq!(p.len(), 1, "{problems:#?}");
    assert!(p[0].message.contains("not an SNS topic ARN"), "{}", p[0]);
}

/// The environment's alarms, read with the test's own client: name → the alarm.
async fn alarms(sb: &Sandbox) -> BTreeMap<String, aws_sdk_cloudwatch::types::MetricAlarm> {
    let env = sb.env();
    let cw = aws_sdk_cloudwatch::Client::new(&sb.aws_config(&env).await);
    let out = cw
        .describe_alarms()
        .alarm_name_prefix(format!("shoal/{}/sandbox/", sb.project))
        .send()
        .await
        .expect("DescribeAlarms");
    out.metric_alarms()
        .iter()
        .map(|a| (a.alarm_name().unwrap_or_default().to_string(), a.clone()))
        .collect()
}

fn json(out: &std::process::Output) -> Value {
    assert_ok(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// `(kind, name)` of a plan's list, alarms only.
fn alarm_items(plan: &Value, list: &str) -> Vec<String> {
    plan[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "alarm")
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn alarms_are_created_changed_and_pruned_with_the_deploy_and_status_shows_their_states() {
    let sb = Sandbox::new();
    // The sandbox environment is the last section of shoal.toml.
    let toml = std::fs::read_to_string(sb.root().join("shoal.toml")).expect("shoal.toml");
    sb.fixture.write(
        "shoal.toml",
        &format!("{toml}alarm_topic_arn = \"{SNS}\"\n"),
    );
    let name = format!("al-{}", &sb.project[3..sb.project.len().min(11)]);
    let topic = format!("{}-in", sb.project);
    let manifest = |extra: &str| {
        format!(
            "kind = \"worker\"\n[kafka]\ngroup = \"{name}\"\ntopics = [\"{topic}\"]\n\
             [[topic]]\nname = \"{topic}\"\npartitions = 2\nreplication = 1\n\
             [[topic]]\nname = \"{topic}.dlq\"\npartitions = 1\nreplication = 1\n\
             [scaling]\nmin = 1\nmax = 2\n{extra}"
        )
    };
    sb.payload_consumer(&name, &manifest("max_lag_seconds = 30\n"), "one");
    let prefix = format!("shoal/{}/sandbox/{name}/", sb.project);
    let full = |a: &str| format!("{prefix}{a}");

    // Create: four alarms, planned and applied with the deploy.
    let v = json(&sb.shoal(&[
        "deploy",
        "--env",
        "sandbox",
        "--timeout",
        "30s",
        "-o",
        "json",
    ]));
    let mut created = alarm_items(&v["plan"], "create");
    created.sort();
    assert_eq!(
        created,
        ["below-desired", "dlq", "lag", "no-lag-data"].map(full),
        "{v}"
    );
    let live = alarms(&sb).await;
    assert_eq!(live.len(), 4, "{live:#?}");
    let lag = &live[&full("lag")];
    assert_eq!(lag.threshold(), Some(30.0));
    assert_eq!(lag.evaluation_periods(), Some(5));
    assert_eq!(lag.alarm_actions(), [SNS]);
    assert_eq!(lag.ok_actions(), [SNS]);
    let stat = lag.metrics()[0].metric_stat().expect("a metric");
    let metric = stat.metric().expect("metric");
    assert_eq!(metric.namespace(), Some("Shoal"));
    assert_eq!(metric.metric_name(), Some("ConsumerLagSeconds"));
    let no_data = &live[&full("no-lag-data")];
    assert_eq!(no_data.treat_missing_data(), Some("breaching"));
    let below = &live[&full("below-desired")];
    let namespaces: Vec<&str> = below
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat()?.metric()?.namespace())
        .collect();
    assert_eq!(namespaces, ["ECS/ContainerInsights"; 2]);
    let dlq = &live[&full("dlq")];
    assert!(dlq
        .metrics()
        .iter()
        .any(|q| q.expression() == Some("DIFF(m1)")));

    // A second run plans nothing for them.
    let plan = json(&sb.shoal(&["plan", "--env", "sandbox", "-o", "json"]));
    for list in ["create", "change", "delete"] {
        assert!(alarm_items(&plan, list).is_empty(), "{list}: {plan}");
    }

    // Status shows CloudWatch's states.
    let env = sb.env();
    let cw = aws_sdk_cloudwatch::Client::new(&sb.aws_config(&env).await);
    cw.set_alarm_state()
        .alarm_name(full("lag"))
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("lag 95s for 5 minutes")
        .send()
        .await
        .expect("SetAlarmState");
    let status = json(&sb.shoal(&["status", "--env", "sandbox", "-o", "json"]));
    let row = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|r| r["consumer"] == name.as_str())
        .unwrap_or_else(|| panic!("{status}"));
    let states: BTreeMap<&str, &str> = row["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .map(|a| {
            (
                a["alarm"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states.len(), 4, "{row}");
    assert_eq!(states["lag"], "ALARM", "{row}");
    assert_eq!(states["dlq"], "OK", "{row}");
    let out = sb.shoal(&["status", "--env", "sandbox"]);
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("lag ALARM"), "{shown}");
    assert!(shown.contains("lag 95s for 5 minutes"), "{shown}");

    // Change: a new threshold and duration; the DLQ alarm is no longer wanted, and only
    // `--prune` deletes it.
    sb.payload_consumer(
        &name,
        &manifest("max_lag_seconds = 45\n[alarms]\nlag_minutes = 3\ndlq = false\n"),
        "one",
    );
    let plan = json(&sb.shoal(&["plan", "--env", "sandbox", "-o", "json"]));
    assert_eq!(alarm_items(&plan, "change"), [full("lag")], "{plan}");
    assert_eq!(alarm_items(&plan, "delete"), [full("dlq")], "{plan}");
    let change = plan["change"]
        .as_array()
        .expect("change")
        .iter()
        .find(|i| i["kind"] == "alarm")
        .expect("the lag alarm");
    let paths: Vec<&str> = change["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.contains(&"threshold"), "{change}");
    assert!(paths.contains(&"evaluationPeriods"), "{change}");
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s"]));
    let live = alarms(&sb).await;
    assert_eq!(live[&full("lag")].threshold(), Some(45.0));
    assert_eq!(live[&full("lag")].evaluation_periods(), Some(3));
    assert!(live.contains_key(&full("dlq")), "kept without --prune");
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s", "--prune"]));
    let live = alarms(&sb).await;
    assert!(!live.contains_key(&full("dlq")), "{live:#?}");
    assert_eq!(live.len(), 3);
    let plan = json(&sb.shoal(&["plan", "--env", "sandbox", "-o", "json"]));
    for list in ["create", "change", "delete"] {
        assert!(alarm_items(&plan, list).is_empty(), "{list}: {plan}");
    }

    // A removed consumer's alarms go with its service, with --prune.
    let other = format!("{name}-x");
    sb.payload_consumer(&other, "kind = \"worker\"\n", "x");
    std::fs::remove_dir_all(sb.root().join("consumers").join(&name)).expect("rm");
    let plan = json(&sb.shoal(&["plan", "--env", "sandbox", "-o", "json"]));
    let mut deleted = alarm_items(&plan, "delete");
    deleted.sort();
    assert_eq!(
        deleted,
        ["below-desired", "lag", "no-lag-data"].map(full),
        "{plan}"
    );
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s", "--prune"]));
    assert!(alarms(&sb).await.is_empty());
}

/// alarm → (state, reason) of the first row of a docker `status -o json`.
fn states(status: &Value) -> BTreeMap<String, (String, String)> {
    status["services"][0]["alarms"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"))
        .iter()
        .map(|a| {
            (
                a["alarm"].as_str().unwrap_or("").to_string(),
                (
                    a["state"].as_str().unwrap_or("").to_string(),
                    a["reason"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// On docker, `status` judges the alarms' conditions itself: a group at the end offsets is
/// OK; a backlog that nothing consumes is over `max_lag_seconds`; a stopped container is
/// below desired.
#[tokio::test(flavor = "multi_thread")]
async fn docker_status_judges_lag_and_running_counts_from_its_own_reads() {
    let l = Local::new();
    let topic = format!("{}-al", l.project);
    let group = format!("{}-group", l.project);
    l.scaled_worker(&topic, &group, 1, 2);
    assert_ok(&l.deploy());
    let bootstrap = l.bootstrap();
    crate::lag::backlog(&bootstrap, &topic, 2, 20, &group, &[Some(20); 2]).await;

    let s = states(&l.status());
    assert_eq!(s.len(), 3, "no DLQ declared: {s:?}");
    assert_eq!(s["lag"].0, "OK", "{s:?}");
    assert_eq!(s["no-lag-data"].0, "OK", "{s:?}");
    assert_eq!(s["below-desired"].0, "OK", "{s:?}");

    // 40 more messages, committed nowhere past 20: lag that nothing consumes.
    crate::lag::produce(&bootstrap, &topic, 2, 20).await;
    let ran = l.running();
    docker(&["stop", "-t", "1", &ran[0].0]);
    let out = l.shoal(&["status", "--env", "local"]);
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("lag ALARM"), "{shown}");
    assert!(shown.contains("below-desired ALARM"), "{shown}");
    let s = states(&l.status());
    assert_eq!(s["lag"].0, "ALARM", "{s:?}");
    assert!(s["lag"].1.contains("40 messages behind"), "{s:?}");
    assert_eq!(s["below-desired"].0, "ALARM", "{s:?}");
    assert!(s["below-desired"].1.contains("0 of 1"), "{s:?}");
}

/// On docker, a consumer whose `[alarms]` name a dead-letter topic: `status` shows `dlq` in
/// ALARM when messages reach that topic between its two reads, and OK when none do (the
/// messages already on it are not growth).
#[tokio::test(flavor = "multi_thread")]
async fn docker_status_fires_the_dlq_alarm_when_the_dead_letter_topic_grows() {
    let l = Local::new();
    let topic = format!("{}-dq", l.project);
    let dlq = format!("{topic}.dlq");
    let group = format!("{}-group", l.project);
    l.scaled_worker(&topic, &group, 1, 1);
    let path = l.root().join("consumers/worker/consumer.toml");
    let manifest = std::fs::read_to_string(&path).expect("the worker's manifest");
    l.fixture.write(
        "consumers/worker/consumer.toml",
        &format!("{manifest}[alarms]\ndlq_topic = \"{dlq}\"\n"),
    );
    let bootstrap = l.bootstrap();
    crate::lag::backlog(&bootstrap, &topic, 1, 5, &group, &[Some(5)]).await;
    crate::lag::backlog(&bootstrap, &dlq, 1, 3, &group, &[]).await;
    assert_ok(&l.deploy());

    let s = states(&l.status());
    assert_eq!(s.len(), 4, "{s:?}");
    assert_eq!(
        s["dlq"],
        ("OK".into(), format!("{dlq} did not grow")),
        "{s:?}"
    );

    // A message reaches the DLQ every 100 ms while status reads it.
    let writer = {
        let (bootstrap, dlq) = (bootstrap.clone(), dlq.clone());
        tokio::spawn(async move {
            loop {
                crate::lag::produce(&bootstrap, &dlq, 1, 1).await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let out = l.shoal(&["status", "--env", "local"]);
    let json = l.status();
    writer.abort();
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("dlq ALARM"), "{shown}");
    assert!(shown.contains(&format!("{dlq} grew by")), "{shown}");
    let s = states(&json);
    assert_eq!(s["dlq"].0, "ALARM", "{s:?}");
    for ok in ["lag", "no-lag-data", "below-desired"] {
        assert_eq!(s[ok].0, "OK", "{ok}: {s:?}");
    }

    // A write the abort caught in flight lands within this second, before the next reads.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let s = states(&l.status());
    assert_eq!(s["dlq"].0, "OK", "nothing written meanwhile: {s:?}");
}
