//! Task-definition rendering: snapshots, determinism, secrets, overrides and template errors.

use shoal::discover;
use shoal::manifest::Project;
use shoal::render::{self, RenderError, Renderer, Target};

use crate::support::{Fixture, API, WORKER};

const TAG: &str = "0123456789abcdef";

fn render_with(
    f: &Fixture,
    renderer: &Renderer,
    name: &str,
    env: &str,
) -> Result<String, RenderError> {
    let project = Project::load(f.root()).expect("valid project");
    let env = project
        .environment(env)
        .unwrap_or_else(|p| panic!("environment {env}: {p}"));
    let fleet = discover::discover(f.root()).expect("valid fleet");
    let consumer = fleet.get(name).expect("consumer exists");
    let target = Target {
        project: &project.name,
        env: &env,
        bootstrap: env.kafka.static_bootstrap(),
    };
    let image = shoal::plan::image_uri(&env, &project.name, name, TAG);
    renderer
        .render(&target, consumer, &image)
        .map(|v| render::to_pretty(&v))
}

fn fleet() -> Fixture {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    f.consumer("web", API);
    f
}

#[test]
fn worker_task_definition_snapshot() {
    let f = fleet();
    insta::assert_snapshot!(
        render_with(&f, &Renderer::embedded(), "orders", "sandbox").expect("renders")
    );
}

#[test]
fn api_task_definition_snapshot() {
    let f = fleet();
    insta::assert_snapshot!(
        render_with(&f, &Renderer::embedded(), "web", "sandbox").expect("renders")
    );
}

#[test]
fn rendering_is_deterministic_whatever_the_key_order() {
    let a = fleet();
    let b = Fixture::standard();
    // The same manifest with its tables and keys in another order.
    b.consumer(
        "orders",
        "[scaling]\nmax_lag_seconds = 20\nmax = 6\nmin = 1\n[[topic]]\nconfig = { \"cleanup.policy\" = \"delete\", \"retention.ms\" = \"86400000\" }\nreplication = 3\npartitions = 6\nname = \"orders\"\n[kafka]\ntopics = [\"orders\"]\ngroup = \"orders-worker\"\n[secrets]\nAPI_TOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/demo/token\"\nDB_PASSWORD = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse-AbCdEf\"\n[env]\nBATCH_SIZE = \"500\"\n",
    );
    let text =
        std::fs::read_to_string(b.root().join("consumers/orders/consumer.toml")).expect("read");
    b.write(
        "consumers/orders/consumer.toml",
        &format!("memory = 1024\ncpu = 512\nkind = \"worker\"\n{text}"),
    );
    let r = Renderer::embedded();
    let first = render_with(&a, &r, "orders", "sandbox").expect("renders");
    assert_eq!(
        first,
        render_with(&a, &r, "orders", "sandbox").expect("renders")
    );
    assert_eq!(
        first,
        render_with(&b, &r, "orders", "sandbox").expect("renders")
    );
}

#[test]
fn secrets_are_references_never_values() {
    let f = fleet();
    let text = render_with(&f, &Renderer::embedded(), "orders", "sandbox").expect("renders");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let c = &v["containerDefinitions"][0];
    let env_names: Vec<&str> = c["environment"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!env_names.contains(&"DB_PASSWORD"));
    assert_eq!(c["secrets"][1]["name"], "DB_PASSWORD");
    assert_eq!(
        c["secrets"][1]["valueFrom"],
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse-AbCdEf"
    );
}

#[test]
fn logs_use_awslogs_with_the_environment_prefix() {
    let f = fleet();
    let text = render_with(&f, &Renderer::embedded(), "orders", "sandbox").expect("renders");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let log = &v["containerDefinitions"][0]["logConfiguration"];
    assert_eq!(log["logDriver"], "awslogs");
    assert_eq!(log["options"]["awslogs-group"], "/demo/sandbox/orders");
}

#[test]
fn a_project_template_overrides_the_built_in_one() {
    let f = fleet();
    f.write(
        "templates/task-definition.json.j2",
        "{\"family\": {{ family | tojson }}, \"containerDefinitions\": [{\"name\": {{ container_name | tojson }}, \"image\": {{ image | tojson }}, \"stopTimeout\": 120}]}",
    );
    let r = Renderer::for_project(f.root()).expect("loads");
    assert_eq!(r.origin(), "templates/task-definition.json.j2");
    let text = render_with(&f, &r, "orders", "sandbox").expect("renders");
    assert!(text.contains("\"stopTimeout\": 120"));
}

