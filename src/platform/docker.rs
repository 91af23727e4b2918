//! The local Docker platform: each consumer runs as N containers on this machine's Docker
//! Engine, made, replaced and scaled through the Engine API (bollard).
//!
//! Networking: each project and environment has a user-defined bridge network,
//! `shoal-<project>-<env>`, made on the first deploy and removed by `down`. The local stack's
//! services (tansu, PostgreSQL) run on this machine, not in containers, so a container reaches
//! them as `host.docker.internal` (mapped to the host's gateway address, as Docker Desktop
//! does): in every environment value given to a container, a loopback host (`127.0.0.1`,
//! `localhost`) is rewritten to that name. tansu advertises itself as
//! `host.docker.internal:9092`, a name `scripts/stack` maps to 127.0.0.1 on this machine, so
//! the broker's address is the same inside and outside the containers.
//!
//! Every replica listens on the same port inside its container (`PORT`: an API's manifest
//! port, a worker's 9100 for its health and metrics endpoints), published on 127.0.0.1 at a
//! host port of its own, from that port up. The host port is what `status` shows and what
//! health checks use.
//!
//! Every container carries labels that make it findable and comparable:
//! `shoal.project`, `shoal.env`, `shoal.consumer`, `shoal.revision` (a hash of everything that
//! makes the container what it is, except the replica count), `shoal.spec` (that spec as
//! JSON, secrets as digests), `shoal.replica` and `shoal.port`. Names are
//! `shoal-<project>-<env>-<consumer>-<rev8>-<i>`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::ecs::RolloutError;
use crate::manifest::{Consumer, Environment};

pub const LABEL_PROJECT: &str = "shoal.project";
pub const LABEL_ENV: &str = "shoal.env";
pub const LABEL_CONSUMER: &str = "shoal.consumer";
pub const LABEL_REVISION: &str = "shoal.revision";
pub const LABEL_SPEC: &str = "shoal.spec";
pub const LABEL_REPLICA: &str = "shoal.replica";
pub const LABEL_PORT: &str = "shoal.port";
/// A worker replica's `PORT` in its container, and the first host port tried for it.
pub const WORKER_PORT_BASE: u16 = 9100;
/// The name under which containers reach this machine (the local stack's services).
pub const HOST_NAME: &str = "host.docker.internal";

/// How long a worker must run without a restart before its rollout counts as done.
pub const SETTLE: Duration = Duration::from_secs(3);

/// How often a rollout looks at its containers.
const POLL: Duration = Duration::from_millis(300);

/// Log lines shown when a container fails its rollout.
const LOG_TAIL: &str = "20";

/// What the docker platform can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker Engine at {addr}: {cause}; is Docker running? DOCKER_HOST={}",
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "(unset)".into())
    )]
    Engine { addr: String, cause: String },
    #[error("Docker Engine: {operation}: {detail}")]
    Api { operation: String, detail: String },
    #[error(
        "{consumer} declares the secret {key}, which {file} does not set; add `{key} = \"...\"` \
         (for every consumer) or a [{consumer}] table with it to that file (keep it out of git)"
    )]
    MissingSecret {
        consumer: String,
        key: String,
        file: String,
    },
    #[error("{file}: {detail}")]
    SecretsFile { file: String, detail: String },
    #[error("{0}")]
    Other(String),
}

fn api(operation: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let operation = operation.into();
    move |e| DockerError::Api {
        operation,
        detail: crate::error::innermost(&e),
    }
}

/// Connects to the engine named by `DOCKER_HOST`, else the local socket.
pub async fn connect() -> Result<Docker, DockerError> {
    let engine = crate::image::Engine::from_env();
    engine
        .connect()
        .await
        .cloned()
        .map_err(|cause| DockerError::Engine {
            addr: engine.host().to_string(),
            cause,
        })
}

/// Where a project's secrets for the docker platform live: `<root>/.shoal/secrets.<env>.toml`.
pub fn secrets_path(root: &Path, env: &str) -> PathBuf {
    root.join(".shoal").join(format!("secrets.{env}.toml"))
}

