//! No credential in what shoal prints or stores: plans (text and JSON), renderings, the
//! deploy's job summary, errors and logs. The local environment keeps its plain password
//! (and ECS one listed in `allow_plain`), and its output is redacted all the same.

use std::collections::BTreeMap;

use shoal::plan::{self, Live};

use crate::support::{ecs_desired, shoal, text, Fixture};

/// A project whose environments both carry the local stack's password in a plain URL
/// (sandbox opts out explicitly, as the shipped one does), and a worker with a plain token.
fn fixture() -> Fixture {
    let f = Fixture::new(
        r#"project = "demo"
default_env = "local"

[env.local]
platform = "docker"
vars = { DATABASE_URL = "postgres://shoal:hunter2@127.0.0.1:5432/shoal" }
kafka = { bootstrap = ["127.0.0.1:9092"] }

[env.sandbox]
platform = "ecs"
account_id = "123456789012"
registry = "127.0.0.1:5000"
subnets = ["subnet-0a"]
security_groups = ["sg-0a"]
execution_role_arn = "arn:aws:iam::123456789012:role/demo-exec"
log_group_prefix = "/demo/sandbox"
vars = { DATABASE_URL = "postgres://shoal:hunter2@127.0.0.1:5432/shoal" }
allow_plain = ["DATABASE_URL"]
secrets = { API_KEYS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo-api-keys-AbCdEf" }
kafka = { bootstrap = ["127.0.0.1:9092"] }
"#,
    );
    f.consumer(
        "orders",
        "kind = \"worker\"\nrequired = [\"DATABASE_URL\"]\nallow_plain = [\"SESSION_TOKEN\"]\n[env]\nSESSION_TOKEN = \"tok-987\"\nBATCH_SIZE = \"500\"\n",
    );
    f
}

const LEAKS: &[&str] = &["hunter2", "tok-987"];

fn assert_no_leak(what: &str, shown: &str) {
    for secret in LEAKS {
        assert!(!shown.contains(secret), "{what} shows {secret}:\n{shown}");
    }
}

/// The ECS plan of the fixture, against nothing live, redacted as `plan` and `deploy` print it.
fn sandbox_plan() -> plan::Plan {
    let f = fixture();
    let tags = BTreeMap::from([("orders".to_string(), "0123456789abcdef".to_string())]);
    let (desired, _) = ecs_desired(f.root(), "sandbox", &tags);
    plan::diff(&desired, &Live::default()).redacted()
}

#[test]
fn a_redacted_plan_text_snapshot() {
    let shown = plan::print_text(
        &sandbox_plan(),
        "Plan for project demo in environment sandbox",
    );
    let shown = anstream::adapter::strip_str(&shown).to_string();
    assert_no_leak("the plan", &shown);
    insta::assert_snapshot!(shown);
}

#[test]
fn a_redacted_plan_json_snapshot() {
    let shown = plan::to_json(&sandbox_plan(), "demo", "sandbox");
    assert_no_leak("the JSON plan", &shown.to_string());
    insta::assert_json_snapshot!(shown);
}

/// The job summary a deploy writes lists the plan's resources and its steps' details.
#[test]
fn the_job_summary_is_redacted() {
    let mut summary = shoal::deploy::Summary::default();
    summary.steps.push(shoal::deploy::Step {
        name: "migrate",
        ok: false,
        seconds: 0.5,
        detail: "cannot reach postgres://shoal:hunter2@127.0.0.1:5432/shoal".into(),
    });
    let markdown = summary.markdown("demo", "sandbox", &sandbox_plan());
    let shown = shoal::manifest::credential::redact_text(&markdown);
    assert_no_leak("the job summary", &shown);
    assert!(shown.contains("postgres://shoal:***@127.0.0.1"), "{shown}");
}

/// The binary: `render` (printed and written), `plan` on the local platform (text and JSON,
/// reading the project's containers from Docker), and a problem that quotes a value.
#[test]
fn the_binary_prints_no_credential() {
    let f = fixture();
    for env in ["local", "sandbox"] {
        let out = shoal(f.root(), &["render", "orders", "--env", env]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert_no_leak("render", &shown);
        assert!(
            shown.contains("\"value\": \"postgres://shoal:***@127.0.0.1:5432/shoal\""),
            "{shown}"
        );
        assert!(shown.contains("\"value\": \"***\""), "{shown}");
    }
    let dir = f.root().join("rendered");
    let out = shoal(
        f.root(),
        &[
            "render",
            "--env",
            "local",
            "--write",
            dir.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.join("orders.json")).expect("written");
    assert_no_leak("render --write", &written);

    let out = shoal(f.root(), &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert_no_leak("plan", &shown);
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    let out = shoal(f.root(), &["plan", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_leak("plan -o json", &text(&out.stdout));

    // A secret given as a value is quoted back in the problem, without its password.
    let toml = std::fs::read_to_string(f.root().join("shoal.toml")).expect("read");
    std::fs::write(
        f.root().join("shoal.toml"),
        toml.replace(
            "secrets = { API_KEYS = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:demo-api-keys-AbCdEf\" }",
            "secrets = { API_KEYS = \"https://keys:hunter2@vault.example\" }",
        ),
    )
    .expect("write");
    for args in [&["validate"][..], &["validate", "-o", "json"][..]] {
        let out = shoal(f.root(), args);
        assert_eq!(out.status.code(), Some(3));
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_no_leak("a problem", &shown);
        assert!(shown.contains("https://keys:***@vault.example"), "{shown}");
    }
}
