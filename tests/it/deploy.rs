//! `deploy` end to end on the local stack: moto for ECS, ECR and CloudWatch Logs, the
//! registry for images, the machine's Docker Engine for builds.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal::deploy::{DeployOptions, Inputs, Session, Summary};
use shoal::discover::context;
use shoal::image::Outcome;
use shoal::plan::{Kind, Plan};
use shoal::platform::ecs::{self, Clients};
use shoal::platform::Wait;
use shoal::render::Renderer;

use crate::support::{registry_tags, Sandbox};

const WORKER: &str = r#"kind = "worker"
cpu = 256
memory = 512

[kafka]
group = "g"
topics = ["t"]

[scaling]
min = 1
max = 4
"#;

const PLAIN: &str = "kind = \"worker\"\n";

struct Fleet {
    sb: Sandbox,
    /// Consumer names, unique to the run: moto's cluster is shared by every test.
    scaled: String,
    plain: String,
}

impl Fleet {
    fn new() -> Fleet {
        let sb = Sandbox::new();
        let id = &sb.project[3..sb.project.len().min(11)];
        let (scaled, plain) = (format!("s-{id}"), format!("p-{id}"));
        let f = Fleet { sb, scaled, plain };
        f.consumer(&f.scaled, WORKER, "one");
        f.consumer(&f.plain, PLAIN, "two");
        f
    }

    fn consumer(&self, name: &str, manifest: &str, payload: &str) {
        let fx = &self.sb.fixture;
        fx.write(&format!("consumers/{name}/consumer.toml"), manifest);
        fx.write(
            &format!("consumers/{name}/Dockerfile"),
            "FROM scratch\nCOPY payload.txt /payload.txt\n",
        );
        fx.write(&format!("consumers/{name}/payload.txt"), payload);
    }

    async fn clients(&self) -> Clients {
        Clients::from_config(&self.sb.aws_config(&self.sb.env()).await)
    }

    /// Plans, then applies; returns the plan and the summary.
    async fn deploy(&self, prune: bool) -> (Plan, Summary) {
        let env = self.sb.env();
        let fleet = self.sb.fleet();
        let hashes: BTreeMap<_, _> = fleet
            .consumers
            .iter()
            .map(|c| (c.name.clone(), context::hash(&c.build).expect("hash")))
            .collect();
        let renderer = Renderer::embedded();
        let session = Session::with_aws(&env, self.sb.aws_config(&env).await);
        let inputs = Inputs {
            root: self.sb.root(),
            project: &self.sb.project,
            env: &env,
            fleet: &fleet,
            renderer: &renderer,
            hashes: &hashes,
            bootstrap: session.workload_bootstrap().await.expect("bootstrap"),
            session: &session,
        };
        let clients = Clients::from_config(session.aws().await);
        let (plan, desired, live) = ecs::plan(&clients, &inputs).await.expect("plan");
        let options = DeployOptions {
            prune,
            jobs: 2,
            wait: Wait {
                timeout: Duration::from_secs(30),
                poll: Duration::from_millis(200),
            },
        };
        let summary = ecs::apply(&clients, &inputs, &plan, &desired, &live, &options)
            .await
            .unwrap_or_else(|(s, e)| panic!("deploy failed: {e}\n{}", s.text()));
        (plan, summary)
    }

    fn step<'s>(summary: &'s Summary, name: &str) -> &'s str {
        &summary
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name}"))
            .detail
    }

    async fn desired_count(&self, service: &str) -> Option<i32> {
        let clients = self.clients().await;
        let env = self.sb.env();
        ecs::describe(&clients.ecs, &env.cluster, &[service.to_string()])
            .await
            .expect("describe")
            .first()
            .map(|s| s.desired_count())
    }
}

