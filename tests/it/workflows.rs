//! The GitHub workflows are valid: check-jsonschema (installed by `scripts/test`) checks them
//! against GitHub's workflow schema, which it ships. They are also safe as written: every
//! third-party action is pinned by commit with its release in a comment, every workflow
//! declares least-privilege `permissions`, and a deploy runs only for a commit whose CI passed.

use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

use crate::support::repo_root;

/// Each workflow: its path, its text and its YAML.
fn workflows() -> Vec<(PathBuf, String, Value)> {
    let dir = repo_root().join(".github/workflows");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .expect("the workflows folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read the workflow");
            let yaml =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text, yaml)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 2, "ci.yml and deploy.yml: {found:?}");
    found
}

fn workflow(name: &str) -> (String, Value) {
    let (_, text, yaml) = workflows()
        .into_iter()
        .find(|(p, _, _)| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!(".github/workflows/{name} is missing"));
    (text, yaml)
}

fn jobs(yaml: &Value) -> Vec<(&str, &Value)> {
    yaml["jobs"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default(), v))
                .collect()
        })
        .unwrap_or_default()
}

/// Every `uses:` of a workflow: each step's, and each job's (a reusable workflow).
fn uses(yaml: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (_, job) in jobs(yaml) {
        found.extend(job["uses"].as_str().map(str::to_string));
        for step in job["steps"].as_sequence().into_iter().flatten() {
            found.extend(step["uses"].as_str().map(str::to_string));
        }
    }
    found
}