/// The local secrets file: top-level `KEY = "value"` pairs for every consumer, and
/// `[consumer]` tables for one.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    pub file: String,
    shared: BTreeMap<String, String>,
    per_consumer: BTreeMap<String, BTreeMap<String, String>>,
}

impl Secrets {
    /// Reads the file; a missing file is an empty one (an error only when a secret is needed).
    pub fn load(path: &Path, root: &Path) -> Result<Secrets, DockerError> {
        let file = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Secrets {
                    file,
                    ..Secrets::default()
                })
            }
            Err(e) => {
                return Err(DockerError::SecretsFile {
                    file,
                    detail: e.to_string(),
                })
            }
        };
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| DockerError::SecretsFile {
                    file: file.clone(),
                    detail: e.to_string(),
                })?;
        let mut out = Secrets {
            file: file.clone(),
            ..Secrets::default()
        };
        for (k, v) in table {
            match v {
                toml::Value::String(s) => {
                    out.shared.insert(k, s);
                }
                toml::Value::Table(t) => {
                    let mut m = BTreeMap::new();
                    for (kk, vv) in t {
                        let toml::Value::String(s) = vv else {
                            return Err(DockerError::SecretsFile {
                                file,
                                detail: format!("{k}.{kk}: a secret must be a string"),
                            });
                        };
                        m.insert(kk, s);
                    }
                    out.per_consumer.insert(k, m);
                }
                _ => {
                    return Err(DockerError::SecretsFile {
                        file,
                        detail: format!("{k}: a secret must be a string (or a [consumer] table)"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The value of `key` for `consumer`.
    pub fn get(&self, consumer: &str, key: &str) -> Option<&str> {
        self.per_consumer
            .get(consumer)
            .and_then(|m| m.get(key))
            .or_else(|| self.shared.get(key))
            .map(String::as_str)
    }
}

/// How one consumer's containers should be: everything but the replica count determines
/// the revision.
#[derive(Debug, Clone)]
pub struct Spec {
    pub consumer: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `NAME=value` lines as the container gets them ([`in_container`]), secrets included,
    /// `PORT` excluded (set when a replica starts).
    pub env: Vec<String>,
    pub api: Option<ApiCheck>,
    pub replicas: u32,
    /// The comparable spec (secrets as digests), without the replica count.
    pub spec: Value,
    /// The short hash of `spec`.
    pub revision: String,
}

/// How an API replica is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCheck {
    /// The port it listens on in its container; its host port is the first free one from
    /// here up.
    pub port: u16,
    pub health_path: String,
}

fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Spec {
    /// The spec of a consumer: `environment` is what ECS would get (manifest `[env]`,
    /// environment `vars`, `KAFKA_BOOTSTRAP`, ...), secrets come from the local file.
    pub fn new(
        consumer: &Consumer,
        image: String,
        mut environment: BTreeMap<String, String>,
        secrets: &Secrets,
        replicas: u32,
    ) -> Result<Spec, DockerError> {
        let api = consumer.api.as_ref().map(|a| ApiCheck {
            port: a.port,
            health_path: a.health_path.clone(),
        });
        environment.remove("PORT");
        let mut secret_digests = BTreeMap::new();
        for key in consumer.secrets.keys() {
            let value =
                secrets
                    .get(&consumer.name, key)
                    .ok_or_else(|| DockerError::MissingSecret {
                        consumer: consumer.name.clone(),
                        key: key.clone(),
                        file: secrets.file.clone(),
                    })?;
            secret_digests.insert(key.clone(), format!("sha256:{}", digest(value)));
            environment.insert(key.clone(), value.to_string());
        }
        for value in environment.values_mut() {
            *value = in_container(value);
        }
        let mut plain = BTreeMap::new();
        for (k, v) in &environment {
            if !consumer.secrets.contains_key(k) {
                plain.insert(k.clone(), v.clone());
            }
        }
        let mut spec = json!({
            "image": image,
            "environment": plain,
            "network": "project",
            "hosts": { HOST_NAME: "host-gateway" },
            "restart": "unless-stopped",
        });
        if let Some(command) = &consumer.command {
            spec["command"] = json!(command);
        }
        if !secret_digests.is_empty() {
            spec["secrets"] = json!(secret_digests);
        }
        if let Some(a) = &api {
            spec["api"] = json!({"port": a.port, "healthPath": a.health_path});
        }
        let revision = digest(&crate::render::canonical(&spec).to_string());
        Ok(Spec {
            consumer: consumer.name.clone(),
            image,
            command: consumer.command.clone(),
            env: environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            api,
            replicas,
            spec,
            revision,
        })
    }

    /// The spec as the plan compares it: with the replica count.
    pub fn plan_spec(&self) -> Value {
        let mut v = self.spec.clone();
        v["replicas"] = Value::from(self.replicas);
        v
    }
}

/// One container of the project, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub consumer: String,
    pub revision: String,
    pub replica: u32,
    pub port: Option<u16>,
    /// created, running, restarting, exited, ...
    pub state: String,
    pub created: i64,
    #[serde(skip)]
    pub spec: Option<Value>,
}

impl Container {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// Every container of the project in the environment, oldest first.
pub async fn list(
    docker: &Docker,
    project: &str,
    env: &str,
) -> Result<Vec<Container>, DockerError> {
    let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
    filters.insert(
        "label",
        vec![
            format!("{LABEL_PROJECT}={project}"),
            format!("{LABEL_ENV}={env}"),
        ],
    );
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(api("list containers"))?;
    let mut out: Vec<Container> = found
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            Some(Container {
                id: c.id?,
                name,
                consumer: labels.get(LABEL_CONSUMER)?.clone(),
                revision: labels.get(LABEL_REVISION)?.clone(),
                replica: labels
                    .get(LABEL_REPLICA)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
                port: labels.get(LABEL_PORT).and_then(|p| p.parse().ok()),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                created: c.created.unwrap_or(0),
                spec: labels
                    .get(LABEL_SPEC)
                    .and_then(|s| serde_json::from_str(s).ok()),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// One consumer's containers, split into the revision it runs and the rest.
#[derive(Debug, Clone)]
pub struct LiveSet {
    pub consumer: String,
    /// The revision most of its running containers have (the newest on a tie).
    pub revision: String,
    pub spec: Option<Value>,
    /// The containers of `revision`: their count is the desired count.
    pub current: Vec<Container>,
    /// Containers of other revisions (left over from an interrupted rollout).
    pub others: Vec<Container>,
}

impl LiveSet {
    pub fn desired(&self) -> u32 {
        self.current.len() as u32
    }

    pub fn running(&self) -> u32 {
        self.current.iter().filter(|c| c.running()).count() as u32
    }

    /// The spec as the plan compares it.
    pub fn plan_spec(&self) -> Value {
        let mut v = self.spec.clone().unwrap_or_else(|| json!({}));
        v["replicas"] = Value::from(self.desired());
        v
    }
}

/// Groups containers by consumer.
pub fn live_sets(containers: &[Container]) -> BTreeMap<String, LiveSet> {
    let mut by_consumer: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in containers {
        by_consumer.entry(&c.consumer).or_default().push(c);
    }
    by_consumer
        .into_iter()
        .map(|(consumer, cs)| {
            // (running count, newest creation) per revision; the highest wins.
            let mut score: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
            for c in &cs {
                let e = score.entry(&c.revision).or_default();
                e.0 += usize::from(c.running());
                e.1 = e.1.max(c.created);
            }
            let revision = score
                .iter()
                .max_by_key(|(_, s)| **s)
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            let (current, others): (Vec<Container>, Vec<Container>) = cs
                .into_iter()
                .cloned()
                .partition(|c| c.revision == revision);
            let spec = current.iter().find_map(|c| c.spec.clone());
            (
                consumer.to_string(),
                LiveSet {
                    consumer: consumer.to_string(),
                    revision,
                    spec,
                    current,
                    others,
                },
            )
        })
        .collect()
}

/// What starting one container needs; made from a [`Spec`] (a deploy) or from a running
/// container of the revision (the autoscaler, which does not recompute specs).
#[derive(Debug, Clone)]
pub struct Template {
    pub project: String,
    pub env: String,
    pub consumer: String,
    pub revision: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub environment: Vec<String>,
    pub spec_label: String,
    pub api: Option<ApiCheck>,
}

impl Template {
    pub fn from_spec(project: &str, env: &str, spec: &Spec) -> Template {
        Template {
            project: project.to_string(),
            env: env.to_string(),
            consumer: spec.consumer.clone(),
            revision: spec.revision.clone(),
            image: spec.image.clone(),
            command: spec.command.clone(),
            environment: spec.env.clone(),
            spec_label: crate::render::canonical(&spec.spec).to_string(),
            api: spec.api.clone(),
        }
    }

    /// The template of a live container: its image, command, environment and labels.
    pub async fn from_container(docker: &Docker, id: &str) -> Result<Template, DockerError> {
        let inspected = docker
            .inspect_container(id, None)
            .await
            .map_err(api(format!("inspect {id}")))?;
        let config = inspected.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let spec_label = label(LABEL_SPEC);
        let spec: Value = serde_json::from_str(&spec_label).unwrap_or(Value::Null);
        let api = spec["api"].as_object().map(|a| ApiCheck {
            port: a
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(8080),
            health_path: a
                .get("healthPath")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string(),
        });
        Ok(Template {
            project: label(LABEL_PROJECT),
            env: label(LABEL_ENV),
            consumer: label(LABEL_CONSUMER),
            revision: label(LABEL_REVISION),
            image: config.image.unwrap_or_default(),
            command: spec["command"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            }),
            environment: config
                .env
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !e.starts_with("PORT="))
                .collect(),
            spec_label,
            api,
        })
    }

    fn name(&self, replica: u32) -> String {
        let rev8: String = self.revision.chars().take(8).collect();
        format!(
            "shoal-{}-{}-{}-{rev8}-{replica}",
            self.project, self.env, self.consumer
        )
    }
}

/// A container started by shoal and not yet known to be healthy.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub name: String,
    pub port: Option<u16>,
}

/// Ports already taken: by this project's containers (listed) and by anything listening.
#[derive(Debug, Default)]
pub struct Ports {
    taken: BTreeSet<u16>,
}

impl Ports {
    pub fn new(containers: &[Container]) -> Ports {
        Ports {
            taken: containers.iter().filter_map(|c| c.port).collect(),
        }
    }

    /// The first port from `from` that nothing has and nothing listens on.
    pub fn next(&mut self, from: u16) -> Result<u16, DockerError> {
        let mut p = from;
        loop {
            if !self.taken.contains(&p) && std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
                self.taken.insert(p);
                return Ok(p);
            }
            p = p.checked_add(1).ok_or_else(|| {
                DockerError::Other(format!("no free port from {from} up to 65535"))
            })?;
        }
    }
}

/// Creates and starts replica `replica` of a template.
pub async fn start(
    docker: &Docker,
    t: &Template,
    replica: u32,
    ports: &mut Ports,
) -> Result<Started, DockerError> {
    let name = t.name(replica);
    let network = ensure_network(docker, &t.project, &t.env).await?;
    let inner = t.api.as_ref().map_or(WORKER_PORT_BASE, |a| a.port);
    let port = ports.next(inner)?;
    let mut env = t.environment.clone();
    env.push(format!("PORT={inner}"));
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert(LABEL_PROJECT.into(), t.project.clone());
    labels.insert(LABEL_ENV.into(), t.env.clone());
    labels.insert(LABEL_CONSUMER.into(), t.consumer.clone());
    labels.insert(LABEL_REVISION.into(), t.revision.clone());
    labels.insert(LABEL_SPEC.into(), t.spec_label.clone());
    labels.insert(LABEL_REPLICA.into(), replica.to_string());
    labels.insert(LABEL_PORT.into(), port.to_string());
    let published = format!("{inner}/tcp");
    let bindings = HashMap::from([(
        published.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(port.to_string()),
        }]),
    )]);
    let body = ContainerCreateBody {
        image: Some(t.image.clone()),
        cmd: t.command.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(vec![published]),
        host_config: Some(HostConfig {
            network_mode: Some(network),
            extra_hosts: Some(vec![format!("{HOST_NAME}:host-gateway")]),
            port_bindings: Some(bindings),
            init: Some(true),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    info!(container = %name, image = %t.image, port, "starting container");
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .map_err(api(format!("create container {name}")))?;
    docker
        .start_container(&created.id, None)
        .await
        .map_err(api(format!("start container {name}")))?;
    Ok(Started {
        id: created.id,
        name,
        port: Some(port),
    })
}

/// Stops (SIGTERM, then SIGKILL after 10 s) and removes a container.
pub async fn remove(docker: &Docker, id_or_name: &str) -> Result<(), DockerError> {
    debug!(container = id_or_name, "stopping and removing");
    let stopped = docker
        .stop_container(
            id_or_name,
            Some(StopContainerOptionsBuilder::default().t(10).build()),
        )
        .await;
    if let Err(e) = stopped {
        debug!(container = id_or_name, error = %e, "stop");
    }
    match docker
        .remove_container(
            id_or_name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(api(format!("remove container {id_or_name}"))(e)),
    }
}

/// The last lines a container wrote.
pub async fn last_logs(docker: &Docker, id: &str) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(LOG_TAIL)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
            Err(_) => break,
        }
    }
    text.lines().map(str::to_string).collect()
}

