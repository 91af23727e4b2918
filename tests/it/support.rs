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

    /// A lowercase alphanumeric name unique to this fixture (from its temporary folder), for
    /// resources on shared servers: repositories, topics, services.
    pub fn unique(&self) -> String {
        unique_of(self.root())
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

/// The `sandbox` environment of the local stack (moto, the registry, tansu); `{project}` is
/// replaced by a name unique to the test run, so reruns never meet their own leftovers.
pub const SANDBOX_SHOAL_TOML: &str = r#"project = "{project}"
default_env = "sandbox"

[env.sandbox]
platform = "ecs"
region = "${AWS_REGION:-us-east-1}"
account_id = "123456789012"
endpoint_url = "${AWS_ENDPOINT_URL}"
registry = "${SHOAL_REGISTRY:-127.0.0.1:5000}"
cluster = "${SHOAL_ECS_CLUSTER:-shoal-sandbox}"
subnets = ["${SHOAL_SUBNETS}"]
security_groups = ["${SHOAL_SECURITY_GROUPS}"]
execution_role_arn = "arn:aws:iam::123456789012:role/it-exec"
task_role_arn = "arn:aws:iam::123456789012:role/it-task"
log_group_prefix = "/it/{project}"
keep_images = 7
kafka = { bootstrap = ["${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"] }
"#;

/// A fixture project deployed to the local stack.
pub struct Sandbox {
    pub fixture: Fixture,
    /// The project's unique name, `it-<random>`.
    pub project: String,
    /// `.stack/env`.
    pub vars: BTreeMap<String, String>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let vars = stack_env();
        let fixture = Fixture::new("");
        let project = format!("it-{}", fixture.unique());
        fixture.write(
            "shoal.toml",
            &SANDBOX_SHOAL_TOML.replace("{project}", &project),
        );
        Sandbox {
            fixture,
            project,
            vars,
        }
    }

    pub fn root(&self) -> &Path {
        self.fixture.root()
    }

    /// Runs the shoal binary in the project with the stack's variables.
    pub fn shoal(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .current_dir(self.root())
            .envs(&self.vars)
            .env("NO_COLOR", "1")
            .output()
            .expect("runs shoal")
    }

    /// A consumer whose image is `FROM scratch` with one file: changing `payload` changes its
    /// image tag.
    pub fn payload_consumer(&self, name: &str, manifest: &str, payload: &str) {
        let fx = &self.fixture;
        fx.write(&format!("consumers/{name}/consumer.toml"), manifest);
        fx.write(
            &format!("consumers/{name}/Dockerfile"),
            "FROM scratch\nCOPY payload.txt /payload.txt\n",
        );
        fx.write(&format!("consumers/{name}/payload.txt"), payload);
    }

    /// A variable of `.stack/env`.
    pub fn var(&self, k: &str) -> String {
        self.vars
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!(".stack/env has no {k}; run `scripts/stack up`"))
    }

    pub fn load(&self) -> shoal::manifest::Project {
        shoal::manifest::Project::load(self.root()).unwrap_or_else(|p| panic!("shoal.toml: {p}"))
    }

    pub fn fleet(&self) -> shoal::discover::Fleet {
        shoal::discover::discover(self.root()).unwrap_or_else(|p| panic!("manifests: {p}"))
    }

    /// The sandbox environment, its `${VAR}`s taken from `.stack/env`.
    pub fn env(&self) -> shoal::manifest::Environment {
        let lookup = |k: &str| self.vars.get(k).cloned();
        self.load()
            .environment_with("sandbox", &lookup)
            .unwrap_or_else(|p| panic!("the sandbox environment from .stack/env: {p}"))
    }

    /// shoal's AWS configuration for `env`, with the stack's static test credentials (set
    /// on the loader rather than in the process environment, which tests share).
    pub async fn aws_config(&self, env: &shoal::manifest::Environment) -> aws_config::SdkConfig {
        self.aws_config_with_key(env, &self.var("AWS_ACCESS_KEY_ID"))
            .await
    }

    /// As [`Sandbox::aws_config`], with another access key id (moto derives the account,
    /// and so the registry password, from it).
    pub async fn aws_config_with_key(
        &self,
        env: &shoal::manifest::Environment,
        access_key: &str,
    ) -> aws_config::SdkConfig {
        let credentials = aws_sdk_ecs::config::Credentials::new(
            access_key,
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "shoal-stack",
        );
        shoal::aws::loader(env)
            .credentials_provider(credentials)
            .load()
            .await
    }
}