fn count(plan: &Plan, kind: Kind) -> usize {
    plan.create.iter().filter(|i| i.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_deploy_creates_everything_and_the_second_changes_nothing() {
    let f = Fleet::new();
    let (plan, summary) = f.deploy(false).await;
    assert_eq!(count(&plan, Kind::EcrRepository), 2);
    assert_eq!(count(&plan, Kind::LogGroup), 2);
    assert_eq!(count(&plan, Kind::TaskDefinition), 2);
    assert_eq!(count(&plan, Kind::Service), 2);
    assert_eq!(count(&plan, Kind::Scaling), 1);
    assert!(plan.change.is_empty() && plan.delete.is_empty());
    assert!(summary
        .images
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Pushed { .. })));
    assert_eq!(Fleet::step(&summary, "services"), "2 created, 0 updated");
    assert_eq!(Fleet::step(&summary, "rollouts"), "2 completed");
    for (consumer, outcome) in &summary.images {
        let tags = registry_tags(&f.sb, &format!("{}/{consumer}", f.sb.project));
        assert_eq!(
            tags,
            vec![outcome.tag().to_string()],
            "{consumer} is in the registry"
        );
    }

    let (plan, summary) = f.deploy(false).await;
    assert!(plan.is_empty(), "second plan: {plan:#?}");
    assert!(shoal::plan::print_text(&plan, "").contains("No changes."));
    assert!(
        summary.images.is_empty(),
        "nothing built, pushed or looked up"
    );
    assert_eq!(Fleet::step(&summary, "images"), "nothing to build");
    assert_eq!(Fleet::step(&summary, "task definitions"), "0 registered");
    assert_eq!(Fleet::step(&summary, "services"), "0 created, 0 updated");
    assert_eq!(Fleet::step(&summary, "rollouts"), "0 completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_changed_byte_redeploys_that_consumer_only() {
    let f = Fleet::new();
    f.deploy(false).await;
    f.consumer(&f.plain, PLAIN, "twO");
    let (plan, summary) = f.deploy(false).await;
    let changed: Vec<(Kind, &str)> = plan
        .change
        .iter()
        .map(|i| (i.kind, i.name.as_str()))
        .collect();
    let family = format!("{}-{}", f.sb.project, f.plain);
    assert_eq!(changed, vec![(Kind::TaskDefinition, family.as_str())]);
    assert!(plan.change[0]
        .fields
        .iter()
        .any(|d| d.path.ends_with(".image")));
    assert!(plan.create.is_empty());
    let outcomes: BTreeMap<&str, &Outcome> = summary
        .images
        .iter()
        .map(|(c, o)| (c.as_str(), o))
        .collect();
    assert!(matches!(outcomes[f.plain.as_str()], Outcome::Pushed { .. }));
    assert!(
        !outcomes.contains_key(f.scaled.as_str()),
        "an unchanged consumer's image is not even looked up: {outcomes:?}"
    );
    assert_eq!(Fleet::step(&summary, "task definitions"), "1 registered");
    assert_eq!(Fleet::step(&summary, "services"), "0 created, 1 updated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_folder_is_a_delete_and_prune_deletes_it() {
    let f = Fleet::new();
    f.deploy(false).await;
    std::fs::remove_dir_all(f.sb.root().join("consumers").join(&f.plain)).expect("rm");
    let (plan, summary) = f.deploy(false).await;
    let deletes: Vec<(Kind, &str)> = plan
        .delete
        .iter()
        .map(|i| (i.kind, i.name.as_str()))
        .collect();
    assert_eq!(deletes, vec![(Kind::Service, f.plain.as_str())]);
    assert!(Fleet::step(&summary, "prune").contains("pass --prune"));
    assert!(
        f.desired_count(&f.plain).await.is_some(),
        "kept without --prune"
    );

    let (_, summary) = f.deploy(true).await;
    assert_eq!(Fleet::step(&summary, "prune"), "1 deleted");
    assert_eq!(
        f.desired_count(&f.plain).await,
        None,
        "deleted with --prune"
    );
    let (plan, _) = f.deploy(true).await;
    assert!(plan.is_empty(), "{plan:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desired_count_set_outside_shoal_survives_a_deploy() {
    let f = Fleet::new();
    f.deploy(false).await;
    let clients = f.clients().await;
    let cluster = f.sb.env().cluster;
    for (service, count) in [(&f.scaled, 3), (&f.plain, 5)] {
        ecs::set_desired_count(&clients.ecs, &cluster, service, count)
            .await
            .expect("scale");
    }
    // Change both images so that both services are updated.
    f.consumer(&f.scaled, WORKER, "one!");
    f.consumer(&f.plain, PLAIN, "two!");
    let (plan, summary) = f.deploy(false).await;
    assert!(
        plan.change.iter().all(|i| i.kind == Kind::TaskDefinition),
        "the counts are not a change: {plan:#?}"
    );
    assert_eq!(Fleet::step(&summary, "services"), "0 created, 2 updated");
    assert_eq!(f.desired_count(&f.scaled).await, Some(3));
    assert_eq!(f.desired_count(&f.plain).await, Some(5));

    // Above the manifest's max, the count is brought back within bounds.
    ecs::set_desired_count(&clients.ecs, &cluster, &f.scaled, 9)
        .await
        .expect("scale");
    let (plan, _) = f.deploy(false).await;
    let change = plan
        .change
        .iter()
        .find(|i| i.kind == Kind::Service)
        .expect("a service change");
    assert_eq!(change.fields[0].path, "desiredCount");
    assert_eq!(f.desired_count(&f.scaled).await, Some(4));
}

/// Runs the shoal binary in the sandbox project with the stack's variables.
fn shoal_cli(f: &Fleet, args: &[&str], summary: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .current_dir(f.sb.root())
        .envs(&f.sb.vars)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs shoal")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_a_job_summary_and_annotates_failures() {
    let f = Fleet::new();
    let summary = f.sb.root().join("summary.md");
    let out = shoal_cli(
        &f,
        &["deploy", "--env", "sandbox", "--timeout", "30s"],
        &summary,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let md = std::fs::read_to_string(&summary).expect("the job summary");
    assert!(md.contains("## shoal deploy: "), "{md}");
    assert!(md.contains("succeeded"), "{md}");
    assert!(
        md.contains(&format!("| create | service | `{}` |", f.plain)),
        "{md}"
    );
    assert!(md.contains("| images | ✅ |"), "{md}");

    // A Dockerfile that fails: exit 1, an ::error annotation, and a failed step in the summary.
    f.sb.fixture.write(
        &format!("consumers/{}/Dockerfile", f.plain),
        "FROM scratch\nCOPY missing-file /x\n",
    );
    std::fs::remove_file(&summary).expect("rm");
    let out = shoal_cli(&f, &["deploy", "--env", "sandbox"], &summary);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("::error::"), "{stdout}");
    assert!(
        stdout.contains(&f.plain),
        "the annotation names the consumer: {stdout}"
    );
    let md = std::fs::read_to_string(&summary).expect("the job summary");
    assert!(md.contains("failed"), "{md}");
    assert!(md.contains("| images | ❌ |"), "{md}");

    let out = shoal_cli(&f, &["status", "--env", "sandbox", "-o", "json"], &summary);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let names: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["consumer"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{v}");
    assert!(names.contains(&f.plain.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_returns_to_the_previous_revision_and_deploy_restores_it() {
    let f = Fleet::new();
    let summary = f.sb.root().join("summary.md");
    f.deploy(false).await;
    f.consumer(&f.plain, PLAIN, "second");
    f.deploy(false).await;
    let revision = |f: &Fleet| {
        let out = shoal_cli(f, &["status", "--env", "sandbox", "-o", "json"], &summary);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        v["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["consumer"] == f.plain.as_str())
            .and_then(|s| s["revision"].as_str())
            .map(str::to_string)
            .expect("the plain service")
    };
    let family = format!("{}-{}", f.sb.project, f.plain);
    assert_eq!(revision(&f), format!("{family}:2"));
    let out = shoal_cli(&f, &["rollback", &f.plain, "--env", "sandbox"], &summary);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("rolled back from {family}:2 to {family}:1")));
    assert_eq!(revision(&f), format!("{family}:1"));
    // The next deploy sees the service off the manifests' revision and puts it back.
    let (plan, _) = f.deploy(false).await;
    assert_eq!(plan.change.len(), 1, "{plan:#?}");
    assert_eq!(revision(&f), format!("{family}:3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_applies_declared_topics_before_the_services() {
    let f = Fleet::new();
    let topic = format!("{}-orders", f.sb.project);
    let manifest = format!(
        "kind = \"worker\"\n[kafka]\ngroup = \"g\"\ntopics = [\"{topic}\"]\n\
         [[topic]]\nname = \"{topic}\"\npartitions = 3\nreplication = 1\n\
         config = {{ \"retention.ms\" = \"3600000\" }}\n"
    );
    f.consumer(&f.plain, &manifest, "two");
    let (plan, summary) = f.deploy(false).await;
    assert!(
        plan.create
            .iter()
            .any(|i| i.kind == Kind::Topic && i.name == topic),
        "{plan:#?}"
    );
    let names: Vec<&str> = summary.steps.iter().map(|s| s.name).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).expect("step");
    assert!(at("topics") < at("services"), "{names:?}");
    let topics = Fleet::step(&summary, "topics");
    assert!(
        topics.starts_with("1 applied: ") && topics.contains(&topic),
        "each topic step shows in the summary: {topics}"
    );

    let (plan, summary) = f.deploy(false).await;
    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(Fleet::step(&summary, "topics"), "nothing to change");
}