/// The HTTP status of `GET http://127.0.0.1:<port><path>`, or `None` when nothing answers.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf);
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// Waits until every started container is healthy: an API answers 2xx on its health path,
/// a worker runs for [`SETTLE`] without a restart. A container that exits or restarts, or
/// the timeout, fails the rollout with the container's last log lines.
pub async fn wait_healthy(
    docker: &Docker,
    consumer: &str,
    started: &[Started],
    api_check: Option<&ApiCheck>,
    timeout: Duration,
) -> Result<(), RolloutError> {
    let begin = Instant::now();
    let mut healthy: BTreeSet<String> = BTreeSet::new();
    let mut running_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        for s in started {
            if healthy.contains(&s.id) {
                continue;
            }
            let inspected = docker.inspect_container(&s.id, None).await.map_err(|e| {
                RolloutError::Container {
                    service: consumer.to_string(),
                    container: s.name.clone(),
                    reason: format!("cannot inspect: {}", crate::error::innermost(&e)),
                    logs: Vec::new(),
                }
            })?;
            let state = inspected.state.unwrap_or_default();
            let restarts = inspected.restart_count.unwrap_or(0);
            let status = state.status.map(|s| s.to_string()).unwrap_or_default();
            if restarts > 0 || status != "running" && status != "created" {
                let logs = last_logs(docker, &s.id).await;
                return Err(RolloutError::Container {
                    service: consumer.to_string(),
                    container: s.name.clone(),
                    reason: if restarts > 0 {
                        format!("the new container exited and was restarted {restarts} time(s); the old containers keep serving")
                    } else {
                        format!(
                            "the new container is {status} (exit code {}); the old containers keep serving",
                            state.exit_code.unwrap_or(0)
                        )
                    },
                    logs,
                });
            }
            if status != "running" {
                continue;
            }
            match (api_check, s.port) {
                (Some(a), Some(port)) => {
                    if http_status(port, &a.health_path)
                        .await
                        .is_some_and(|c| (200..300).contains(&c))
                    {
                        info!(container = %s.name, port, "healthy");
                        healthy.insert(s.id.clone());
                    }
                }
                _ => {
                    let since = *running_since
                        .entry(s.id.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= SETTLE {
                        info!(container = %s.name, "running without restarts");
                        healthy.insert(s.id.clone());
                    }
                }
            }
        }
        if healthy.len() == started.len() {
            return Ok(());
        }
        if begin.elapsed() >= timeout {
            let waiting = started
                .iter()
                .find(|s| !healthy.contains(&s.id))
                .map(|s| (s.name.clone(), s.id.clone()))
                .unwrap_or_default();
            return Err(RolloutError::Container {
                service: consumer.to_string(),
                container: waiting.0,
                reason: format!(
                    "not healthy within {} s; the old containers keep serving",
                    timeout.as_secs()
                ),
                logs: last_logs(docker, &waiting.1).await,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The lowest replica numbers not used by `existing`, `n` of them.
pub fn free_replicas(existing: &[Container], n: u32) -> Vec<u32> {
    let used: BTreeSet<u32> = existing.iter().map(|c| c.replica).collect();
    (0..)
        .filter(|i| !used.contains(i))
        .take(n as usize)
        .collect()
}

/// Scales a consumer's current revision to `count` containers: starts the missing ones
/// from `template` (and waits until they are healthy), or removes the highest-numbered ones.
pub async fn scale_to(
    docker: &Docker,
    set: &LiveSet,
    template: &Template,
    all: &[Container],
    count: u32,
    timeout: Duration,
) -> Result<(), RolloutError> {
    let have = set.desired();
    let err = |e: DockerError| RolloutError::Container {
        service: set.consumer.clone(),
        container: String::new(),
        reason: e.to_string(),
        logs: Vec::new(),
    };
    if count > have {
        let mut ports = Ports::new(all);
        let mut started = Vec::new();
        for replica in free_replicas(&set.current, count - have) {
            started.push(
                start(docker, template, replica, &mut ports)
                    .await
                    .map_err(err)?,
            );
        }
        if let Err(e) = wait_healthy(
            docker,
            &set.consumer,
            &started,
            template.api.as_ref(),
            timeout,
        )
        .await
        {
            for s in &started {
                if let Err(e) = remove(docker, &s.id).await {
                    warn!(container = %s.name, error = %e, "cannot remove a failed container");
                }
            }
            return Err(e);
        }
    } else if count < have {
        let mut victims = set.current.clone();
        // Stopped ones first, then the highest replica numbers.
        victims.sort_by_key(|c| (c.running(), std::cmp::Reverse(c.replica)));
        for c in victims.into_iter().take((have - count) as usize) {
            remove(docker, &c.id).await.map_err(err)?;
        }
    }
    Ok(())
}

/// Removes the project's containers in an environment, then its network. Returns the names
/// removed.
pub async fn down(docker: &Docker, project: &str, env: &str) -> Result<Vec<String>, DockerError> {
    let containers = list(docker, project, env).await?;
    let removals = containers.iter().map(|c| remove(docker, &c.id));
    for r in futures_util::future::join_all(removals).await {
        r?;
    }
    let network = network_name(project, env);
    if let Err(e) = docker.remove_network(&network).await {
        debug!(%network, error = %e, "no network to remove");
    }
    Ok(containers.into_iter().map(|c| c.name).collect())
}

/// The network of a project's containers in an environment.
pub fn network_name(project: &str, env: &str) -> String {
    format!("shoal-{project}-{env}")
}

/// Creates the project's network unless it exists; returns its name.
async fn ensure_network(docker: &Docker, project: &str, env: &str) -> Result<String, DockerError> {
    let name = network_name(project, env);
    if docker.inspect_network(&name, None).await.is_ok() {
        return Ok(name);
    }
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_ENV.to_string(), env.to_string()),
    ]);
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(labels),
        ..NetworkCreateRequest::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            info!(network = %name, "created the project's network");
            Ok(name)
        }
        // Another deploy or scale made it meanwhile.
        Err(_) if docker.inspect_network(&name, None).await.is_ok() => Ok(name),
        Err(e) => Err(api(format!("create network {name}"))(e)),
    }
}

