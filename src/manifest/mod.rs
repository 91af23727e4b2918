//! `shoal.toml` (the project and its environments) and `consumer.toml` (one workload).
//!
//! Loading is two steps, as in ripgrep's low/high args: [`raw`] holds what was written, and
//! the types here hold what it means, validated. Every problem in every file is reported at
//! once, each with its file, line and key. Nothing in here panics on bad input; the property
//! test in `tests/it/fuzz.rs` feeds it arbitrary bytes.

pub mod credential;
mod deployable;
mod environment;
mod interp;
pub mod problem;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use environment::{Environment, KafkaAccess, KafkaAuth, Platform};
pub use problem::{Problem, Problems};
pub use validate::{resource_name, NAME_HELP};

use problem::FileProblems;

/// The project file's name, at the project root.
pub const PROJECT_FILE: &str = "shoal.toml";
/// The workload manifest's name, in each folder under `consumers/`.
pub const CONSUMER_FILE: &str = "consumer.toml";

/// `shoal.toml`, loaded. Environments are resolved on demand by [`Project::environment`],
/// because their `${VAR}` references only need to be set for the environment in use.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub name: String,
    pub default_env: String,
    envs: BTreeMap<String, raw::EnvSection>,
    text: String,
}

impl Project {
    /// Loads `shoal.toml` from `root`.
    pub fn load(root: &Path) -> Result<Project, Problems> {
        let path = root.join(PROJECT_FILE);
        let display = PathBuf::from(PROJECT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                return Err(Problems(vec![Problem {
                    file: display,
                    line: None,
                    key: String::new(),
                    message: format!("cannot read {}: {e}", path.display()),
                    help: Some(
                        "run shoal from the project root or pass --project-dir DIR".to_string(),
                    ),
                }]))
            }
        };
        Self::parse(root, &text)
    }

    /// Parses the text of `shoal.toml`; `root` is where it lives.
    pub fn parse(root: &Path, text: &str) -> Result<Project, Problems> {
        let mut fp = FileProblems::new(Path::new(PROJECT_FILE), text);
        let Some(file) = raw::parse::<raw::ProjectFile>(text, &mut fp) else {
            return Err(fp.into_problems());
        };
        let name = match file.project {
            Some(n) => {
                if let Err(why) = validate::resource_name(&n) {
                    fp.push("project", format!("{n:?} {why}")).help =
                        Some(validate::NAME_HELP.to_string());
                }
                n
            }
            None => {
                if !fp.has("project") {
                    fp.push("project", "missing").help = Some(
                        "name the project, e.g. project = \"shoal\"; it prefixes ECR repositories and task families".into(),
                    );
                }
                String::new()
            }
        };
        let envs = file.env.unwrap_or_default();
        if envs.is_empty() && !fp.has("env") {
            fp.push("env", "no environments are defined").help =
                Some("add one, e.g. [env.local] with platform = \"docker\"".to_string());
        }
        for (env_name, section) in &envs {
            environment::resolve(&name, env_name, section, &|_| None, false, &mut fp);
        }
        let default_env = file.default_env.unwrap_or_else(|| "local".to_string());
        if !envs.is_empty() && !envs.contains_key(&default_env) {
            let key = "default_env";
            fp.push(
                key,
                format!("environment {default_env:?} is not defined under [env]"),
            )
            .help = Some(format!(
                "set default_env to one of: {}",
                envs.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let problems = fp.into_problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Project {
            root: root.to_path_buf(),
            name,
            default_env,
            envs,
            text: text.to_string(),
        })
    }

    /// Whether `env` can run `consumers` (as they deploy, from `Fleet::for_env`): every
    /// setting a workload declares `required` is set, and on ECS no plain `vars` or `[env]`
    /// value carries a credential (unless `allow_plain` says it may). Every problem at once.
    pub fn check_deployable(&self, env: &Environment, consumers: &[Consumer]) -> Problems {
        deployable::check(&self.text, env, consumers)
    }

    /// Names of the environments, sorted.
    pub fn env_names(&self) -> Vec<&str> {
        self.envs.keys().map(String::as_str).collect()
    }

    /// Resolves one environment, expanding `${VAR}` references from the process environment.
    pub fn environment(&self, name: &str) -> Result<Environment, Problems> {
        self.environment_with(name, &|k| std::env::var(k).ok())
    }

    /// As [`Project::environment`], with an explicit variable lookup (for tests).
    pub fn environment_with(
        &self,
        name: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Environment, Problems> {
        let mut fp = FileProblems::new(Path::new(PROJECT_FILE), &self.text);
        let Some(section) = self.envs.get(name) else {
            fp.push("env", format!("no environment named {name:?}"))
                .help = Some(format!(
                "pick one of: {} (with --env or SHOAL_ENV)",
                self.env_names().join(", ")
            ));
            return Err(fp.into_problems());
        };
        let env = environment::resolve(&self.name, name, section, lookup, true, &mut fp);
        let problems = fp.into_problems();
        match env {
            Some(env) if problems.is_empty() => Ok(env),
            _ => Err(problems),
        }
    }
}

/// What a workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Reads from Kafka; no port.
    Worker,
    /// Serves HTTP on a port, with a health check.
    Api,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Worker => "worker",
            Kind::Api => "api",
        }
    }
}

