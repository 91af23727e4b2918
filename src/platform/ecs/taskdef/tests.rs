//! The conversions and the normal form, on the shapes the template renders and ECS returns.

use super::*;
use serde_json::json;

/// The shape shoal's built-in template renders for an API consumer.
fn rendered() -> Value {
    json!({
        "family": "demo-api",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "taskRoleArn": "arn:aws:iam::123456789012:role/task",
        "containerDefinitions": [{
            "name": "api",
            "image": "127.0.0.1:5000/demo/api:abc",
            "essential": true,
            "command": ["serve"],
            "environment": [{"name": "PORT", "value": "8080"}, {"name": "A", "value": "1"}],
            "secrets": [
                {"name": "Z", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/z"},
                {"name": "B", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/b"}
            ],
            "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
            "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 15},
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/demo/api", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "api"}}
        }],
        "tags": [{"key": "shoal:project", "value": "demo"}, {"key": "shoal:consumer", "value": "api"}]
    })
}

fn problems(v: &Value) -> Vec<String> {
    match from_json(v) {
        Ok(_) => panic!("expected a conversion error for {v}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn round_trip_through_the_sdk_types_is_lossless_after_normalize() {
    let v = rendered();
    let (td, tags) = from_json(&v).expect("converts");
    let back = to_json(&td, &tags);
    assert_eq!(normalize(&back), normalize(&v));
    // Nothing but the defaults the SDK type adds (container cpu 0, revision 0) differs.
    assert_eq!(back["containerDefinitions"][0]["cpu"], json!(0));
    assert_eq!(back["revision"], json!(0));
}

#[test]
fn every_supported_field_round_trips() {
    let v = json!({
        "family": "all",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE", "EC2"],
        "cpu": "1024", "memory": "2048",
        "ephemeralStorage": {"sizeInGiB": 30},
        "volumes": [{"name": "scratch"}, {"name": "h", "host": {"sourcePath": "/tmp"}}],
        "containerDefinitions": [{
            "name": "a", "image": "x", "essential": false, "cpu": 128, "memory": 256,
            "memoryReservation": 128, "command": ["run"], "entryPoint": ["/bin/sh", "-c"],
            "workingDirectory": "/w", "user": "1000",
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "udp", "name": "web", "appProtocol": "http"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {"a": "b"}, "secretOptions": [{"name": "k", "valueFrom": "arn:x"}]},
            "dockerLabels": {"l": "v"}, "stopTimeout": 30, "readonlyRootFilesystem": true,
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
        }]
    });
    let (td, tags) = from_json(&v).expect("converts");
    assert_eq!(to_json(&td, &tags).get("tags"), None);
    assert_eq!(normalize(&to_json(&td, &tags)), normalize(&v));
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let mut v = rendered();
    v["containerDefinitions"][0]["fooBar"] = json!(1);
    v["pidMode"] = json!("task");
    v["containerDefinitions"][0]["portMappings"][0]["hostIp"] = json!("0.0.0.0");
    let e = from_json(&v).expect_err("unsupported keys");
    assert_eq!(e.family.as_deref(), Some("demo-api"));
    let got: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "pidMode is not supported by shoal's RegisterTaskDefinition conversion",
            "containerDefinitions[0].fooBar is not supported by shoal's RegisterTaskDefinition conversion",
            "containerDefinitions[0].portMappings[0].hostIp is not supported by shoal's RegisterTaskDefinition conversion",
        ]
    );
    assert!(e
        .to_string()
        .starts_with("task definition demo-api: 3 problems: pidMode is"));
}

#[test]
fn one_problem_reads_as_one_line() {
    let mut v = rendered();
    v["containerDefinitions"][0]["fooBar"] = json!(1);
    let e = from_json(&v).expect_err("unsupported key");
    assert_eq!(
        e.to_string(),
        "task definition demo-api: containerDefinitions[0].fooBar is not supported by \
         shoal's RegisterTaskDefinition conversion"
    );
    // Through AwsError, which register returns, the text is the same.
    assert_eq!(
        AwsError::Request(Box::new(e.clone())).to_string(),
        e.to_string()
    );
}

#[test]
fn wrong_types_are_named() {
    let mut v = rendered();
    v["cpu"] = json!(256);
    v["containerDefinitions"][0]["essential"] = json!("yes");
    v["containerDefinitions"][0]["portMappings"][0]["containerPort"] = json!("8080");
    v["containerDefinitions"][0]["environment"][1]["value"] = json!(1);
    v["containerDefinitions"][0]["command"] = json!("serve");
    v["containerDefinitions"][0]["logConfiguration"]["options"]["x"] = json!(false);
    v["containerDefinitions"][0]["healthCheck"]["retries"] = json!(3.5);
    v["tags"] = json!({"k": "v"});
    assert_eq!(
        problems(&v),
        [
            "cpu must be a string, not the number 256",
            "containerDefinitions[0].essential must be true or false, not the string \"yes\"",
            "containerDefinitions[0].command must be a list, not the string \"serve\"",
            "containerDefinitions[0].environment[1].value must be a string, not the number 1",
            "containerDefinitions[0].portMappings[0].containerPort must be an integer, not the string \"8080\"",
            "containerDefinitions[0].healthCheck.retries must be an integer, not the number 3.5",
            "containerDefinitions[0].logConfiguration.options.x must be a string, not false",
            "tags must be a list, not an object",
        ]
    );
}

#[test]
fn missing_and_unknown_values_are_named() {
    let v = json!({
        "networkMode": "awsvpcx",
        "containerDefinitions": [{
            "image": "x",
            "secrets": [{"name": "S"}],
            "logConfiguration": {"logDriver": "stdout"},
            "ulimits": [{"name": "nofile", "softLimit": 1}]
        }]
    });
    let e = from_json(&v).expect_err("problems");
    assert_eq!(e.family, None);
    let got: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "family is required",
            "networkMode is \"awsvpcx\", which is not one of awsvpc, bridge, host, none",
            "containerDefinitions[0].name is required",
            "containerDefinitions[0].secrets[0].valueFrom is required",
            "containerDefinitions[0].logConfiguration.logDriver is \"stdout\", which is not one of awsfirelens, awslogs, fluentd, gelf, journald, json-file, splunk, syslog",
            "containerDefinitions[0].ulimits[0].hardLimit is required",
        ]
    );
    assert!(e.to_string().starts_with("task definition: 6 problems: "));
}