/// An environment value as a container needs it: a loopback host (this machine's services, as
/// `shoal.toml` names them) becomes [`HOST_NAME`]. Only whole host names are replaced, where a
/// URL, a `host:port` or a list puts them.
pub fn in_container(value: &str) -> String {
    static LOOPBACK: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = LOOPBACK.get_or_init(|| {
        regex::Regex::new(r"(^|[/@,;=\s])(?:127\.0\.0\.1|localhost)([:/,;?\s]|$)")
            .expect("valid regex")
    });
    // Twice: adjacent matches share a separator ("127.0.0.1,localhost").
    let once = re.replace_all(value, format!("${{1}}{HOST_NAME}${{2}}"));
    re.replace_all(&once, format!("${{1}}{HOST_NAME}${{2}}"))
        .into_owned()
}

/// The autoscaler's view of the docker platform: a consumer's desired count is the number of
/// containers of the revision it runs.
#[derive(Debug, Clone)]
pub struct DockerScale {
    pub docker: Docker,
    pub project: String,
    pub env: String,
    /// For a consumer with no container at all (scaling from zero): the deploy's spec.
    pub fallback: BTreeMap<String, Template>,
    /// How long new containers may take to become healthy.
    pub timeout: Duration,
}

impl DockerScale {
    pub fn new(docker: Docker, env: &Environment, project: &str) -> DockerScale {
        DockerScale {
            docker,
            project: project.to_string(),
            env: env.name.clone(),
            fallback: BTreeMap::new(),
            timeout: Duration::from_secs(120),
        }
    }