/// A plain HTTP/1.0 GET with basic authentication: (status, body). For checking the
/// registry through its own HTTP API, independently of shoal's client.
/// The desired resources of the project in `root` on environment `env_name` as the ECS wing
/// builds them before normalising (its service specs and prerequisites, shared topics
/// included), each consumer's image tagged as `tags` says; and the project's name.
pub fn ecs_desired(
    root: &Path,
    env_name: &str,
    tags: &BTreeMap<String, String>,
) -> (Vec<shoal::plan::Resource>, String) {
    let project = shoal::manifest::Project::load(root).expect("valid");
    let env = project.environment(env_name).expect("valid env");
    let fleet = shoal::discover::discover(root).expect("valid fleet");
    let service = |c: &shoal::manifest::Consumer| {
        shoal::platform::ecs::ServiceSpec::desired(&env, &project.name, c).to_json()
    };
    let prerequisites =
        |c: &shoal::manifest::Consumer| shoal::platform::ecs::prerequisites(&env, &project.name, c);
    let desired = shoal::plan::desired(&shoal::plan::DesiredInputs {
        target: shoal::render::Target {
            project: &project.name,
            env: &env,
            bootstrap: env.kafka.static_bootstrap(),
        },
        fleet: &fleet,
        renderer: &shoal::render::Renderer::embedded(),
        tags,
        service: &service,
        prerequisites: &prerequisites,
    })
    .expect("renders");
    (desired, project.name)
}

/// shoal's lag reader for an environment, its brokers resolved as a command resolves them
/// (`deploy::Session`).
pub async fn lag_reader(
    env: &shoal::manifest::Environment,
    timeout: std::time::Duration,
) -> shoal::kafka::lag::LagReader {
    let session = shoal::deploy::Session::new(env);
    let conn = session.kafka().await.expect("the environment's brokers");
    shoal::kafka::lag::LagReader::with(conn.clone(), timeout)
}

pub fn http_get(host: &str, path: &str, user: &str, password: &str) -> (u16, String) {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut stream = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("connect to the registry at {host}: {e}"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\
         Accept: application/vnd.docker.distribution.manifest.v2+json, \
         application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {head}"));
    (status, body.to_string())
}

/// The tags of a repository in the stack's registry, read with ECR's credentials as moto
/// hands them out (user `AWS`, password `<account>-auth-token`).
pub fn registry_tags(sandbox: &Sandbox, repository: &str) -> Vec<String> {
    let (status, body) = http_get(
        &sandbox.var("SHOAL_REGISTRY"),
        &format!("/v2/{repository}/tags/list"),
        "AWS",
        "123456789012-auth-token",
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    tags_of(&body)
}

/// The tags of a registry's `tags/list` answer.
pub fn tags_of(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("tags/list is JSON");
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the shoal binary in `dir` as a user would, without colours or a log filter from the
/// calling shell.
pub fn shoal(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .current_dir(dir)
        .env_remove("SHOAL_ENV")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("runs shoal")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The lowercase alphanumeric characters of a folder's name (a temporary folder's name is
/// unique).
pub fn unique_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// A command exited 0; otherwise fails showing its output.
pub fn assert_ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A container removed (with `docker rm -f`) when dropped.
pub struct Container(pub String);

impl Container {
    /// `docker run -d` of `image` (with `command`, when not empty) on the host's network,
    /// where the stack's loopback addresses work as they are (the local platform's own
    /// networking is tested in `docker_platform`).
    pub fn run(name: &str, image: &str, env: &[(&str, String)], command: &[String]) -> Container {
        let mut cmd = std::process::Command::new("docker");
        cmd.args(["run", "-d", "--name", name, "--network", "host"]);
        for (k, v) in env {
            cmd.args(["-e", &format!("{k}={v}")]);
        }
        let out = cmd.arg(image).args(command).output().expect("docker run");
        assert!(
            out.status.success(),
            "docker run {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container(name.to_string())
    }

    /// What it wrote to stdout and stderr.
    pub fn logs(&self) -> String {
        let out = std::process::Command::new("docker")
            .args(["logs", &self.0])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

/// Copies the folder `from` into `to` (created), leaving out `target` folders.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_entry(|e| e.file_name() != "target")
        .filter_map(Result::ok)
    {
        let rel = entry.path().strip_prefix(from).expect("under the folder");
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}
