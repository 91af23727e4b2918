//! Rollout handling on REPLAYED DescribeServices answers. moto cannot make a rollout fail,
//! so these answers are recorded in the shape real ECS gives (a circuit-breaker rollback, a
//! failed deployment, a rollout that never ends) and replayed to the real SDK client through
//! `StaticReplayClient`. No AWS service is called.

use std::time::Duration;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime_api::http::{Request, Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};

use shoal::platform::ecs::wait_rollout;
use shoal::platform::{RolloutError, Wait};

const OLD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/shop-orders:7";
const NEW: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/shop-orders:8";

fn client(answers: Vec<Value>) -> aws_sdk_ecs::Client {
    let events = answers
        .into_iter()
        .map(|body| {
            ReplayEvent::new(
                Request::new(SdkBody::empty()),
                Response::new(
                    StatusCode::try_from(200).expect("status"),
                    SdkBody::from(body.to_string()),
                ),
            )
        })
        .collect();
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .http_client(StaticReplayClient::new(events))
        .build();
    aws_sdk_ecs::Client::from_conf(conf)
}

fn deployment(id: &str, status: &str, td: &str, state: &str, reason: &str) -> Value {
    json!({
        "id": id, "status": status, "taskDefinition": td,
        "desiredCount": 2, "runningCount": if state == "COMPLETED" { 2 } else { 0 },
        "pendingCount": 0, "failedTasks": if state == "FAILED" { 4 } else { 0 },
        "rolloutState": state, "rolloutStateReason": reason,
        "createdAt": 1.7e9, "updatedAt": 1.7e9
    })
}

fn answer(service_td: &str, deployments: Vec<Value>, events: &[&str]) -> Value {
    json!({
        "services": [{
            "serviceName": "orders",
            "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/shop/orders",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/shop",
            "status": "ACTIVE",
            "desiredCount": 2, "runningCount": 2, "pendingCount": 0,
            "taskDefinition": service_td,
            "deployments": deployments,
            "events": events.iter().enumerate().map(|(i, m)| json!({
                "id": format!("e{i}"), "createdAt": 1.7e9, "message": m
            })).collect::<Vec<_>>()
        }],
        "failures": []
    })
}

/// The answer while the new revision rolls out and the old one still serves.
fn rolling(events: &[&str]) -> Value {
    answer(
        NEW,
        vec![
            deployment("ecs-svc/2", "PRIMARY", NEW, "IN_PROGRESS", "in progress"),
            deployment("ecs-svc/1", "ACTIVE", OLD, "COMPLETED", "completed"),
        ],
        events,
    )
}

const FAST: Wait = Wait {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(1),
};

#[tokio::test]
async fn replay_rollout_that_completes() {
    let c = client(vec![
        rolling(&[]),
        answer(
            NEW,
            vec![deployment(
                "ecs-svc/2",
                "PRIMARY",
                NEW,
                "COMPLETED",
                "completed",
            )],
            &["(service orders) has reached a steady state."],
        ),
    ]);
    wait_rollout(&c, "shop", "orders", NEW, FAST)
        .await
        .expect("completes");
}

#[tokio::test]
async fn replay_circuit_breaker_rollback_is_a_failure_with_events() {
    let c = client(vec![
        rolling(&[]),
        answer(
            OLD,
            vec![
                deployment(
                    "ecs-svc/3",
                    "PRIMARY",
                    OLD,
                    "IN_PROGRESS",
                    "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.",
                ),
                deployment(
                    "ecs-svc/2",
                    "ACTIVE",
                    NEW,
                    "FAILED",
                    "ECS deployment circuit breaker: tasks failed to start.",
                ),
            ],
            &[
                "(service orders) rolling back to deployment ecs-svc/1.",
                "(service orders) deployment ecs-svc/2 deployment failed: tasks failed to start.",
            ],
        ),
    ]);
    let err = wait_rollout(&c, "shop", "orders", NEW, FAST)
        .await
        .expect_err("a rollback is not a success");
    let text = err.to_string();
    assert!(matches!(err, RolloutError::Failed { .. }), "{text}");
    assert!(
        text.starts_with("service orders: the deployment of shop-orders:8 failed"),
        "{text}"
    );
    assert!(text.contains("tasks failed to start"), "{text}");
    assert!(
        text.contains("- (service orders) rolling back to deployment ecs-svc/1."),
        "{text}"
    );
}

#[tokio::test]
async fn replay_completed_rollback_is_not_mistaken_for_success() {
    // The answer after a rollback finished: the primary deployment is COMPLETED, but it runs
    // the old revision and ours is gone from the list. Tools that only check "primary is
    // COMPLETED" report success here.
    let c = client(vec![answer(
        OLD,
        vec![deployment(
            "ecs-svc/3",
            "PRIMARY",
            OLD,
            "COMPLETED",
            "ECS deployment ecs-svc/3 completed.",
        )],
        &["(service orders) has reached a steady state."],
    )]);
    let err = wait_rollout(&c, "shop", "orders", NEW, FAST)
        .await
        .expect_err("rolled back");
    let text = err.to_string();
    assert!(
        text.contains("ECS rolled back to shop-orders:7 instead of running shop-orders:8"),
        "{text}"
    );
}

#[tokio::test]
async fn replay_failed_deployment_without_rollback() {
    let c = client(vec![answer(
        NEW,
        vec![deployment(
            "ecs-svc/2",
            "PRIMARY",
            NEW,
            "FAILED",
            "ECS deployment circuit breaker: tasks failed to start.",
        )],
        &["(service orders) deployment ecs-svc/2 deployment failed: tasks failed to start."],
    )]);
    let err = wait_rollout(&c, "shop", "orders", NEW, FAST)
        .await
        .expect_err("failed");
    assert!(err.to_string().contains("tasks failed to start"), "{err}");
}

#[tokio::test]
async fn replay_rollout_that_never_finishes_times_out() {
    let stuck = rolling(&["(service orders) has started 2 tasks."]);
    let c = client(vec![stuck.clone(), stuck.clone(), stuck]);
    let wait = Wait {
        timeout: Duration::from_millis(5),
        poll: Duration::from_millis(5),
    };
    let err = wait_rollout(&c, "shop", "orders", NEW, wait)
        .await
        .expect_err("times out");
    let text = err.to_string();
    assert!(matches!(err, RolloutError::TimedOut { .. }), "{text}");
    assert!(text.contains("0 of 2 tasks running"), "{text}");
    assert!(text.contains("has started 2 tasks"), "{text}");
}

#[tokio::test]
async fn replay_deleted_service_is_reported() {
    let c = client(vec![
        json!({"services": [], "failures": [{"arn": "orders", "reason": "MISSING"}]}),
    ]);
    let err = wait_rollout(&c, "shop", "orders", NEW, FAST)
        .await
        .expect_err("gone");
    assert!(matches!(err, RolloutError::Gone { .. }), "{err}");
}
