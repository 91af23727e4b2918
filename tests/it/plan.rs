//! The plan model, printed for people and as JSON, for a fleet where nothing exists yet.

use shoal::discover;
use shoal::manifest::Project;
use shoal::plan::{self, Live};

use crate::support::{ecs_desired, Fixture, API, WORKER};

fn desired_for(env_name: &str) -> (Vec<plan::Resource>, String) {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    f.consumer("web", API);
    let tags = ["orders", "web"]
        .map(|c| (c.to_string(), "0123456789abcdef".to_string()))
        .into();
    ecs_desired(f.root(), env_name, &tags)
}

fn plan_for(env_name: &str) -> (plan::Plan, String) {
    let (desired, project) = desired_for(env_name);
    (plan::diff(&desired, &Live::default()), project)
}

#[test]
fn nothing_exists_yet_on_ecs_text_snapshot() {
    let (p, _) = plan_for("sandbox");
    let text = plan::print_text(&p, "Plan for project demo in environment sandbox");
    insta::assert_snapshot!(anstream::adapter::strip_str(&text).to_string());
}

#[test]
fn nothing_exists_yet_on_ecs_json_snapshot() {
    let (p, project) = plan_for("sandbox");
    insta::assert_json_snapshot!(plan::to_json(&p, &project, "sandbox"));
}

#[test]
fn nothing_exists_yet_counts_every_resource_as_a_create() {
    let (p, _) = plan_for("sandbox");
    let kinds: Vec<&str> = p.create.iter().map(|i| i.kind.as_str()).collect();
    // One shared topic; per consumer a repository, a log group, a task definition and a
    // service; the worker also has scaling settings.
    assert_eq!(kinds.iter().filter(|k| **k == "topic").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "ecr-repository").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "task-definition").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "service").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "scaling").count(), 1);
    assert!(p.change.is_empty() && p.delete.is_empty());
}

#[test]
fn a_plan_against_itself_has_no_changes() {
    let (desired, _) = desired_for("sandbox");
    let mut live = Live::default();
    for r in &desired {
        live.insert(r.clone());
    }
    let p = plan::diff(&desired, &live);
    assert!(p.is_empty());
    assert_eq!(p.unchanged, desired.len());
    assert!(plan::print_text(&p, "Plan").contains("No changes."));
}

#[test]
fn dashboard_body_snapshot() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    f.consumer("web", API);
    let project = Project::load(f.root()).expect("valid");
    let env = project.environment("sandbox").expect("valid env");
    let fleet = discover::discover(f.root()).expect("valid fleet");
    insta::assert_json_snapshot!(shoal::platform::ecs::dashboard::body(
        &project.name,
        &env,
        &fleet
    ));
}
