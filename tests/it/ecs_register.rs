//! Task definitions on moto, the local stack's AWS APIs: render a fixture project's consumers,
//! register them, read them back and compare the normalised forms, as `shoal deploy` does to
//! decide whether a new revision is needed. Needs `scripts/stack up`; without the stack these
//! tests fail (with what to do), they do not skip.
//!
//! Credentials: the SDK's default chain would read `AWS_ACCESS_KEY_ID` from the process
//! environment, but tests run in parallel threads and must not change it. So each test builds
//! its configuration through shoal's own factory, `shoal::aws::loader` (region, endpoint_url
//! and profile from the environment, exactly as `shoal` does), and adds the stack's static
//! test credentials from `.stack/env` to it.
//!
//! Every run uses its own project name (from the fixture's temporary folder), so task families
//! never collide with an earlier run against the same moto.

use std::collections::BTreeMap;

use aws_sdk_ecs::config::Credentials;
use serde_json::Value;
use shoal::aws::{self, taskdef, AwsError};
use shoal::discover::{self, Fleet};
use shoal::manifest::{Consumer, Environment, Project};
use shoal::plan::{field_diff, image_uri};
use shoal::render::{Renderer, Target};

use crate::support::{self, Fixture, API, WORKER};

/// The sandbox environment of the local stack; `{project}` is replaced per run.
const SHOAL_TOML: &str = r#"project = "{project}"
default_env = "sandbox"

[env.sandbox]
platform = "ecs"
region = "${AWS_REGION:-us-east-1}"
account_id = "123456789012"
endpoint_url = "${AWS_ENDPOINT_URL}"
registry = "${SHOAL_REGISTRY:-127.0.0.1:5000}"
cluster = "${SHOAL_ECS_CLUSTER:-shoal-sandbox}"
subnets = ["${SHOAL_SUBNETS}"]
security_groups = ["${SHOAL_SECURITY_GROUPS}"]
execution_role_arn = "arn:aws:iam::123456789012:role/it-exec"
task_role_arn = "arn:aws:iam::123456789012:role/it-task"
log_group_prefix = "/it/sandbox"
kafka = { bootstrap = ["${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"] }
"#;

/// A fixture project with a worker (with secrets) and an API consumer, its sandbox
/// environment resolved from `.stack/env`, and an ECS client on moto.
struct Sandbox {
    fixture: Fixture,
    project: Project,
    fleet: Fleet,
    env: Environment,
    client: aws_sdk_ecs::Client,
}

async fn sandbox() -> Sandbox {
    let stack = support::stack_env();
    let fixture = Fixture::new("");
    let suffix: String = fixture
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    fixture.write(
        "shoal.toml",
        &SHOAL_TOML.replace("{project}", &format!("it-{suffix}")),
    );
    fixture.consumer("orders-worker", WORKER);
    fixture.consumer("orders-api", API);
    let project = Project::load(fixture.root()).unwrap_or_else(|p| panic!("shoal.toml: {p}"));
    let fleet = discover::discover(fixture.root()).unwrap_or_else(|p| panic!("manifests: {p}"));
    let lookup = |k: &str| stack.get(k).cloned();
    let env = project
        .environment_with("sandbox", &lookup)
        .unwrap_or_else(|p| panic!("the sandbox environment from .stack/env: {p}"));
    assert_eq!(
        env.endpoint_url.as_deref(),
        stack.get("AWS_ENDPOINT_URL").map(String::as_str),
        "the environment points at the stack's moto"
    );
    let client = client(&env, &stack).await;
    Sandbox {
        fixture,
        project,
        fleet,
        env,
        client,
    }
}

async fn client(env: &Environment, stack: &BTreeMap<String, String>) -> aws_sdk_ecs::Client {
    let var = |k: &str| {
        stack
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!(".stack/env has no {k}; run `scripts/stack up`"))
    };
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID"),
        var("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "shoal-stack",
    );
    let cfg = aws::loader(env)
        .credentials_provider(credentials)
        .load()
        .await;
    aws::ecs(&cfg)
}

