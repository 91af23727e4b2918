//! The test harness: fixture projects in temporary folders, and the local stack's addresses.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local stack's variables from `.stack/env` (`export KEY=value` lines). Panics with what
/// to do when the stack is not up: tests that need it must not pass without it.
pub fn stack_env() -> BTreeMap<String, String> {
    let path = repo_root().join(".stack/env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. These tests need the local stack: run `scripts/stack up` first",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("export ").unwrap_or(l.trim());
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        })
        .collect()
}

/// A project in a temporary folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty project with this `shoal.toml`.
    pub fn new(shoal_toml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("shoal.toml"), shoal_toml).expect("write shoal.toml");
        Fixture { dir }
    }

    /// A project with a local and a sandbox-like ECS environment whose values are all literal.
    pub fn standard() -> Fixture {
        Fixture::new(STANDARD_SHOAL_TOML)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A consumer folder with this manifest and a one-line Dockerfile.
    pub fn consumer(&self, name: &str, manifest: &str) -> PathBuf {
        self.write(&format!("consumers/{name}/Dockerfile"), "FROM scratch\n");
        self.write(&format!("consumers/{name}/consumer.toml"), manifest)
    }
}

pub const STANDARD_SHOAL_TOML: &str = r#"project = "demo"
default_env = "local"

[env.local]
platform = "docker"
kafka = { bootstrap = ["127.0.0.1:9092"] }

[env.sandbox]
platform = "ecs"
region = "us-east-1"
account_id = "123456789012"
registry = "127.0.0.1:5000"
cluster = "demo-sandbox"
subnets = ["subnet-0a", "subnet-0b"]
security_groups = ["sg-0a"]
execution_role_arn = "arn:aws:iam::123456789012:role/demo-exec"
task_role_arn = "arn:aws:iam::123456789012:role/demo-task"
log_group_prefix = "/demo/sandbox"
kafka = { bootstrap = ["127.0.0.1:9092"] }
"#;

pub const WORKER: &str = r#"kind = "worker"
cpu = 512
memory = 1024

[env]
BATCH_SIZE = "500"

[secrets]
DB_PASSWORD = "arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse-AbCdEf"
API_TOKEN = "arn:aws:ssm:us-east-1:123456789012:parameter/demo/token"

[kafka]
group = "orders-worker"
topics = ["orders"]

[[topic]]
name = "orders"
partitions = 6
replication = 3
config = { "retention.ms" = "86400000", "cleanup.policy" = "delete" }

[scaling]
min = 1
max = 6
max_lag_seconds = 20
"#;

pub const API: &str = r#"kind = "api"
cpu = 256
memory = 512

[api]
port = 8080
health_path = "/healthz"
"#;
