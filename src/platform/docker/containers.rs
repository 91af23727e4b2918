//! Containers: listing them, grouping them per consumer, creating, starting and removing
//! them, their ports, and the project's network.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use serde_json::{json, Value};
use tracing::{debug, info};

use super::*;

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

    /// The desired and running counts, as the autoscaler reads them.
    pub fn counts(&self) -> crate::platform::Counts {
        crate::platform::Counts {
            desired: self.desired(),
            running: self.running(),
        }
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

/// How many host ports a replica tries before its start fails: another deploy can take the port
/// `Ports::next` found free before this container is started on it.
const PORT_ATTEMPTS: usize = 5;

/// Creates and starts replica `replica` of a template, on the first free host port from its
/// inner port up.
pub async fn start(
    docker: &Docker,
    t: &Template,
    replica: u32,
    ports: &mut Ports,
) -> Result<Started, DockerError> {
    let name = t.name(replica);
    let network = ensure_network(docker, &t.project, &t.env).await?;
    let inner = t.api.as_ref().map_or(WORKER_PORT_BASE, |a| a.port);
    let mut attempt = 1;
    loop {
        let port = ports.next(inner)?;
        info!(container = %name, image = %t.image, port, "starting container");
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                create_body(t, replica, &network, inner, port),
            )
            .await
            .map_err(api(format!("create container {name}")))?;
        match docker.start_container(&created.id, None).await {
            Ok(()) => {
                return Ok(Started {
                    id: created.id,
                    name,
                    port: Some(port),
                })
            }
            Err(e) if port_taken(&e) && attempt < PORT_ATTEMPTS => {
                info!(container = %name, port, "the host port was taken meanwhile; trying the next");
                remove(docker, &created.id).await?;
                attempt += 1;
            }
            Err(e) => return Err(api(format!("start container {name}"))(e)),
        }
    }
}

/// Whether the engine refused to start a container because its host port is taken. The
/// engine says so only in its message.
pub(super) fn port_taken(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 500, message }
            if message.contains("port is already allocated")
                || message.contains("address already in use")
    )
}

/// The container of replica `replica`, listening on `inner` and published on 127.0.0.1:`port`.
fn create_body(
    t: &Template,
    replica: u32,
    network: &str,
    inner: u16,
    port: u16,
) -> ContainerCreateBody {
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
    ContainerCreateBody {
        image: Some(t.image.clone()),
        cmd: t.command.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(vec![published]),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
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
    }
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
pub(super) async fn ensure_network(
    docker: &Docker,
    project: &str,
    env: &str,
) -> Result<String, DockerError> {
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
