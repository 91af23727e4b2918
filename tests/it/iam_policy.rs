//! docs/iam/deploy-policy.json, the deploy role's minimal policy, is valid JSON in IAM's shape
//! and allows every AWS call shoal makes, and nothing else.
//!
//! The calls come from shoal itself: the interceptor that counts AWS calls logs each one
//! (`RUST_LOG=shoal::aws::call=debug`), and the test runs the commands a deploy job runs
//! against the local stack (deploy, plan, status, rollback, dashboard) and reads them. Calls
//! that cannot happen here are listed with the reason: MSK's control plane and the SCRAM
//! secret (moto has neither; tests/it/msk.rs replays recorded answers), the autoscaler's
//! metrics (its own role, docs/autoscaler.md), and ECR's registry API (pushes here go to the
//! local registry). A source scan finds every SDK operation shoal's code names, so a new call
//! fails this test until the policy and this table know it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{assert_ok, repo_root, text, Sandbox};

/// Every SDK operation in shoal's source, as its IAM action.
const OPERATIONS: &[(&str, &str)] = &[
    ("batch_get_image", "ecr:BatchGetImage"),
    ("create_log_group", "logs:CreateLogGroup"),
    ("create_repository", "ecr:CreateRepository"),
    ("create_service", "ecs:CreateService"),
    ("delete_alarms", "cloudwatch:DeleteAlarms"),
    ("delete_service", "ecs:DeleteService"),
    ("describe_alarms", "cloudwatch:DescribeAlarms"),
    ("describe_cluster_v2", "kafka:DescribeClusterV2"),
    ("describe_log_groups", "logs:DescribeLogGroups"),
    ("describe_repositories", "ecr:DescribeRepositories"),
    ("describe_services", "ecs:DescribeServices"),
    ("describe_task_definition", "ecs:DescribeTaskDefinition"),
    ("get_authorization_token", "ecr:GetAuthorizationToken"),
    ("get_bootstrap_brokers", "kafka:GetBootstrapBrokers"),
    ("get_lifecycle_policy", "ecr:GetLifecyclePolicy"),
    ("get_secret_value", "secretsmanager:GetSecretValue"),
    ("list_services", "ecs:ListServices"),
    ("list_task_definitions", "ecs:ListTaskDefinitions"),
    ("put_dashboard", "cloudwatch:PutDashboard"),
    (
        "put_image_scanning_configuration",
        "ecr:PutImageScanningConfiguration",
    ),
    ("put_image_tag_mutability", "ecr:PutImageTagMutability"),
    ("put_lifecycle_policy", "ecr:PutLifecyclePolicy"),
    ("put_metric_alarm", "cloudwatch:PutMetricAlarm"),
    ("put_metric_data", "cloudwatch:PutMetricData"),
    ("put_retention_policy", "logs:PutRetentionPolicy"),
    ("register_task_definition", "ecs:RegisterTaskDefinition"),
    ("tag_resource", "ecs:TagResource"),
    ("update_service", "ecs:UpdateService"),
];

/// Calls the commands below cannot make on the local stack, and why.
const NOT_HERE: &[(&str, &str)] = &[
    (
        "kafka:DescribeClusterV2",
        "moto has no MSK answers the SDK parses",
    ),
    (
        "kafka:GetBootstrapBrokers",
        "moto has no GetBootstrapBrokers",
    ),
    (
        "secretsmanager:GetSecretValue",
        "only with auth = \"scram\" on MSK",
    ),
    (
        "cloudwatch:PutMetricData",
        "the autoscaler's, under its own role (docs/autoscaler.md)",
    ),
    ("ecs:DeleteService", "only with --prune"),
    ("cloudwatch:DeleteAlarms", "only with --prune"),
    (
        "ecr:BatchGetImage",
        "only when images go to ECR itself; here they go to the local registry",
    ),
    (
        "ecr:PutImageScanningConfiguration",
        "only when a repository drifted (tests/it/ecr_settings.rs)",
    ),
    (
        "ecr:PutImageTagMutability",
        "only when a repository drifted (tests/it/ecr_settings.rs)",
    ),
];

/// What a push needs of ECR's registry API (not SDK calls: the registry protocol, signed
/// with GetAuthorizationToken's credentials). Here pushes go to the local registry.
const REGISTRY_PUSH: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];

/// What the task definitions and the IAM-authenticated admin client need besides.
const NOT_API_CALLS: &[&str] = &[
    "iam:PassRole",
    "kafka-cluster:AlterTopic",
    "kafka-cluster:AlterTopicDynamicConfiguration",
    "kafka-cluster:Connect",
    "kafka-cluster:CreateTopic",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:DescribeTopicDynamicConfiguration",
];

