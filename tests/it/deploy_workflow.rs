//! The deploy job's `run:` steps, read from .github/workflows/deploy.yml and run as a runner
//! runs them (`bash -eo pipefail`, in a checkout of the repository, one after the other), against
//! the `sandbox` environment: moto, the registry and tansu. The job's variables come from the
//! local stack (.stack/env) instead of the repository's, and `SHOAL_ENV=sandbox` replaces the
//! job's `prod`. A step that is broken (a wrong path, a flag shoal no longer takes, a variable
//! the environment needs and the job does not pass) fails here, not on the first push.
//!
//! It builds shoal in release mode (unoptimised here, see below) and the repository's workload
//! images, so its first run on a machine is slow; the build is kept in
//! `${SHOAL_CACHE}/workflow-target`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::support::{repo_root, stack_env, text};

/// The deploy job's steps that have a `run:`, with their names.
fn run_steps(job: &Value) -> Vec<(String, String)> {
    job["steps"]
        .as_sequence()
        .expect("the deploy job has steps")
        .iter()
        .filter_map(|s| {
            let run = s["run"].as_str()?;
            let name = s["name"].as_str().unwrap_or(run).to_string();
            Some((name, run.to_string()))
        })
        .collect()
}

/// `${{ vars.X }}` and `${{ secrets.X }}` from the stack; any other expression cannot be
/// evaluated here and fails the test.
fn expand(value: &str, stack: &BTreeMap<String, String>) -> Option<String> {
    let re = regex::Regex::new(r"\$\{\{\s*(vars|secrets)\.([A-Za-z0-9_]+)\s*\}\}").expect("regex");
    let mut missing = false;
    let out = re
        .replace_all(value, |c: &regex::Captures<'_>| match stack.get(&c[2]) {
            Some(v) => v.clone(),
            None => {
                missing = true;
                String::new()
            }
        })
        .into_owned();
    assert!(
        !out.contains("${{"),
        "{value}: an expression the test cannot evaluate; use vars or secrets"
    );
    (!missing).then_some(out)
}

/// A checkout: the repository's tracked files, as actions/checkout gives them.
fn checkout(to: &Path) {
    let root = repo_root();
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    for rel in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = PathBuf::from(String::from_utf8_lossy(rel).into_owned());
        let from = root.join(&rel);
        if !from.exists() {
            continue;
        }
        let dest = to.join(&rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SHOAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/shoal")
        })
}

#[test]
fn the_deploy_jobs_run_steps_deploy_to_the_sandbox() {
    let stack = stack_env();
    let yml = std::fs::read_to_string(repo_root().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml");
    let yaml: Value = serde_yaml::from_str(&yml).expect("deploy.yml is YAML");
    let job = &yaml["jobs"]["deploy"];
    let steps = run_steps(job);
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Build shoal", "Validate", "Deploy"],
        "the steps changed: check this test still runs what matters"
    );

    // The job's environment, with the stack's values where the job reads a repository's.
    let mut env: BTreeMap<String, String> = stack.clone();
    for (k, v) in job["env"].as_mapping().expect("the job's env") {
        let (k, v) = (k.as_str().expect("a name"), v.as_str().unwrap_or_default());
        if let Some(v) = expand(v, &stack) {
            env.insert(k.to_string(), v);
        }
    }
    assert_eq!(env.get("SHOAL_ENV").map(String::as_str), Some("prod"));
    env.insert("SHOAL_ENV".into(), "sandbox".into());

    let dir = tempfile::tempdir().expect("temp dir");
    checkout(dir.path());
    let target = cache_dir().join("workflow-target");
    std::fs::create_dir_all(&target).expect("mkdir the cached target");
    std::os::unix::fs::symlink(&target, dir.path().join("target")).expect("link target/");

    for (name, run) in &steps {
        let script = expand(run, &stack).unwrap_or_else(|| panic!("step {name}: {run}"));
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUST_LOG")
            .envs(&env)
            .env("NO_COLOR", "1")
            // The steps run as written; only the release profile's optimisation is turned down
            // here (a runner optimises), which halves a cold `cargo build --release` on 2 cores.
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "256")
            .output()
            .expect("runs bash");
        assert!(
            out.status.success(),
            "step {name:?} of deploy.yml failed ({}):\n$ {script}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        if name == "Deploy" {
            let shown = text(&out.stdout);
            assert!(shown.contains("Deploy steps:"), "{shown}");
        }
    }
}
