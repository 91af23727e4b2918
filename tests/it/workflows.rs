//! The GitHub workflows are valid: check-jsonschema (installed by `scripts/test`) checks them
//! against GitHub's workflow schema, which it ships.

use std::process::Command;

use crate::support::repo_root;

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