impl Sandbox {
    fn consumer(&self, name: &str) -> &Consumer {
        self.fleet
            .get(name)
            .unwrap_or_else(|| panic!("the fixture has {name}"))
    }

    fn render_with(&self, renderer: &Renderer, consumer: &Consumer) -> Value {
        let target = Target {
            project: &self.project.name,
            env: &self.env,
            bootstrap: self.env.kafka.static_bootstrap(),
        };
        let image = image_uri(
            &self.env,
            &self.project.name,
            &consumer.name,
            "0123456789abcdef",
        );
        renderer
            .render(&target, consumer, &image)
            .unwrap_or_else(|e| panic!("render {}: {e}", consumer.name))
    }

    fn render(&self, consumer: &Consumer) -> Value {
        self.render_with(&Renderer::embedded(), consumer)
    }

    async fn register(&self, td: &Value) -> taskdef::Registered {
        taskdef::register(&self.client, td)
            .await
            .unwrap_or_else(|e| panic!("register: {e}"))
    }

    async fn describe(&self, family_or_arn: &str) -> Value {
        taskdef::describe(&self.client, family_or_arn)
            .await
            .unwrap_or_else(|e| panic!("describe {family_or_arn}: {e}"))
            .unwrap_or_else(|| {
                panic!("{family_or_arn} was just registered, moto says it is unknown")
            })
    }
}

fn family(td: &Value) -> &str {
    td.get("family")
        .and_then(Value::as_str)
        .expect("the rendered task definition has a family")
}

/// The field-level differences between two task definitions after normalising both, one per
/// line; empty when they are the same.
fn differences(rendered: &Value, live: &Value) -> String {
    field_diff(
        Some(&taskdef::normalize(live)),
        Some(&taskdef::normalize(rendered)),
    )
    .iter()
    .map(|d| {
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), Value::to_string);
        format!(
            "  {}: live {} / rendered {}",
            d.path,
            show(&d.before),
            show(&d.after)
        )
    })
    .collect::<Vec<_>>()
    .join("\n")
}

fn assert_same(rendered: &Value, live: &Value) {
    let diff = differences(rendered, live);
    assert!(
        diff.is_empty(),
        "{} differs between the rendered and the registered task definition:\n{diff}\n\
         rendered: {rendered:#}\nlive: {live:#}",
        family(rendered)
    );
}