    async fn set_of(&self, consumer: &str) -> Result<(Vec<Container>, Option<LiveSet>), String> {
        let all = list(&self.docker, &self.project, &self.env)
            .await
            .map_err(|e| e.to_string())?;
        let set = live_sets(&all).remove(consumer);
        Ok((all, set))
    }
}

impl crate::scale::daemon::Scale for DockerScale {
    async fn current(&self, service: &str) -> Result<u32, String> {
        let (_, set) = self.set_of(service).await?;
        Ok(set.map_or(0, |s| s.desired()))
    }

    async fn set(&self, service: &str, count: u32) -> Result<(), String> {
        let (all, set) = self.set_of(service).await?;
        let (set, template) = match set {
            Some(set) => {
                let Some(first) = set.current.first() else {
                    return Err(format!("{service} has no containers"));
                };
                let t = Template::from_container(&self.docker, &first.id)
                    .await
                    .map_err(|e| e.to_string())?;
                (set, t)
            }
            None => {
                let t = self.fallback.get(service).cloned().ok_or_else(|| {
                    format!(
                        "{service} has no containers to scale; run `shoal deploy --env {}` first",
                        self.env
                    )
                })?;
                let set = LiveSet {
                    consumer: service.to_string(),
                    revision: t.revision.clone(),
                    spec: None,
                    current: Vec::new(),
                    others: Vec::new(),
                };
                (set, t)
            }
        };
        info!(
            consumer = service,
            from = set.desired(),
            to = count,
            "scaling containers"
        );
        scale_to(&self.docker, &set, &template, &all, count, self.timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(consumer: &str, rev: &str, replica: u32, state: &str, created: i64) -> Container {
        Container {
            id: format!("{consumer}-{rev}-{replica}"),
            name: String::new(),
            consumer: consumer.into(),
            revision: rev.into(),
            replica,
            port: None,
            state: state.into(),
            created,
            spec: None,
        }
    }

    #[test]
    fn the_current_revision_is_the_one_with_most_running_containers() {
        let all = vec![
            c("a", "old", 0, "running", 1),
            c("a", "old", 1, "running", 1),
            c("a", "new", 0, "restarting", 5),
            c("b", "x", 0, "exited", 1),
        ];
        let sets = live_sets(&all);
        assert_eq!(sets["a"].revision, "old");
        assert_eq!(sets["a"].desired(), 2);
        assert_eq!(sets["a"].others.len(), 1);
        assert_eq!(sets["b"].running(), 0);
        assert_eq!(sets["b"].desired(), 1);
    }

    #[test]
    fn loopback_hosts_become_the_host_name_in_containers() {
        let cases = [
            (
                "postgres://shoal:shoal@127.0.0.1:5432/shoal",
                "postgres://shoal:shoal@host.docker.internal:5432/shoal",
            ),
            (
                "127.0.0.1:9092,localhost:9093",
                "host.docker.internal:9092,host.docker.internal:9093",
            ),
            ("http://localhost/x", "http://host.docker.internal/x"),
            ("localhost", "host.docker.internal"),
            ("127.0.0.10:5", "127.0.0.10:5"),
            ("mylocalhost:1", "mylocalhost:1"),
            ("localhost.example.com:1", "localhost.example.com:1"),
            (
                "b-1.kafka.amazonaws.com:9098",
                "b-1.kafka.amazonaws.com:9098",
            ),
            ("host.docker.internal:9092", "host.docker.internal:9092"),
        ];
        for (given, want) in cases {
            assert_eq!(in_container(given), want, "{given}");
        }
    }

    #[test]
    fn free_replica_numbers_fill_gaps() {
        let all = vec![c("a", "r", 0, "running", 1), c("a", "r", 2, "running", 1)];
        assert_eq!(free_replicas(&all, 3), vec![1, 3, 4]);
    }

    fn api_consumer(extra: &str) -> Consumer {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("consumers/web");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write");
        let text = format!("kind = \"api\"\n[api]\nport = 8080\nhealth_path = \"/h\"\n{extra}");
        Consumer::parse(root.path(), &dir, &text).expect("valid manifest")
    }

    fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_revision_ignores_the_count_and_port_and_hides_secret_values() {
        let c =
            api_consumer("[secrets]\nTOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/t\"\n");
        let mut secrets = Secrets::default();
        secrets.shared.insert("TOKEN".into(), "s3cret".into());
        let env = env_of(&[("PORT", "8080"), ("A", "1")]);
        let one = Spec::new(&c, "img:1".into(), env.clone(), &secrets, 1).expect("spec");
        let two = Spec::new(&c, "img:1".into(), env.clone(), &secrets, 3).expect("spec");
        assert_eq!(one.revision, two.revision);
        assert!(!one.env.iter().any(|e| e.starts_with("PORT=")));
        assert!(one.env.contains(&"TOKEN=s3cret".to_string()));
        assert!(!one.spec.to_string().contains("s3cret"));
        secrets.shared.insert("TOKEN".into(), "other".into());
        let rotated = Spec::new(&c, "img:1".into(), env, &secrets, 1).expect("spec");
        assert_ne!(
            one.revision, rotated.revision,
            "a new secret value is a new revision"
        );
    }

    #[test]
    fn a_missing_secret_names_the_file_and_the_key() {
        let c =
            api_consumer("[secrets]\nTOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/t\"\n");
        let secrets = Secrets {
            file: ".shoal/secrets.local.toml".into(),
            ..Secrets::default()
        };
        let err = Spec::new(&c, "img:1".into(), BTreeMap::new(), &secrets, 1)
            .expect_err("missing secret");
        let text = err.to_string();
        assert!(
            text.contains("TOKEN") && text.contains(".shoal/secrets.local.toml"),
            "{text}"
        );
    }

    #[test]
    fn a_consumer_table_overrides_a_shared_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "A = \"1\"\nB = \"2\"\n[w]\nA = \"3\"\n").expect("write");
        let s = Secrets::load(&path, dir.path()).expect("loads");
        assert_eq!(s.get("w", "A"), Some("3"));
        assert_eq!(s.get("v", "A"), Some("1"));
        assert_eq!(s.get("w", "B"), Some("2"));
        assert_eq!(s.get("w", "C"), None);
    }
}
