//! `shoal new`: a consumer folder that deploys as it is — a manifest, a Dockerfile and the
//! workload's code: a minimal Rust crate (the default) or a Python program, either a worker
//! that consumes its topic or an API that produces to it.
//!
//! The files come from `templates/new/` (Python's from `templates/new/python/`), embedded in
//! the binary. A Rust crate is a cargo workspace of its own, because its folder is its Docker
//! build context; its Cargo.lock is made here (`cargo generate-lockfile`) so that the image
//! builds with `--locked`. A Python program pins its dependencies' exact versions in
//! `requirements.txt`.

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

/// The language the workload is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Rust crate (rdkafka), built in `rust:X.Y-bookworm`, run on `debian:bookworm-slim`.
    Rust,
    /// A Python program (confluent-kafka) on `python:3.11-slim-bookworm`.
    Python,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
        }
    }

    /// The files of a new consumer, relative to its folder, in the order they are written,
    /// and last the program (`kind`'s).
    fn files(self, kind: Kind) -> Vec<(&'static str, &'static str)> {
        let (mut files, main) = match self {
            Lang::Rust => (RUST_FILES.to_vec(), "src/main.rs"),
            Lang::Python => (PYTHON_FILES.to_vec(), "main.py"),
        };
        let program = match (self, kind) {
            (Lang::Rust, Kind::Worker) => include_str!("../templates/new/worker.rs.j2"),
            (Lang::Rust, Kind::Api) => include_str!("../templates/new/api.rs.j2"),
            (Lang::Python, Kind::Worker) => include_str!("../templates/new/python/worker.py.j2"),
            (Lang::Python, Kind::Api) => include_str!("../templates/new/python/api.py.j2"),
        };
        files.push((main, program));
        files
    }
}

const MANIFEST: (&str, &str) = (
    "consumer.toml",
    include_str!("../templates/new/consumer.toml.j2"),
);
const RUST_FILES: &[(&str, &str)] = &[
    MANIFEST,
    ("Dockerfile", include_str!("../templates/new/Dockerfile.j2")),
    (
        ".dockerignore",
        include_str!("../templates/new/dockerignore"),
    ),
    ("Cargo.toml", include_str!("../templates/new/Cargo.toml.j2")),
    ("README.md", include_str!("../templates/new/README.md.j2")),
];
const PYTHON_FILES: &[(&str, &str)] = &[
    MANIFEST,
    (
        "Dockerfile",
        include_str!("../templates/new/python/Dockerfile.j2"),
    ),
    (
        ".dockerignore",
        include_str!("../templates/new/python/dockerignore"),
    ),
    (
        "requirements.txt",
        include_str!("../templates/new/python/requirements.txt"),
    ),
    (
        "README.md",
        include_str!("../templates/new/python/README.md.j2"),
    ),
];

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
    /// The program, where the workload's logic goes, relative to the project root.
    pub program: PathBuf,
    /// Why a Rust crate's Cargo.lock could not be made, when it could not: the image build
    /// needs it.
    pub lockfile_problem: Option<String>,
}

