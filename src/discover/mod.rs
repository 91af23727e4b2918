//! Finds the workloads: every folder under `consumers/` that holds a `consumer.toml`, or,
//! without one, a `Dockerfile` (zero configuration: the workload runs with
//! [`Consumer::defaults`]). A folder with neither is skipped.

pub mod context;
pub mod dockerignore;

use std::path::{Path, PathBuf};

use tracing::{debug, info};

use crate::manifest::{self, Consumer, Environment, Problem, Problems, CONSUMER_FILE};

/// The folder that holds the workloads.
pub const CONSUMERS_DIR: &str = "consumers";

/// The file that makes a folder without a manifest a zero-configuration workload.
pub const DOCKERFILE: &str = "Dockerfile";

/// How to give a zero-configuration workload a manifest, for `validate` to print: the keys
/// that need one (reading a topic as a group, scaling on lag, serving HTTP, another size).
pub fn manifest_hint(consumer: &Consumer) -> String {
    let name = &consumer.name;
    let path = consumer.manifest.display();
    // Read from the workload itself, so the words follow the defaults wherever they change.
    let defaults = format!(
        "a {}, {} CPU units / {} MiB, {} replica, no scaling, no [kafka], built from its {DOCKERFILE}",
        consumer.kind.as_str(),
        consumer.cpu,
        consumer.memory,
        consumer.initial_count()
    );
    format!(
        "{name} has no {CONSUMER_FILE}, so it deploys with the defaults ({defaults}). To read a topic as a consumer group, scale on its lag, serve HTTP or change its size, write {path}, e.g.:\n\
         \n    kind = \"worker\"\n    cpu = 512\n    memory = 1024\n\n    [kafka]\n    group = \"{name}\"\n    topics = [\"{name}\"]\n\n    [scaling]\n    min = 1\n    max = 4\n\n\
         (the README's \"consumer.toml\" section lists every key; `shoal new NAME` writes a complete folder)"
    )
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Valid workloads, sorted by name.
    pub consumers: Vec<Consumer>,
    /// Folders under `consumers/` with neither a manifest nor a Dockerfile.
    pub skipped: Vec<PathBuf>,
    /// Workloads left out by [`Fleet::for_env`]: their `platforms` do not include the
    /// environment's.
    pub elsewhere: Vec<String>,
}

impl Fleet {
    pub fn get(&self, name: &str) -> Option<&Consumer> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// The fleet as it deploys to `env`: the workloads whose `platforms` include the
    /// environment's, each with its `[env]` references expanded from `lookup`. Reports every
    /// workload's unset variables at once.
    pub fn for_env(
        &self,
        env: &Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Fleet, Problems> {
        let mut consumers = Vec::new();
        let mut elsewhere = self.elsewhere.clone();
        let mut problems = Problems::default();
        for c in &self.consumers {
            if !c.runs_on(env.platform) {
                debug!(consumer = %c.name, platform = env.platform.as_str(), "not deployed on this platform");
                elsewhere.push(c.name.clone());
                continue;
            }
            match c.for_deploy(lookup) {
                Ok(c) => consumers.push(c),
                Err(p) => problems.0.extend(p.0),
            }
        }
        if !problems.0.is_empty() {
            return Err(problems);
        }
        Ok(Fleet {
            consumers,
            skipped: self.skipped.clone(),
            elsewhere,
        })
    }
}

/// Loads every manifest under `root/consumers`. Returns every problem of every manifest at
/// once, plus the checks that span manifests.
pub fn discover(root: &Path) -> Result<Fleet, Problems> {
    let dir = root.join(CONSUMERS_DIR);
    let mut names = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(folder = %dir.display(), "no consumers folder; the fleet is empty");
            Vec::new()
        }
        Err(e) => {
            return Err(Problems(vec![Problem {
                file: PathBuf::from(CONSUMERS_DIR),
                line: None,
                key: String::new(),
                message: format!("cannot list the folder: {e}"),
                help: None,
            }]))
        }
    };
    names.sort();
    let mut consumers = Vec::new();
    let mut skipped = Vec::new();
    let mut problems = Problems::default();
    for folder in names {
        let rel = folder.strip_prefix(root).unwrap_or(&folder).to_path_buf();
        let loaded = if folder.join(CONSUMER_FILE).is_file() {
            Consumer::load(root, &folder)
        } else if folder.join(DOCKERFILE).is_file() {
            info!(folder = %rel.display(), "no {CONSUMER_FILE}: a worker with the defaults");
            Consumer::defaults(root, &folder)
        } else {
            info!(folder = %rel.display(), "skipped: no {CONSUMER_FILE} and no {DOCKERFILE}");
            skipped.push(rel);
            continue;
        };
        match loaded {
            Ok(c) => {
                debug!(consumer = %c.name, kind = c.kind.as_str(), "loaded manifest");
                consumers.push(c);
            }
            Err(p) => problems.extend(p),
        }
    }
    problems.extend(manifest::check_fleet(&consumers));
    if problems.is_empty() {
        Ok(Fleet {
            consumers,
            skipped,
            elsewhere: Vec::new(),
        })
    } else {
        Err(problems)
    }
}