fn policy() -> Value {
    let path = repo_root().join("docs/iam/deploy-policy.json");
    let text = std::fs::read_to_string(&path).expect("docs/iam/deploy-policy.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The actions the policy allows, after checking its shape.
fn allowed() -> BTreeSet<String> {
    let p = policy();
    assert_eq!(p["Version"], "2012-10-17");
    let statements = p["Statement"].as_array().expect("Statement is a list");
    let mut out = BTreeSet::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow", "{s}");
        assert!(s["Resource"].is_string() || s["Resource"].is_array(), "{s}");
        let actions = match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().expect("an action").to_string())
                .collect(),
            other => panic!("Action is {other}"),
        };
        for a in actions {
            assert!(!a.contains('*'), "{a}: no wildcard actions");
            out.insert(a);
        }
    }
    out
}

/// The SDK operations named in shoal's source (tests left out).
fn operations_in_source() -> BTreeSet<String> {
    let call = regex::Regex::new(
        r"\.\s*((?:batch|create|delete|describe|get|list|put|register|update|tag|untag|deregister)_[a-z0-9_]+)\(\)",
    )
    .expect("regex");
    let mut out = BTreeSet::new();
    for entry in walkdir::WalkDir::new(repo_root().join("src"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
    {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for c in call.captures_iter(code) {
            out.insert(c[1].to_string());
        }
    }
    out
}

fn action_of(op: &str) -> Option<&'static str> {
    OPERATIONS.iter().find(|(o, _)| *o == op).map(|(_, a)| *a)
}

/// `service="ECS" operation="DescribeServices"` lines → `ecs:DescribeServices`.
fn logged_calls(stderr: &str) -> BTreeSet<String> {
    let line =
        regex::Regex::new(r#"AWS call service="([^"]+)" operation="([^"]+)""#).expect("regex");
    line.captures_iter(stderr)
        .map(|c| {
            let prefix = match &c[1] {
                "ECS" => "ecs",
                "ECR" => "ecr",
                "CloudWatch Logs" => "logs",
                "CloudWatch" => "cloudwatch",
                "Kafka" => "kafka",
                "Secrets Manager" => "secretsmanager",
                other => panic!("a call to {other}: name its IAM prefix here"),
            };
            format!("{prefix}:{}", &c[2])
        })
        .collect()
}

#[test]
fn the_policy_names_every_operation_in_the_source_and_nothing_more() {
    let allowed = allowed();
    let mut named = BTreeSet::new();
    for op in operations_in_source() {
        let action = action_of(&op).unwrap_or_else(|| {
            panic!("src/ calls {op}(): add its IAM action to docs/iam/deploy-policy.json (or the autoscaler's policy) and to OPERATIONS in this test")
        });
        named.insert(action.to_string());
    }
    for action in &named {
        let autoscaler_only = *action == "cloudwatch:PutMetricData";
        assert!(
            autoscaler_only || allowed.contains(action),
            "docs/iam/deploy-policy.json does not allow {action}"
        );
    }
    for action in &allowed {
        assert!(
            named.contains(action)
                || REGISTRY_PUSH.contains(&action.as_str())
                || NOT_API_CALLS.contains(&action.as_str()),
            "the policy allows {action}, which shoal never needs: remove it"
        );
    }
}

/// The calls shoal makes on the local stack, as its own call log reports them, are all
/// allowed; together with the ones it cannot make here they are every operation named.
#[test]
fn every_call_a_deploy_job_makes_is_allowed() {
    let sb = Sandbox::new();
    let name = format!("iam-{}", &sb.project[3..sb.project.len().min(11)]);
    let manifest =
        "kind = \"worker\"\n[kafka]\ngroup = \"g\"\ntopics = [\"t\"]\n[scaling]\nmin = 1\nmax = 2\n";
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .current_dir(sb.root())
            .envs(&sb.vars)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "shoal::aws::call=debug")
            .output()
            .expect("runs shoal");
        assert_ok(&out);
        logged_calls(&text(&out.stderr))
    };
    let mut calls = BTreeSet::new();
    sb.payload_consumer(&name, manifest, "one");
    calls.extend(run(&["deploy", "--env", "sandbox", "--timeout", "30s"]));
    sb.payload_consumer(&name, manifest, "two");
    calls.extend(run(&["deploy", "--env", "sandbox", "--timeout", "30s"]));
    calls.extend(run(&["plan", "--env", "sandbox"]));
    calls.extend(run(&["status", "--env", "sandbox"]));
    calls.extend(run(&[
        "rollback",
        &name,
        "--env",
        "sandbox",
        "--timeout",
        "30s",
    ]));
    calls.extend(run(&["dashboard", "--env", "sandbox"]));

    let allowed = allowed();
    for call in &calls {
        assert!(
            allowed.contains(call),
            "shoal called {call}, which docs/iam/deploy-policy.json does not allow"
        );
    }
    let named: BTreeSet<&str> = OPERATIONS.iter().map(|(_, a)| *a).collect();
    let not_here: BTreeSet<&str> = NOT_HERE.iter().map(|(a, _)| *a).collect();
    for action in &named {
        assert!(
            calls.contains(*action) || not_here.contains(action),
            "{action} was not called; run the command that calls it here, or say in NOT_HERE why it cannot be"
        );
    }
    for (action, why) in NOT_HERE {
        assert!(
            !calls.contains(*action),
            "{action} is listed as not callable here ({why}) but was called"
        );
    }
}