#[tokio::test]
async fn rendered_task_definition_registers_on_moto_and_reads_back_identically() {
    let s = sandbox().await;
    for name in ["orders-worker", "orders-api"] {
        let rendered = s.render(s.consumer(name));
        let family = family(&rendered);
        let registered = s.register(&rendered).await;
        assert_eq!(registered.family, family);
        assert_eq!(registered.revision, 1, "a new family starts at revision 1");
        assert!(
            registered
                .arn
                .ends_with(&format!(":task-definition/{family}:1")),
            "{}",
            registered.arn
        );

        let live = s.describe(family).await;
        assert_same(&rendered, &live);
        // The server-filled fields are there, and normalize is what hides them.
        assert_eq!(
            live["taskDefinitionArn"],
            Value::from(registered.arn.as_str())
        );
        assert_eq!(live["revision"], Value::from(1));
        assert_eq!(live["status"], Value::from("ACTIVE"));
        // What matters made the round trip, rather than being normalised away on both sides.
        let (want, got) = (taskdef::normalize(&rendered), taskdef::normalize(&live));
        for key in ["tags", "executionRoleArn", "taskRoleArn", "cpu", "memory"] {
            assert!(!is_empty(&want[key]), "the rendering has {key}");
            assert_eq!(got[key], want[key], "{key}");
        }
        let (want, got) = (
            &want["containerDefinitions"][0],
            &got["containerDefinitions"][0],
        );
        assert_eq!(got["name"], Value::from(name));
        let mut keys = vec!["image", "environment", "logConfiguration"];
        if name == "orders-worker" {
            keys.push("secrets");
            assert_eq!(got["secrets"].as_array().map(Vec::len), Some(2), "{got:#}");
        } else {
            keys.extend(["portMappings", "healthCheck"]);
        }
        for key in keys {
            assert!(!is_empty(&want[key]), "the rendering of {name} has {key}");
            assert_eq!(got[key], want[key], "{name}: {key}");
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[tokio::test]
async fn registering_the_same_definition_twice_gives_a_new_revision_but_equal_content() {
    let s = sandbox().await;
    let rendered = s.render(s.consumer("orders-worker"));
    let family = family(&rendered);
    let first = s.register(&rendered).await;
    let second = s.register(&rendered).await;
    assert_eq!((first.revision, second.revision), (1, 2));
    assert_ne!(first.arn, second.arn);

    // The family names the latest active revision; an ARN names one revision.
    let latest = s.describe(family).await;
    let older = s.describe(&first.arn).await;
    assert_eq!(latest["revision"], Value::from(2));
    assert_eq!(older["revision"], Value::from(1));
    assert_ne!(latest, older, "server-filled fields differ");
    assert_eq!(taskdef::normalize(&latest), taskdef::normalize(&older));

    // What deploy decides with: the rendered definition equals the active revision, so no
    // registration is needed; a changed one shows the field that changed.
    assert_same(&rendered, &latest);
    let mut changed = rendered.clone();
    changed["containerDefinitions"][0]["environment"]
        .as_array_mut()
        .expect("environment list")
        .push(serde_json::json!({"name": "NEW_VAR", "value": "1"}));
    let diff = differences(&changed, &latest);
    assert_eq!(
        diff,
        "  containerDefinitions[orders-worker].environment[NEW_VAR]: live (absent) / rendered \"1\""
    );
}

#[tokio::test]
async fn describe_of_unknown_family_is_none() {
    let s = sandbox().await;
    let family = format!("{}-never-registered", s.project.name);
    let found = taskdef::describe(&s.client, &family)
        .await
        .unwrap_or_else(|e| panic!("describe {family}: {e}"));
    assert_eq!(found, None);
    let found = taskdef::describe(&s.client, &format!("{family}:7"))
        .await
        .unwrap_or_else(|e| panic!("describe {family}:7: {e}"));
    assert_eq!(found, None);
}

/// A project template with a key the conversion does not cover: register refuses it, naming
/// the key, before anything is sent (moto never hears of the family).
#[tokio::test]
async fn unsupported_key_in_a_custom_template_is_named_before_any_call() {
    let s = sandbox().await;
    s.fixture.write(
        "templates/task-definition.json.j2",
        r#"{
  "family": {{ family | tojson }},
  "requiresCompatibilities": ["FARGATE"],
  "networkMode": "awsvpc",
  "cpu": {{ consumer.cpu | string | tojson }},
  "memory": {{ consumer.memory | string | tojson }},
  "containerDefinitions": [
    {
      "name": {{ container_name | tojson }},
      "image": {{ image | tojson }},
      "linuxParameters": {"initProcessEnabled": true}
    }
  ]
}
"#,
    );
    let renderer = Renderer::for_project(s.fixture.root()).expect("the project's template");
    let rendered = s.render_with(&renderer, s.consumer("orders-api"));
    let family = family(&rendered).to_string();

    let err = taskdef::register(&s.client, &rendered)
        .await
        .expect_err("linuxParameters is not converted");
    assert!(matches!(err, AwsError::TaskDefinition(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "task definition {family}: containerDefinitions[0].linuxParameters is not \
             supported by shoal's RegisterTaskDefinition conversion"
        )
    );
    let live = taskdef::describe(&s.client, &family)
        .await
        .unwrap_or_else(|e| panic!("describe {family}: {e}"));
    assert_eq!(live, None, "nothing was registered");
}
