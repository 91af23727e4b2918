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

use serde_json::Value;
use shoal::aws::{self, AwsError};
use shoal::discover::Fleet;
use shoal::manifest::{Consumer, Environment, Project};
use shoal::plan::{field_diff, image_uri};
use shoal::platform::ecs::taskdef;
use shoal::render::{Renderer, Target};

use crate::support::{self, API, WORKER};

/// A fixture project with a worker (with secrets) and an API consumer, its sandbox
/// environment resolved from `.stack/env`, and an ECS client on moto.
struct Sandbox {
    sb: support::Sandbox,
    project: Project,
    fleet: Fleet,
    env: Environment,
    client: aws_sdk_ecs::Client,
}

async fn sandbox() -> Sandbox {
    let sb = support::Sandbox::new();
    sb.fixture.consumer("orders-worker", WORKER);
    sb.fixture.consumer("orders-api", API);
    let env = sb.env();
    assert_eq!(
        env.endpoint_url.as_deref(),
        Some(sb.var("AWS_ENDPOINT_URL").as_str()),
        "the environment points at the stack's moto"
    );
    let client = aws::ecs(&sb.aws_config(&env).await);
    Sandbox {
        project: sb.load(),
        fleet: sb.fleet(),
        env,
        client,
        sb,
    }
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
            assert!(has_content(&want[key]), "the rendering has {key}");
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
            assert!(has_content(&want[key]), "the rendering of {name} has {key}");
            assert_eq!(got[key], want[key], "{name}: {key}");
        }
    }
}

/// Whether a value carries something: not null, and not an empty list or object.
fn has_content(v: &Value) -> bool {
    v.as_array().is_none_or(|a| !a.is_empty())
        && v.as_object().is_none_or(|o| !o.is_empty())
        && !v.is_null()
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
    s.sb.fixture.write(
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
    let renderer = Renderer::for_project(s.sb.fixture.root()).expect("the project's template");
    let rendered = s.render_with(&renderer, s.consumer("orders-api"));
    let family = family(&rendered).to_string();

    let err = taskdef::register(&s.client, &rendered)
        .await
        .expect_err("linuxParameters is not converted");
    assert!(
        matches!(&err, AwsError::Request(e) if e.downcast_ref::<taskdef::ConvertError>().is_some()),
        "{err:?}"
    );
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