/// One workload, from `consumers/<name>/consumer.toml`, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Consumer {
    pub name: String,
    /// The folder, absolute.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The manifest path relative to the project root, for messages.
    pub manifest: PathBuf,
    pub kind: Kind,
    pub cpu: u32,
    pub memory: u32,
    pub command: Option<Vec<String>>,
    /// The platforms it deploys to (default: every one).
    pub platforms: Vec<Platform>,
    /// Its own task role: a role name in the environment's account, or a role ARN. Without
    /// it the environment's `task_role_arn` applies.
    pub task_role: Option<String>,
    pub build: Build,
    /// `[env]` as written; [`Consumer::for_deploy`] expands its `${VAR}` references.
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    /// The settings it cannot start without (`required` and `required_on`).
    pub required: Vec<Required>,
    /// `[env]` keys that may hold a plain credential on ECS (`allow_plain`).
    pub allow_plain: Vec<String>,
    pub kafka: Option<KafkaUse>,
    pub topics: Vec<Topic>,
    pub scaling: Option<Scaling>,
    pub api: Option<Api>,
    /// Its alarms (`[alarms]`): on by default for a consumer with `[scaling]`; `None` when it
    /// has none.
    pub alarms: Option<Alarms>,
    /// A folder with a Dockerfile and no `consumer.toml`: it runs with [`Consumer::defaults`].
    pub defaults: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Build {
    /// Absolute path of the Dockerfile.
    #[serde(skip)]
    pub dockerfile: PathBuf,
    /// Absolute path of the build context.
    #[serde(skip)]
    pub context: PathBuf,
    /// The Dockerfile's path inside the context, `/`-separated, as the Engine API wants it.
    pub dockerfile_in_context: String,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
}

/// One setting a workload cannot start without: a variable, or one of several.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Required {
    /// Any one of these names satisfies it (written `"API_KEYS|JWT_SECRET"`).
    pub any_of: Vec<String>,
    /// Only environments of this platform need it (`required_on`); `None`: every one.
    pub on: Option<Platform>,
    /// Where it is written in `consumer.toml`, e.g. `required[0]` or `required_on.ecs[1]`.
    pub key: String,
}