/// Why a `uses:` line is not pinned by commit with its release in a comment, if it is not.
fn unpinned(reference: &str, line: &str) -> Option<String> {
    if reference.starts_with("./") {
        return None;
    }
    if let Some(image) = reference.strip_prefix("docker://") {
        return (!image.contains("@sha256:")).then(|| "a Docker image not pinned by digest".into());
    }
    let Some((_, sha)) = reference.rsplit_once('@') else {
        return Some("no ref".into());
    };
    if sha.len() != 40
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some(format!("`{sha}` is not a full commit SHA (40 hex digits)"));
    }
    let version = line
        .split_once('#')
        .map(|(_, c)| c.trim())
        .unwrap_or_default();
    let is_version = version.strip_prefix('v').is_some_and(|v| {
        !v.is_empty()
            && v.split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    (!is_version).then(|| "no `# vX.Y.Z` comment naming the release the commit is".into())
}

#[test]
fn the_pin_check_refuses_tags_and_bare_shas() {
    let sha = "11bd71901bbe5b1630ceea73d27597364c9af683";
    let pinned = format!("actions/checkout@{sha}");
    assert_eq!(unpinned(&pinned, &format!("uses: {pinned} # v4.2.2")), None);
    assert_eq!(
        unpinned("./.github/actions/x", "uses: ./.github/actions/x"),
        None
    );
    for (reference, line) in [
        ("actions/checkout@v4", "uses: actions/checkout@v4"),
        ("actions/checkout@v4", "uses: actions/checkout@v4 # v4.2.2"),
        (pinned.as_str(), &*format!("uses: {pinned}")),
        (pinned.as_str(), &*format!("uses: {pinned} # latest")),
        (
            &*format!("actions/checkout@{}", &sha[..7]),
            "uses: actions/checkout@11bd719 # v4.2.2",
        ),
        (
            "docker://debian:bookworm-slim",
            "uses: docker://debian:bookworm-slim",
        ),
    ] {
        assert!(unpinned(reference, line).is_some(), "{line}");
    }
}

#[test]
fn actions_are_pinned_by_commit_with_their_release_in_a_comment() {
    let mut problems = Vec::new();
    for (path, text, yaml) in workflows() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let references = uses(&yaml);
        // Every `uses:` line of the text is one the YAML has (none hides in a form the
        // collection above misses).
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().trim_start_matches("- ").starts_with("uses:"))
            .collect();
        assert_eq!(
            lines.len(),
            references.len(),
            "{name}: {lines:#?} vs {references:#?}"
        );
        assert!(!references.is_empty(), "{name} uses no action");
        for reference in references {
            let line = lines
                .iter()
                .find(|l| {
                    l.split_once("uses:").is_some_and(|(_, r)| {
                        r.split('#').next().unwrap_or_default().trim() == reference
                    })
                })
                .unwrap_or_else(|| panic!("{name}: no line for {reference}"));
            if let Some(why) = unpinned(&reference, line) {
                problems.push(format!("{name}: {}: {why}", line.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pin each action to the full commit SHA of a release, with the release in a comment \
         (uses: owner/repo@<40 hex> # vX.Y.Z):\n{}",
        problems.join("\n")
    );
}

/// The top-level `permissions` of each workflow, as (scope, access) pairs.
fn permissions(yaml: &Value) -> Option<Vec<(String, String)>> {
    yaml.get("permissions")?.as_mapping().map(|m| {
        m.iter()
            .map(|(k, v)| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (s(k), s(v))
            })
            .collect()
    })
}

#[test]
fn workflows_declare_least_privilege_permissions() {
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<_> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    };
    let expected = [
        ("ci.yml", pairs(&[("contents", "read")])),
        (
            "deploy.yml",
            pairs(&[("contents", "read"), ("id-token", "write")]),
        ),
    ];
    for (path, _, yaml) in workflows() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut declared = permissions(&yaml).unwrap_or_else(|| {
            panic!("{name}: no top-level `permissions:` mapping (the default token may write)")
        });
        declared.sort();
        if let Some((_, want)) = expected.iter().find(|(n, _)| *n == name) {
            assert_eq!(&declared, want, "{name}'s permissions");
        }
        for (job, body) in jobs(&yaml) {
            let writes = body["permissions"].as_mapping().into_iter().flatten();
            for (scope, access) in writes {
                assert!(
                    access.as_str() != Some("write") || scope.as_str() == Some("id-token"),
                    "{name}: job {job} asks for {scope:?}: write"
                );
            }
            assert!(
                body["permissions"].as_str().is_none(),
                "{name}: job {job}: permissions must be a mapping, not read-all/write-all"
            );
        }
    }
}

#[test]
fn a_deploy_runs_only_for_a_commit_whose_ci_passed() {
    let (_, ci) = workflow("ci.yml");
    let (_, deploy) = workflow("deploy.yml");
    let on = deploy["on"]
        .as_mapping()
        .expect("deploy.yml: `on:` as a mapping");
    let triggers: Vec<&str> = on.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        triggers,
        ["workflow_run"],
        "deploy.yml must start only from a completed CI run (a push or a manual trigger \
         would deploy an untested commit)"
    );
    let run = &deploy["on"]["workflow_run"];
    let ci_name = ci["name"].as_str().expect("ci.yml's name");
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        strings(&run["workflows"]),
        [ci_name],
        "on.workflow_run.workflows"
    );
    assert_eq!(
        strings(&run["types"]),
        ["completed"],
        "on.workflow_run.types"
    );
    assert_eq!(
        strings(&run["branches"]),
        ["main"],
        "on.workflow_run.branches"
    );
    let jobs = jobs(&deploy);
    assert!(!jobs.is_empty(), "deploy.yml has no jobs");
    for (job, body) in jobs {
        let condition = body["if"].as_str().unwrap_or_default();
        for must in [
            "github.event.workflow_run.conclusion == 'success'",
            "github.event.workflow_run.event == 'push'",
            "github.event.workflow_run.head_repository.full_name == github.repository",
        ] {
            assert!(
                condition.contains(must),
                "deploy.yml: job {job} runs unless `if:` has {must}; it has: {condition:?}"
            );
        }
        let checkouts: Vec<&Value> = body["steps"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/checkout@"))
            })
            .collect();
        assert!(
            !checkouts.is_empty(),
            "deploy.yml: job {job} checks nothing out"
        );
        for step in checkouts {
            assert_eq!(
                step["with"]["ref"].as_str(),
                Some("${{ github.event.workflow_run.head_sha }}"),
                "deploy.yml: job {job} must check out the commit CI tested, not main's tip"
            );
        }
    }
}

#[test]
fn github_workflows_match_the_schema() {
    let tool = std::env::var("CHECK_JSONSCHEMA").unwrap_or_else(|_| {
        let cached = dirs_cache().join("tools/bin/check-jsonschema");
        cached.to_string_lossy().into_owned()
    });
    let workflows = repo_root().join(".github/workflows");
    let files: Vec<_> = std::fs::read_dir(&workflows)
        .expect("the workflows folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    assert!(files.len() >= 2, "ci.yml and deploy.yml: {files:?}");
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool}: {e}; scripts/test installs check-jsonschema (or set CHECK_JSONSCHEMA)")
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dirs_cache() -> std::path::PathBuf {
    std::env::var_os("SHOAL_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/shoal")
        })
}