#[test]
fn a_template_syntax_error_names_the_file_and_line() {
    let f = fleet();
    f.write(
        "templates/task-definition.json.j2",
        "{\n  \"family\": {{ family | tojson }\n}\n",
    );
    let r = Renderer::for_project(f.root()).expect("loads");
    let err = render_with(&f, &r, "orders", "sandbox").expect_err("bad template");
    let msg = err.to_string();
    assert!(
        msg.starts_with("templates/task-definition.json.j2: line 2"),
        "{msg}"
    );
}

#[test]
fn an_undefined_template_variable_is_an_error() {
    let f = fleet();
    f.write(
        "templates/task-definition.json.j2",
        "{\"family\": \"{{ famly }}\"}",
    );
    let r = Renderer::for_project(f.root()).expect("loads");
    let err = render_with(&f, &r, "orders", "sandbox").expect_err("undefined");
    assert!(err.to_string().contains("undefined"), "{err}");
}

#[test]
fn a_template_that_renders_invalid_json_shows_the_spot() {
    let f = fleet();
    f.write(
        "templates/task-definition.json.j2",
        "{\n\"family\": {{ family | tojson }},\n\"containerDefinitions\": [}\n",
    );
    let r = Renderer::for_project(f.root()).expect("loads");
    let err = render_with(&f, &r, "orders", "sandbox").expect_err("not json");
    let msg = err.to_string();
    assert!(msg.contains("is not JSON"), "{msg}");
    assert!(
        msg.contains(">    3 | \"containerDefinitions\": [}"),
        "{msg}"
    );
}

/// On MSK, workloads get the auth mode's listener settings as `RDKAFKA_*` variables, and with
/// SCRAM the username and password as ECS secrets from the cluster's secret (JSON keys).
#[test]
fn msk_auth_reaches_the_workloads_as_librdkafka_settings() {
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_demo-AbCdEf";
    let cluster = "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc";
    let env = |name: &str, kafka: &str| {
        format!(
            r#"
[env.{name}]
platform = "ecs"
region = "eu-west-1"
account_id = "123456789012"
cluster = "c"
subnets = ["subnet-0a"]
security_groups = ["sg-0a"]
execution_role_arn = "arn:aws:iam::123456789012:role/exec"
kafka = {kafka}
"#
        )
    };
    let f = Fixture::new(&format!(
        "project = \"demo\"\ndefault_env = \"scram\"\n{}{}",
        env(
            "scram",
            &format!(
                r#"{{ msk_cluster_arn = "{cluster}", auth = "scram", scram_secret_arn = "{secret}" }}"#
            )
        ),
        env(
            "iam",
            &format!(r#"{{ msk_cluster_arn = "{cluster}", auth = "iam" }}"#)
        ),
    ));
    f.consumer("orders", WORKER);
    let renderer = Renderer::embedded();
    let td: serde_json::Value =
        serde_json::from_str(&render_with(&f, &renderer, "orders", "scram").expect("renders"))
            .expect("JSON");
    let container = &td["containerDefinitions"][0];
    let value = |list: &str, name: &str, field: &str| {
        container[list]
            .as_array()
            .expect("list")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e[field].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        value("environment", "RDKAFKA_SECURITY_PROTOCOL", "value").as_deref(),
        Some("sasl_ssl")
    );
    assert_eq!(
        value("environment", "RDKAFKA_SASL_MECHANISM", "value").as_deref(),
        Some("SCRAM-SHA-512")
    );
    assert_eq!(
        value("secrets", "RDKAFKA_SASL_PASSWORD", "valueFrom"),
        Some(format!("{secret}:password::"))
    );
    assert_eq!(
        value("secrets", "RDKAFKA_SASL_USERNAME", "valueFrom"),
        Some(format!("{secret}:username::"))
    );
    assert_eq!(
        value("environment", "RDKAFKA_SASL_PASSWORD", "value"),
        None,
        "the password is never a plain value"
    );

    let td: serde_json::Value =
        serde_json::from_str(&render_with(&f, &renderer, "orders", "iam").expect("renders"))
            .expect("JSON");
    let env = td["containerDefinitions"][0]["environment"].to_string();
    for expected in [
        r#"{"name":"KAFKA_AUTH","value":"iam"}"#,
        r#"{"name":"RDKAFKA_SASL_MECHANISM","value":"OAUTHBEARER"}"#,
        r#"{"name":"AWS_REGION","value":"eu-west-1"}"#,
    ] {
        assert!(env.contains(expected), "{expected} in {env}");
    }
}