impl Required {
    /// As written: `DATABASE_URL`, or `API_KEYS|JWT_SECRET`.
    pub fn written(&self) -> String {
        self.any_of.join("|")
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KafkaUse {
    pub group: String,
    pub topics: Vec<String>,
    /// Where the group starts on a partition it never committed on: the workload's
    /// `auto.offset.reset`. The autoscaler counts such a partition's lag from it.
    pub offset_reset: OffsetReset,
}

/// A consumer's `auto.offset.reset`, as `[kafka] offset_reset` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// From the oldest message still held (the log-start offset).
    #[default]
    Earliest,
    /// From the end: only what arrives after the group first reads the partition.
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
    pub replication: u16,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scaling {
    pub min: u32,
    pub max: u32,
    pub max_lag_seconds: f64,
    /// Whether a load between two useful counts may be served by alternating between them
    /// (spending the lag budget) rather than by the higher one (default true).
    pub duty_cycle: bool,
}

/// `[alarms]`, resolved: how long each condition must hold before its alarm fires. A
/// duration of 0 turns that alarm off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alarms {
    /// Lag seconds above `[scaling] max_lag_seconds` for this many minutes.
    pub lag_minutes: u32,
    /// Fewer tasks running than desired for this many minutes.
    pub below_desired_minutes: u32,
    /// No lag figure published for this many minutes: the autoscaler is down.
    pub no_data_minutes: u32,
    /// The dead-letter topic whose growth fires an alarm; `None`: no DLQ alarm.
    pub dlq_topic: Option<String>,
}

impl Alarms {
    /// The defaults of a consumer with `[scaling]` and no `[alarms]`.
    pub const DEFAULT_LAG_MINUTES: u32 = 5;
    pub const DEFAULT_BELOW_DESIRED_MINUTES: u32 = 10;
    pub const DEFAULT_NO_DATA_MINUTES: u32 = 10;
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Api {
    pub port: u16,
    pub health_path: String,
    pub health_command: Option<Vec<String>>,
}

impl Consumer {
    /// Parses one manifest. `root` is the project root, `dir` the consumer's folder.
    pub fn parse(root: &Path, dir: &Path, text: &str) -> Result<Consumer, Problems> {
        let manifest = dir.strip_prefix(root).unwrap_or(dir).join(CONSUMER_FILE);
        let mut fp = FileProblems::new(&manifest, text);
        let Some(file) = raw::parse::<raw::ConsumerFile>(text, &mut fp) else {
            return Err(fp.into_problems());
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let consumer = validate::consumer(root, dir, manifest, name, file, &mut fp);
        let problems = fp.into_problems();
        match consumer {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    /// A consumer from `text`, in a temporary project where `consumers/<name>` holds it and a
    /// Dockerfile: for unit tests of the layers above the manifest.
    #[cfg(test)]
    pub(crate) fn for_test(name: &str, text: &str) -> Consumer {
        let root = tempfile::tempdir().expect("a temporary folder");
        let dir = root.path().join("consumers").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write the Dockerfile");
        Consumer::parse(root.path(), &dir, text).expect("a valid manifest")
    }

    /// Whether it deploys to environments of this platform (`platforms` in the manifest).
    pub fn runs_on(&self, platform: Platform) -> bool {
        self.platforms.contains(&platform)
    }

    /// The task role its ECS tasks get in `env`: its own `task_role` (a name is taken to be
    /// in the environment's account), else the environment's `task_role_arn`.
    pub fn task_role_arn(&self, env: &Environment) -> Option<String> {
        match (&self.task_role, &env.account_id) {
            (Some(role), _) if role.starts_with("arn:") => Some(role.clone()),
            (Some(name), Some(account)) => Some(format!("arn:aws:iam::{account}:role/{name}")),
            _ => env.task_role_arn.clone(),
        }
    }

    /// The consumer as it deploys: its `[env]` values with `${VAR}` references expanded from
    /// `lookup` (the deploying process's environment), so that a deploy can hand a value of
    /// its own to the workload.
    pub fn for_deploy(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Consumer, Problems> {
        // Read again only to put line numbers on the problems.
        let text = std::fs::read_to_string(self.dir.join(CONSUMER_FILE)).unwrap_or_default();
        let mut fp = FileProblems::new(&self.manifest, &text);
        let mut out = self.clone();
        for (key, value) in &mut out.env {
            match interp::expand(value, lookup) {
                Ok(v) => *value = v,
                Err(why) => fp.push(format!("env.{}", problem::quote_key(key)), why).help = Some(
                    "export it where shoal runs (a deploy passes its own value on), or give a default".into(),
                ),
            }
        }
        let problems = fp.into_problems();
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// The workload of a folder that has a `Dockerfile` and no `consumer.toml` (zero
    /// configuration): a worker of 256 CPU units and 512 MiB, built from `Dockerfile` with the
    /// folder as context, one replica, no `[kafka]`, no topics, no scaling, on every platform.
    /// These are the defaults of every key a manifest leaves out; `kind` is the only one a
    /// manifest must write. `manifest` is the path a manifest would have.
    pub fn defaults(root: &Path, dir: &Path) -> Result<Consumer, Problems> {
        let manifest = dir.strip_prefix(root).unwrap_or(dir).join(CONSUMER_FILE);
        let mut fp = FileProblems::new(&manifest, "");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = raw::ConsumerFile {
            kind: Some(Kind::Worker.as_str().to_string()),
            ..raw::ConsumerFile::default()
        };
        let consumer = validate::consumer(root, dir, manifest, name, file, &mut fp);
        let problems = fp.into_problems();
        match consumer {
            Some(c) if problems.is_empty() => Ok(Consumer {
                defaults: true,
                ..c
            }),
            _ => Err(problems),
        }
    }

    /// Loads `dir/consumer.toml`.
    pub fn load(root: &Path, dir: &Path) -> Result<Consumer, Problems> {
        let path = dir.join(CONSUMER_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(root, dir, &text),
            Err(e) => Err(Problems(vec![Problem {
                file: path.strip_prefix(root).unwrap_or(&path).to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
                help: None,
            }])),
        }
    }

    /// Desired count for a new service: the scaling minimum, or one replica.
    pub fn initial_count(&self) -> u32 {
        self.scaling.map_or(1, |s| s.min)
    }
}

/// Checks that span manifests: scaling `max` against the partitions of declared topics, and
/// topics declared twice with different settings.
pub fn check_fleet(consumers: &[Consumer]) -> Problems {
    validate::fleet(consumers)
}