/// Writes `consumers/<name>/` under `root`. `topic` defaults to the consumer's name.
pub fn create(
    root: &Path,
    name: &str,
    kind: Kind,
    lang: Lang,
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

    let ctx = minijinja::context! {
        name => name, kind => kind.as_str(), lang => lang.as_str(), topic => topic
    };
    let mut files = Vec::new();
    for (file, template) in lang.files(kind) {
        let text = render(file, template, &ctx)?;
        let path = dir.join(file);
        write(&path, &text)?;
        files.push(rel_dir.join(file));
    }
    let program = files.last().cloned().unwrap_or_default();
    let mut lockfile_problem = None;
    if lang == Lang::Rust {
        lockfile_problem = generate_lockfile(&dir.join("Cargo.toml")).err();
        if lockfile_problem.is_none() {
            files.push(rel_dir.join("Cargo.lock"));
        }
    }
    Ok(Created {
        dir,
        files,
        program,
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

    fn rendered_in(lang: Lang, kind: Kind) -> Vec<(String, String)> {
        let ctx = minijinja::context! {
            name => "orders", kind => kind.as_str(), lang => lang.as_str(), topic => "orders.v1"
        };
        lang.files(kind)
            .iter()
            .map(|(f, t)| (f.to_string(), render(f, t, &ctx).expect("renders")))
            .collect()
    }

    fn rendered(kind: Kind) -> Vec<(String, String)> {
        rendered_in(Lang::Rust, kind)
    }

    fn file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
        files
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
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
    fn a_python_worker_has_the_rust_workers_manifest_but_its_own_log_setting() {
        let python = rendered_in(Lang::Python, Kind::Worker);
        let rust = rendered(Kind::Worker);
        let parsed: toml::Table = file(&python, "consumer.toml").parse().expect("TOML");
        let rust_parsed: toml::Table = file(&rust, "consumer.toml").parse().expect("TOML");
        for key in [
            "kind", "cpu", "memory", "build", "kafka", "scaling", "topic",
        ] {
            assert_eq!(parsed[key], rust_parsed[key], "{key}");
        }
        assert_eq!(parsed["env"]["LOG_LEVEL"].as_str(), Some("INFO"));
        assert!(!parsed["env"]
            .as_table()
            .expect("env")
            .contains_key("RUST_LOG"));
        let names: Vec<&str> = python.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "consumer.toml",
                "Dockerfile",
                ".dockerignore",
                "requirements.txt",
                "README.md",
                "main.py"
            ]
        );
        let main = file(&python, "main.py");
        assert!(main.contains("\"enable.auto.commit\": False"), "{main}");
        assert!(main.contains("KAFKA_TOPICS\", \"orders.v1\""), "{main}");
    }

    #[test]
    fn a_python_api_checks_its_health_with_python_and_produces_to_its_topic() {
        let python = rendered_in(Lang::Python, Kind::Api);
        let parsed: toml::Table = file(&python, "consumer.toml").parse().expect("TOML");
        assert_eq!(parsed["kind"].as_str(), Some("api"));
        let health: Vec<&str> = parsed["api"]["health_command"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        assert_eq!(health, ["CMD", "python", "/app/main.py", "healthcheck"]);
        assert!(file(&python, "main.py").contains("TOPIC = \"orders.v1\""));
        let dockerfile = file(&python, "Dockerfile");
        assert!(
            dockerfile.contains("FROM python:3.11-slim-bookworm\n"),
            "{dockerfile}"
        );
        assert!(dockerfile.contains("EXPOSE 8080"), "{dockerfile}");
    }

    #[test]
    fn python_requirements_pin_exact_versions() {
        let python = rendered_in(Lang::Python, Kind::Worker);
        let pins: Vec<&str> = file(&python, "requirements.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(!pins.is_empty());
        for pin in pins {
            let (package, version) = pin.split_once("==").unwrap_or_else(|| panic!("{pin}"));
            assert!(!package.is_empty(), "{pin}");
            assert!(
                version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "an exact version: {pin}"
            );
        }
    }

    #[test]
    fn a_python_consumer_needs_no_lockfile() {
        let dir = tempfile::tempdir().expect("temp dir");
        let created = create(dir.path(), "orders", Kind::Api, Lang::Python, None).expect("created");
        assert!(created.lockfile_problem.is_none());
        assert_eq!(created.program, Path::new("consumers/orders/main.py"));
        assert!(created.files.iter().all(|f| !f.ends_with("Cargo.lock")));
        assert!(dir
            .path()
            .join("consumers/orders/requirements.txt")
            .is_file());
    }

    #[test]
    fn names_and_topics_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err =
            create(dir.path(), "Bad Name", Kind::Worker, Lang::Rust, None).expect_err("bad name");
        assert!(matches!(err, ScaffoldError::Name { .. }), "{err}");
        let err = create(
            dir.path(),
            "ok",
            Kind::Worker,
            Lang::Python,
            Some("no spaces"),
        )
        .expect_err("topic");
        assert!(matches!(err, ScaffoldError::Topic { .. }), "{err}");
        assert!(!dir.path().join("consumers").exists());
    }
}