#[test]
fn not_an_object_is_named() {
    assert_eq!(
        problems(&json!([])),
        ["(top level) must be an object, not a list"]
    );
    assert_eq!(
        problems(&json!({"family": "f", "containerDefinitions": [1]})),
        ["containerDefinitions[0] must be an object, not the number 1"]
    );
}

#[test]
fn nulls_are_absent() {
    let mut v = rendered();
    v["taskRoleArn"] = Value::Null;
    v["containerDefinitions"][0]["command"] = Value::Null;
    let (td, _) = from_json(&v).expect("converts");
    assert_eq!(td.task_role_arn, None);
    assert_eq!(
        td.container_definitions
            .as_ref()
            .and_then(|c| c.first())
            .and_then(|c| c.command.clone()),
        None
    );
}

#[test]
fn normalize_drops_server_fields_and_defaults() {
    let described = json!({
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:3",
        "revision": 3, "status": "ACTIVE", "compatibilities": ["EC2", "FARGATE"],
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
        "registeredAt": "2024-01-01T00:00:00Z", "registeredBy": "arn:aws:iam::1:root",
        "family": "f", "networkMode": "awsvpc",
        "placementConstraints": [], "volumes": [],
        "containerDefinitions": [{
            "name": "a", "image": "x", "cpu": 0, "essential": true,
            "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [],
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
            "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3},
            "logConfiguration": {"logDriver": "awslogs", "options": {}, "secretOptions": []}
        }]
    });
    let rendered = json!({
        "family": "f", "networkMode": "awsvpc",
        "containerDefinitions": [{
            "name": "a", "image": "x",
            "portMappings": [{"containerPort": 80}],
            "healthCheck": {"command": ["CMD", "true"]},
            "logConfiguration": {"logDriver": "awslogs"}
        }]
    });
    assert_eq!(normalize(&described), normalize(&rendered));
    // What a template writes is already normal: nothing in it is a default to drop.
    assert_eq!(normalize(&rendered), rendered);
}

#[test]
fn normalize_keeps_what_differs_from_the_defaults() {
    let v = json!({
        "family": "f",
        "containerDefinitions": [{
            "name": "a", "cpu": 256, "essential": false,
            "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "udp"}],
            "healthCheck": {"command": ["CMD", "true"], "interval": 10}
        }]
    });
    assert_eq!(normalize(&v), v);
}

#[test]
fn normalize_bridge_mode_host_ports() {
    // Bridge (the default mode): hostPort 0 is dynamic, the same as leaving it out, and a
    // hostPort equal to containerPort is a fixed mapping, kept.
    let v = json!({"family": "f", "networkMode": "bridge", "containerDefinitions": [{
        "name": "a", "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81, "hostPort": 81}]
    }]});
    assert_eq!(
        normalize(&v),
        json!({"family": "f", "containerDefinitions": [{
            "name": "a", "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 81}]
        }]})
    );
}

#[test]
fn normalize_sorts_tags_environment_and_secrets() {
    let n = normalize(&rendered());
    assert_eq!(n["tags"][0]["key"], json!("shoal:consumer"));
    assert_eq!(
        n["containerDefinitions"][0]["environment"][0]["name"],
        json!("A")
    );
    assert_eq!(
        n["containerDefinitions"][0]["secrets"][0]["name"],
        json!("B")
    );
    // Same content in another order compares equal.
    let mut shuffled = rendered();
    if let Some(Value::Array(tags)) = shuffled.get_mut("tags") {
        tags.reverse();
    }
    assert_eq!(normalize(&shuffled), n);
    // And normalize is idempotent.
    assert_eq!(normalize(&n), n);
}

#[test]
fn unmanaged_live_fields_show_as_differences() {
    let (mut td, tags) = from_json(&rendered()).expect("converts");
    if let Some(c) = td
        .container_definitions
        .as_mut()
        .and_then(|c| c.first_mut())
    {
        c.privileged = Some(true);
        c.mount_points = Some(vec![]);
    }
    td.pid_mode = Some(aws_sdk_ecs::types::PidMode::Task);
    let live = normalize(&to_json(&td, &tags));
    assert_eq!(live["pidMode"], json!(UNMANAGED));
    assert_eq!(
        live["containerDefinitions"][0]["privileged"],
        json!(UNMANAGED)
    );
    // An empty list is not a setting.
    assert_eq!(live["containerDefinitions"][0].get("mountPoints"), None);
    assert_ne!(live, normalize(&rendered()));
}
