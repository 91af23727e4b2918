//! `shoal new`: a consumer folder that deploys as it is — a manifest, a Dockerfile and a
//! minimal Rust crate (a worker that consumes its topic, or an API that produces to it).
//!
//! The files come from `templates/new/`, embedded in the binary. The crate is a cargo
//! workspace of its own, because its folder is its Docker build context; its Cargo.lock is
//! made here (`cargo generate-lockfile`) so that the image builds with `--locked`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manifest::{resource_name, NAME_HELP};

/// What kind of workload to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Consumes its topic as a consumer group.
    Worker,
    /// An HTTP API that produces to its topic.
    Api,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Worker => "worker",
            Kind::Api => "api",
        }
    }
}

/// The files of a new consumer, relative to its folder, in the order they are written.
const FILES: &[(&str, &str)] = &[
    (
        "consumer.toml",
        include_str!("../templates/new/consumer.toml.j2"),
    ),
    ("Dockerfile", include_str!("../templates/new/Dockerfile.j2")),
    (
        ".dockerignore",
        include_str!("../templates/new/dockerignore"),
    ),
    ("Cargo.toml", include_str!("../templates/new/Cargo.toml.j2")),
    ("README.md", include_str!("../templates/new/README.md.j2")),
];
const WORKER_MAIN: &str = include_str!("../templates/new/worker.rs.j2");
const API_MAIN: &str = include_str!("../templates/new/api.rs.j2");

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{name:?} is not a legal consumer name: {NAME_HELP}")]
    Name { name: String },
    #[error("{topic:?} is not a legal topic name: use 1 to 249 letters, digits, '.', '_' or '-'")]
    Topic { topic: String },
    #[error("{} already exists; pick another name, or remove the folder first", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {file}: {message}")]
    Template { file: String, message: String },
}

/// What `create` made.
#[derive(Debug)]
pub struct Created {
    /// The new folder, `consumers/<name>`.
    pub dir: PathBuf,
    /// Every file written, relative to the project root.
    pub files: Vec<PathBuf>,
    /// Why Cargo.lock could not be made, when it could not: the image build needs it.
    pub lockfile_problem: Option<String>,
}

/// Writes `consumers/<name>/` under `root`. `topic` defaults to the consumer's name.
pub fn create(
    root: &Path,
    name: &str,
    kind: Kind,
    topic: Option<&str>,
) -> Result<Created, ScaffoldError> {
    resource_name(name).map_err(|_| ScaffoldError::Name {
        name: name.to_string(),
    })?;
    let topic = topic.unwrap_or(name);
    let legal_topic = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !legal_topic {
        return Err(ScaffoldError::Topic {
            topic: topic.to_string(),
        });
    }
    let rel_dir = Path::new("consumers").join(name);
    let dir = root.join(&rel_dir);
    if dir.exists() {
        return Err(ScaffoldError::Exists(rel_dir));
    }

    let ctx = minijinja::context! { name => name, kind => kind.as_str(), topic => topic };
    let main = match kind {
        Kind::Worker => WORKER_MAIN,
        Kind::Api => API_MAIN,
    };
    let mut files = Vec::new();
    for (file, template) in FILES.iter().copied().chain([("src/main.rs", main)]) {
        let text = render(file, template, &ctx)?;
        let path = dir.join(file);
        write(&path, &text)?;
        files.push(rel_dir.join(file));
    }
    let lockfile_problem = generate_lockfile(&dir.join("Cargo.toml")).err();
    if lockfile_problem.is_none() {
        files.push(rel_dir.join("Cargo.lock"));
    }
    Ok(Created {
        dir,
        files,
        lockfile_problem,
    })
}

fn render(file: &str, template: &str, ctx: &minijinja::Value) -> Result<String, ScaffoldError> {
    let mut jinja = minijinja::Environment::new();
    jinja.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    jinja.set_keep_trailing_newline(true);
    jinja
        .render_str(template, ctx)
        .map_err(|e| ScaffoldError::Template {
            file: file.to_string(),
            message: e.to_string(),
        })
}

fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let err = |source| ScaffoldError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)
}

/// `cargo generate-lockfile` for the new crate: the versions it resolves today are the ones
/// every image build uses until someone runs `cargo update`.
fn generate_lockfile(manifest: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["generate-lockfile", "--quiet", "--manifest-path"])
        .arg(manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(stderr.lines().last().unwrap_or("cargo failed").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(kind: Kind) -> Vec<(String, String)> {
        let ctx =
            minijinja::context! { name => "orders", kind => kind.as_str(), topic => "orders.v1" };
        FILES
            .iter()
            .map(|(f, t)| (f.to_string(), render(f, t, &ctx).expect("renders")))
            .collect()
    }

    #[test]
    fn a_worker_manifest_consumes_its_topic_and_scales() {
        let files = rendered(Kind::Worker);
        let manifest = &files[0].1;
        let parsed: toml::Table = manifest.parse().expect("TOML");
        assert_eq!(parsed["kind"].as_str(), Some("worker"));
        assert_eq!(parsed["kafka"]["topics"][0].as_str(), Some("orders.v1"));
        assert_eq!(parsed["kafka"]["group"].as_str(), Some("orders"));
        assert!(parsed.contains_key("scaling"));
        assert!(!parsed.contains_key("api"));
    }

    #[test]
    fn an_api_manifest_checks_its_health_without_curl() {
        let files = rendered(Kind::Api);
        let parsed: toml::Table = files[0].1.parse().expect("TOML");
        assert_eq!(parsed["kind"].as_str(), Some("api"));
        let health = parsed["api"]["health_command"].as_array().expect("list");
        assert_eq!(health[1].as_str(), Some("/usr/local/bin/orders"));
        let cargo: toml::Table = files[3].1.parse().expect("Cargo.toml");
        assert!(cargo["dependencies"]
            .as_table()
            .expect("deps")
            .contains_key("axum"));
    }

    #[test]
    fn names_and_topics_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = create(dir.path(), "Bad Name", Kind::Worker, None).expect_err("bad name");
        assert!(matches!(err, ScaffoldError::Name { .. }), "{err}");
        let err = create(dir.path(), "ok", Kind::Worker, Some("no spaces")).expect_err("topic");
        assert!(matches!(err, ScaffoldError::Topic { .. }), "{err}");
        assert!(!dir.path().join("consumers").exists());
    }
}
