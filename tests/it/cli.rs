//! The binary as a user runs it: help, exit codes, errors on broken input, JSON output.

use std::process::Command;

use crate::support::{repo_root, shoal, text, Fixture, WORKER};

#[test]
fn help_teaches_with_examples() {
    let out = shoal(&repo_root(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn render_help_shows_check_and_write() {
    let out = shoal(&repo_root(), &["render", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("--check <DIR>") && help.contains("--write <DIR>"),
        "{help}"
    );
}

#[test]
fn a_broken_manifest_exits_3_naming_file_line_and_key() {
    let f = Fixture::standard();
    f.consumer("c", "kind = \"worker\"\ncpu = 300\n");
    let out = shoal(f.root(), &["validate"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("consumers/c/consumer.toml:2: `cpu`: 300 is not a Fargate CPU size"),
        "{err}"
    );
    assert!(err.contains("help: use 256, 512"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn errors_are_json_when_asked() {
    let f = Fixture::standard();
    f.consumer("c", "kind = \"worker\"\ncpu = 300\n");
    let out = shoal(f.root(), &["validate", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["problems"][0]["key"], "cpu");
    assert_eq!(v["problems"][0]["line"], 2);
}

#[test]
fn github_actions_get_error_annotations() {
    let f = Fixture::standard();
    f.consumer("c", "kind = \"worker\"\ncpu = 300\n");
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("validate")
        .current_dir(f.root())
        .env("GITHUB_ACTIONS", "true")
        .output()
        .expect("runs");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "::error file=consumers/c/consumer.toml,line=2::cpu: 300 is not a Fargate CPU size"
        ),
        "{stdout}"
    );
}

#[test]
fn no_project_file_is_a_usage_error_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = shoal(dir.path(), &["discover"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("run shoal inside a project or pass --project-dir DIR"));
}

#[test]
fn unknown_consumer_and_unknown_environment() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    let out = shoal(f.root(), &["render", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no consumer named \"nope\"; consumers: orders"));
    let out = shoal(f.root(), &["plan", "--env", "staging"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("pick one of: local, sandbox"));
}

#[test]
fn a_bad_flag_exits_2() {
    let out = shoal(&repo_root(), &["plan", "--output", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn discover_verbose_names_skipped_folders() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    f.write("consumers/scratch/notes.txt", "x");
    let out = shoal(f.root(), &["discover", "-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("skipped: no consumer.toml"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("consumers/scratch"));
    assert!(text(&out.stdout).starts_with("CONSUMER"));
}

#[test]
fn discover_json_lists_tags() {
    let out = shoal(&repo_root(), &["discover", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let tag = v["consumers"][0]["tag"].as_str().expect("tag");
    assert_eq!(tag.len(), 16);
}

#[test]
fn render_write_then_check_then_drift() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    let dir = f.root().join("rendered");
    let dir_s = dir.to_string_lossy().into_owned();
    let out = shoal(f.root(), &["render", "-e", "sandbox", "--write", &dir_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = shoal(f.root(), &["render", "-e", "sandbox", "--check", &dir_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 1 task definitions match"));
    f.write(
        "consumers/orders/consumer.toml",
        &WORKER.replace("\"500\"", "\"900\""),
    );
    let out = shoal(f.root(), &["render", "-e", "sandbox", "--check", &dir_s]);
    assert_eq!(out.status.code(), Some(4));
    let diff = text(&out.stdout);
    assert!(diff.contains("-          \"value\": \"500\""), "{diff}");
    assert!(diff.contains("+          \"value\": \"900\""), "{diff}");
    assert!(text(&out.stderr).contains("--write DIR"));
}

#[test]
fn plan_json_on_this_repository() {
    let out = shoal(&repo_root(), &["plan", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["environment"], "local");
    // The docker platform reads its live state (the project's containers) since it deploys.
    assert_eq!(v["live_state"], "read");
    assert_eq!(v["platform"], "docker");
    assert!(v["summary"]["create"].is_u64(), "{v}");
    // ECR repositories and log groups are the ECS wing's resources.
    for list in ["create", "change", "delete"] {
        for item in v[list].as_array().expect("a list") {
            assert!(
                !["ecr-repository", "log-group"].contains(&item["kind"].as_str().unwrap_or("")),
                "{item}"
            );
        }
    }
}

#[test]
fn completions_for_bash() {
    let out = shoal(&repo_root(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("_shoal"));
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["render"])
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let status = child.wait().expect("wait");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0));
}
