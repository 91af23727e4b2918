//! ECS task definitions: shoal's rendered JSON (the shape of ECS's RegisterTaskDefinition
//! request, camelCase) to and from the SDK's types, and [`normalize`], the form in which a
//! rendered definition and the active revision are compared.
//!
//! The conversion covers the fields Fargate workloads commonly use (see `TASK_KEYS`,
//! `CONTAINER_KEYS`). Anything else in the JSON is an error that names the key: a field that
//! shoal silently dropped would be a deploy that does not do what the template says.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_ecs::error::BuildError;
use aws_sdk_ecs::types::{
    ApplicationProtocol, Compatibility, ContainerDefinition, CpuArchitecture, EphemeralStorage,
    HealthCheck, HostVolumeProperties, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    OsFamily, PortMapping, RuntimePlatform, Secret, Tag, TaskDefinition, TaskDefinitionField,
    TransportProtocol, Ulimit, UlimitName, Volume,
};
use serde_json::{Map, Value};

use super::AwsError;

const ECS: &str = "ECS";

/// A registered revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub arn: String,
    pub family: String,
    pub revision: i32,
}

/// Registers a rendered task definition as a new revision of its family. The JSON is
/// converted first, so a definition shoal cannot convert fails before any call.
pub async fn register(client: &aws_sdk_ecs::Client, td: &Value) -> Result<Registered, AwsError> {
    const OP: &str = "RegisterTaskDefinition";
    let (def, tags) = from_json(td)?;
    let out = client
        .register_task_definition()
        .set_family(def.family)
        .set_task_role_arn(def.task_role_arn)
        .set_execution_role_arn(def.execution_role_arn)
        .set_network_mode(def.network_mode)
        .set_requires_compatibilities(def.requires_compatibilities)
        .set_cpu(def.cpu)
        .set_memory(def.memory)
        .set_runtime_platform(def.runtime_platform)
        .set_ephemeral_storage(def.ephemeral_storage)
        .set_volumes(def.volumes)
        .set_container_definitions(def.container_definitions)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(ECS, OP, e))?;
    let td = out
        .task_definition
        .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinition"))?;
    Ok(Registered {
        arn: td
            .task_definition_arn
            .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinitionArn"))?,
        family: td
            .family
            .ok_or_else(|| AwsError::missing(ECS, OP, "family"))?,
        revision: td.revision,
    })
}

/// The active revision of a family (or the revision an ARN or `family:revision` names), in
/// the JSON shape of [`to_json`], with its tags; `None` when there is no such task definition.
pub async fn describe(
    client: &aws_sdk_ecs::Client,
    family_or_arn: &str,
) -> Result<Option<Value>, AwsError> {
    const OP: &str = "DescribeTaskDefinition";
    let result = client
        .describe_task_definition()
        .task_definition(family_or_arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    match result {
        Ok(out) => {
            let td = out
                .task_definition
                .ok_or_else(|| AwsError::missing(ECS, OP, "taskDefinition"))?;
            Ok(Some(to_json(&td, out.tags.as_deref().unwrap_or_default())))
        }
        // ECS (and moto) answer an unknown family or revision with a ClientException
        // "Unable to describe task definition." rather than a dedicated code.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_client_exception()
                    && s.meta()
                        .message()
                        .is_some_and(|m| m.starts_with("Unable to describe task definition"))
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsError::from_sdk(ECS, OP, e)),
    }
}

// ------------------------------------------------------------------------------ errors

/// Why a task definition cannot be converted: every problem found, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// The family, when the JSON names one.
    pub family: Option<String>,
    pub problems: Vec<Problem>,
}

/// One problem at one key path, e.g. `containerDefinitions[0].cpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A key the conversion does not handle.
    Unsupported,
    /// A required key is absent (or null).
    Missing,
    /// A value of the wrong JSON type.
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// A string that is not one of the values ECS accepts for the key.
    NotOneOf {
        value: String,
        allowed: &'static [&'static str],
    },
    /// The SDK refused the value.
    Invalid(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.kind {
            ProblemKind::Unsupported => write!(
                f,
                "{path} is not supported by shoal's RegisterTaskDefinition conversion"
            ),
            ProblemKind::Missing => write!(f, "{path} is required"),
            ProblemKind::WrongType { expected, found } => {
                write!(f, "{path} must be {expected}, not {found}")
            }
            ProblemKind::NotOneOf { value, allowed } => write!(
                f,
                "{path} is {value:?}, which is not one of {}",
                allowed.join(", ")
            ),
            ProblemKind::Invalid(why) => write!(f, "{path}: {why}"),
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.family {
            Some(family) => write!(f, "task definition {family}: ")?,
            None => write!(f, "task definition: ")?,
        }
        if let [one] = self.problems.as_slice() {
            return write!(f, "{one}");
        }
        write!(f, "{} problems: ", self.problems.len())?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConvertError {}

// ------------------------------------------------------------------------------ JSON → SDK

const TASK_KEYS: &[&str] = &[
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "runtimePlatform",
    "ephemeralStorage",
    "tags",
    "volumes",
    "containerDefinitions",
];
const CONTAINER_KEYS: &[&str] = &[
    "name",
    "image",
    "essential",
    "cpu",
    "memory",
    "memoryReservation",
    "command",
    "entryPoint",
    "workingDirectory",
    "user",
    "environment",
    "secrets",
    "portMappings",
    "healthCheck",
    "logConfiguration",
    "dockerLabels",
    "stopTimeout",
    "readonlyRootFilesystem",
    "ulimits",
];
const PORT_KEYS: &[&str] = &[
    "containerPort",
    "hostPort",
    "protocol",
    "name",
    "appProtocol",
    "containerPortRange",
];
const HEALTH_KEYS: &[&str] = &["command", "interval", "timeout", "retries", "startPeriod"];
const LOG_KEYS: &[&str] = &["logDriver", "options", "secretOptions"];
const ULIMIT_KEYS: &[&str] = &["name", "softLimit", "hardLimit"];
const RUNTIME_KEYS: &[&str] = &["cpuArchitecture", "operatingSystemFamily"];
const VOLUME_KEYS: &[&str] = &["name", "host"];

/// Converts rendered JSON into the SDK's task definition (the request fields) and its tags.
/// Every problem is reported at once.
pub fn from_json(v: &Value) -> Result<(TaskDefinition, Vec<Tag>), ConvertError> {
    let mut r = Reader::default();
    let family_name = v.get("family").and_then(Value::as_str).map(str::to_string);
    let mut tags = Vec::new();
    let mut td = TaskDefinition::builder();
    if let Some(m) = r.object("", v, TASK_KEYS) {
        td = td
            .set_family(
                r.required(m, "", "family")
                    .and_then(|x| r.string("family", x)),
            )
            .set_task_role_arn(field(m, "taskRoleArn").and_then(|x| r.string("taskRoleArn", x)))
            .set_execution_role_arn(
                field(m, "executionRoleArn").and_then(|x| r.string("executionRoleArn", x)),
            )
            .set_network_mode(
                field(m, "networkMode")
                    .and_then(|x| r.one_of("networkMode", x, NetworkMode::values())),
            )
            .set_requires_compatibilities(field(m, "requiresCompatibilities").and_then(|x| {
                r.each("requiresCompatibilities", x, |r, p, item| {
                    r.one_of(p, item, Compatibility::values())
                })
            }))
            .set_cpu(field(m, "cpu").and_then(|x| r.string("cpu", x)))
            .set_memory(field(m, "memory").and_then(|x| r.string("memory", x)))
            .set_runtime_platform(
                field(m, "runtimePlatform").and_then(|x| runtime_platform(&mut r, x)),
            )
            .set_ephemeral_storage(
                field(m, "ephemeralStorage").and_then(|x| ephemeral_storage(&mut r, x)),
            )
            .set_volumes(field(m, "volumes").and_then(|x| r.each("volumes", x, volume)))
            .set_container_definitions(
                r.required(m, "", "containerDefinitions")
                    .and_then(|x| r.each("containerDefinitions", x, container)),
            );
        if let Some(x) = field(m, "tags") {
            tags = r.each("tags", x, tag).unwrap_or_default();
        }
    }
    if r.problems.is_empty() {
        Ok((td.build(), tags))
    } else {
        Err(ConvertError {
            family: family_name,
            problems: r.problems,
        })
    }
}

fn container(r: &mut Reader, path: &str, v: &Value) -> Option<ContainerDefinition> {
    let m = r.object(path, v, CONTAINER_KEYS)?;
    let p = |k: &str| join(path, k);
    let c = ContainerDefinition::builder()
        .set_name(
            r.required(m, path, "name")
                .and_then(|x| r.string(&p("name"), x)),
        )
        .set_image(
            r.required(m, path, "image")
                .and_then(|x| r.string(&p("image"), x)),
        )
        .set_essential(field(m, "essential").and_then(|x| r.bool(&p("essential"), x)))
        .set_cpu(field(m, "cpu").and_then(|x| r.int(&p("cpu"), x)))
        .set_memory(field(m, "memory").and_then(|x| r.int(&p("memory"), x)))
        .set_memory_reservation(
            field(m, "memoryReservation").and_then(|x| r.int(&p("memoryReservation"), x)),
        )
        .set_command(field(m, "command").and_then(|x| r.strings(&p("command"), x)))
        .set_entry_point(field(m, "entryPoint").and_then(|x| r.strings(&p("entryPoint"), x)))
        .set_working_directory(
            field(m, "workingDirectory").and_then(|x| r.string(&p("workingDirectory"), x)),
        )
        .set_user(field(m, "user").and_then(|x| r.string(&p("user"), x)))
        .set_environment(
            field(m, "environment").and_then(|x| r.each(&p("environment"), x, key_value)),
        )
        .set_secrets(field(m, "secrets").and_then(|x| r.each(&p("secrets"), x, secret)))
        .set_port_mappings(
            field(m, "portMappings").and_then(|x| r.each(&p("portMappings"), x, port_mapping)),
        )
        .set_health_check(
            field(m, "healthCheck").and_then(|x| health_check(r, &p("healthCheck"), x)),
        )
        .set_log_configuration(
            field(m, "logConfiguration")
                .and_then(|x| log_configuration(r, &p("logConfiguration"), x)),
        )
        .set_docker_labels(
            field(m, "dockerLabels").and_then(|x| r.string_map(&p("dockerLabels"), x)),
        )
        .set_stop_timeout(field(m, "stopTimeout").and_then(|x| r.int(&p("stopTimeout"), x)))
        .set_readonly_root_filesystem(
            field(m, "readonlyRootFilesystem")
                .and_then(|x| r.bool(&p("readonlyRootFilesystem"), x)),
        )
        .set_ulimits(field(m, "ulimits").and_then(|x| r.each(&p("ulimits"), x, ulimit)));
    Some(c.build())
}

fn key_value(r: &mut Reader, path: &str, v: &Value) -> Option<KeyValuePair> {
    let m = r.object(path, v, &["name", "value"])?;
    let name = r
        .required(m, path, "name")
        .and_then(|x| r.string(&join(path, "name"), x));
    let value = field(m, "value").and_then(|x| r.string(&join(path, "value"), x));
    Some(
        KeyValuePair::builder()
            .set_name(name)
            .set_value(value)
            .build(),
    )
}

fn secret(r: &mut Reader, path: &str, v: &Value) -> Option<Secret> {
    let m = r.object(path, v, &["name", "valueFrom"])?;
    let name = r
        .required(m, path, "name")
        .and_then(|x| r.string(&join(path, "name"), x));
    let value_from = r
        .required(m, path, "valueFrom")
        .and_then(|x| r.string(&join(path, "valueFrom"), x));
    let (name, value_from) = (name?, value_from?);
    r.built(
        path,
        Secret::builder().name(name).value_from(value_from).build(),
    )
}

fn tag(r: &mut Reader, path: &str, v: &Value) -> Option<Tag> {
    let m = r.object(path, v, &["key", "value"])?;
    let key = r
        .required(m, path, "key")
        .and_then(|x| r.string(&join(path, "key"), x));
    let value = field(m, "value").and_then(|x| r.string(&join(path, "value"), x));
    Some(Tag::builder().set_key(key).set_value(value).build())
}

fn port_mapping(r: &mut Reader, path: &str, v: &Value) -> Option<PortMapping> {
    let m = r.object(path, v, PORT_KEYS)?;
    let p = |k: &str| join(path, k);
    Some(
        PortMapping::builder()
            .set_container_port(
                field(m, "containerPort").and_then(|x| r.int(&p("containerPort"), x)),
            )
            .set_host_port(field(m, "hostPort").and_then(|x| r.int(&p("hostPort"), x)))
            .set_protocol(
                field(m, "protocol")
                    .and_then(|x| r.one_of(&p("protocol"), x, TransportProtocol::values())),
            )
            .set_name(field(m, "name").and_then(|x| r.string(&p("name"), x)))
            .set_app_protocol(
                field(m, "appProtocol")
                    .and_then(|x| r.one_of(&p("appProtocol"), x, ApplicationProtocol::values())),
            )
            .set_container_port_range(
                field(m, "containerPortRange").and_then(|x| r.string(&p("containerPortRange"), x)),
            )
            .build(),
    )
}

fn health_check(r: &mut Reader, path: &str, v: &Value) -> Option<HealthCheck> {
    let m = r.object(path, v, HEALTH_KEYS)?;
    let p = |k: &str| join(path, k);
    let command = r
        .required(m, path, "command")
        .and_then(|x| r.strings(&p("command"), x));
    let b = HealthCheck::builder()
        .set_interval(field(m, "interval").and_then(|x| r.int(&p("interval"), x)))
        .set_timeout(field(m, "timeout").and_then(|x| r.int(&p("timeout"), x)))
        .set_retries(field(m, "retries").and_then(|x| r.int(&p("retries"), x)))
        .set_start_period(field(m, "startPeriod").and_then(|x| r.int(&p("startPeriod"), x)));
    r.built(path, b.set_command(Some(command?)).build())
}

fn log_configuration(r: &mut Reader, path: &str, v: &Value) -> Option<LogConfiguration> {
    let m = r.object(path, v, LOG_KEYS)?;
    let p = |k: &str| join(path, k);
    let driver = r
        .required(m, path, "logDriver")
        .and_then(|x| r.one_of::<LogDriver>(&p("logDriver"), x, LogDriver::values()));
    let options = field(m, "options").and_then(|x| r.string_map(&p("options"), x));
    let secret_options =
        field(m, "secretOptions").and_then(|x| r.each(&p("secretOptions"), x, secret));
    let b = LogConfiguration::builder()
        .log_driver(driver?)
        .set_options(options)
        .set_secret_options(secret_options);
    r.built(path, b.build())
}

fn ulimit(r: &mut Reader, path: &str, v: &Value) -> Option<Ulimit> {
    let m = r.object(path, v, ULIMIT_KEYS)?;
    let p = |k: &str| join(path, k);
    let name = r
        .required(m, path, "name")
        .and_then(|x| r.one_of::<UlimitName>(&p("name"), x, UlimitName::values()));
    let soft = r
        .required(m, path, "softLimit")
        .and_then(|x| r.int(&p("softLimit"), x));
    let hard = r
        .required(m, path, "hardLimit")
        .and_then(|x| r.int(&p("hardLimit"), x));
    let b = Ulimit::builder()
        .name(name?)
        .soft_limit(soft?)
        .hard_limit(hard?);
    r.built(path, b.build())
}

fn runtime_platform(r: &mut Reader, v: &Value) -> Option<RuntimePlatform> {
    let path = "runtimePlatform";
    let m = r.object(path, v, RUNTIME_KEYS)?;
    let p = |k: &str| join(path, k);
    Some(
        RuntimePlatform::builder()
            .set_cpu_architecture(
                field(m, "cpuArchitecture")
                    .and_then(|x| r.one_of(&p("cpuArchitecture"), x, CpuArchitecture::values())),
            )
            .set_operating_system_family(
                field(m, "operatingSystemFamily")
                    .and_then(|x| r.one_of(&p("operatingSystemFamily"), x, OsFamily::values())),
            )
            .build(),
    )
}

fn ephemeral_storage(r: &mut Reader, v: &Value) -> Option<EphemeralStorage> {
    let path = "ephemeralStorage";
    let m = r.object(path, v, &["sizeInGiB"])?;
    let size = r
        .required(m, path, "sizeInGiB")
        .and_then(|x| r.int(&join(path, "sizeInGiB"), x))?;
    Some(EphemeralStorage::builder().size_in_gib(size).build())
}

fn volume(r: &mut Reader, path: &str, v: &Value) -> Option<Volume> {
    let m = r.object(path, v, VOLUME_KEYS)?;
    let name = r
        .required(m, path, "name")
        .and_then(|x| r.string(&join(path, "name"), x));
    let host = field(m, "host").and_then(|x| {
        let hp = join(path, "host");
        let hm = r.object(&hp, x, &["sourcePath"])?;
        let source = field(hm, "sourcePath").and_then(|s| r.string(&join(&hp, "sourcePath"), s));
        Some(
            HostVolumeProperties::builder()
                .set_source_path(source)
                .build(),
        )
    });
    Some(Volume::builder().set_name(name).set_host(host).build())
}

/// A present, non-null value.
fn field<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads JSON values, collecting a [`Problem`] for each that does not fit.
#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn push(&mut self, path: &str, kind: ProblemKind) {
        self.problems.push(Problem {
            path: if path.is_empty() {
                "(top level)".to_string()
            } else {
                path.to_string()
            },
            kind,
        });
    }

    fn wrong(&mut self, path: &str, expected: &'static str, v: &Value) {
        self.push(
            path,
            ProblemKind::WrongType {
                expected,
                found: describe_value(v),
            },
        );
    }

    /// An object whose keys are all in `allowed`; each other key is reported.
    fn object<'v>(
        &mut self,
        path: &str,
        v: &'v Value,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(m) = v else {
            self.wrong(path, "an object", v);
            return None;
        };
        for key in m.keys() {
            if !allowed.contains(&key.as_str()) {
                self.push(&join(path, key), ProblemKind::Unsupported);
            }
        }
        Some(m)
    }

    fn required<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let v = field(m, key);
        if v.is_none() {
            self.push(&join(path, key), ProblemKind::Missing);
        }
        v
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong(path, "a string", v);
                None
            }
        }
    }

    fn int(&mut self, path: &str, v: &Value) -> Option<i32> {
        match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.wrong(path, "an integer", v);
                None
            }
        }
    }

    fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong(path, "true or false", v);
                None
            }
        }
    }

    /// A list, each item converted by `f` with its path `path[i]`. `None` when the value is
    /// not a list or any item fails.
    fn each<T>(
        &mut self,
        path: &str,
        v: &Value,
        mut f: impl FnMut(&mut Reader, &str, &Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = v else {
            self.wrong(path, "a list", v);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match f(self, &format!("{path}[{i}]"), item) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn strings(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        self.each(path, v, |r, p, item| r.string(p, item))
    }

    fn string_map(&mut self, path: &str, v: &Value) -> Option<HashMap<String, String>> {
        let Value::Object(m) = v else {
            self.wrong(path, "an object of strings", v);
            return None;
        };
        let mut out = HashMap::with_capacity(m.len());
        let mut ok = true;
        for (k, item) in m {
            match self.string(&join(path, k), item) {
                Some(s) => {
                    out.insert(k.clone(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A string that must be one of an SDK enum's known values.
    fn one_of<T: for<'a> From<&'a str>>(
        &mut self,
        path: &str,
        v: &Value,
        allowed: &'static [&'static str],
    ) -> Option<T> {
        let s = self.string(path, v)?;
        if allowed.contains(&s.as_str()) {
            Some(T::from(s.as_str()))
        } else {
            self.push(path, ProblemKind::NotOneOf { value: s, allowed });
            None
        }
    }

    /// The result of an SDK builder whose required fields were checked above.
    fn built<T>(&mut self, path: &str, b: Result<T, BuildError>) -> Option<T> {
        match b {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(path, ProblemKind::Invalid(e.to_string()));
                None
            }
        }
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

// ------------------------------------------------------------------------------ SDK → JSON

/// What [`to_json`] writes for a field that is set on a live revision but that shoal's
/// conversion does not cover: the comparison then shows it as a difference.
pub const UNMANAGED: &str = "(set on the live revision; not managed by shoal)";

/// The JSON shape of a task definition as ECS describes it: the request fields shoal
/// converts, the server-filled ones (`taskDefinitionArn`, `revision`, `status`,
/// `compatibilities`, `requiresAttributes`, `registeredAt`, ...) and `tags`. Fields outside
/// the conversion that are set carry [`UNMANAGED`].
pub fn to_json(td: &TaskDefinition, tags: &[Tag]) -> Value {
    let mut m = Map::new();
    put_str(
        &mut m,
        "taskDefinitionArn",
        td.task_definition_arn.as_deref(),
    );
    put_str(&mut m, "family", td.family.as_deref());
    m.insert("revision".into(), Value::from(td.revision));
    put_str(&mut m, "status", td.status.as_ref().map(|s| s.as_str()));
    put_str(&mut m, "taskRoleArn", td.task_role_arn.as_deref());
    put_str(&mut m, "executionRoleArn", td.execution_role_arn.as_deref());
    put_str(
        &mut m,
        "networkMode",
        td.network_mode.as_ref().map(|n| n.as_str()),
    );
    put_opt(
        &mut m,
        "requiresCompatibilities",
        td.requires_compatibilities
            .as_ref()
            .map(|v| strings(v.iter().map(|c| c.as_str()))),
    );
    put_opt(
        &mut m,
        "compatibilities",
        td.compatibilities
            .as_ref()
            .map(|v| strings(v.iter().map(|c| c.as_str()))),
    );
    put_opt(
        &mut m,
        "requiresAttributes",
        td.requires_attributes.as_ref().map(|attrs| {
            Value::Array(
                attrs
                    .iter()
                    .map(|a| {
                        let mut o = Map::new();
                        o.insert("name".into(), Value::from(a.name.as_str()));
                        put_str(&mut o, "value", a.value.as_deref());
                        put_str(&mut o, "targetId", a.target_id.as_deref());
                        put_str(
                            &mut o,
                            "targetType",
                            a.target_type.as_ref().map(|t| t.as_str()),
                        );
                        Value::Object(o)
                    })
                    .collect(),
            )
        }),
    );
    put_str(&mut m, "cpu", td.cpu.as_deref());
    put_str(&mut m, "memory", td.memory.as_deref());
    if let Some(rp) = &td.runtime_platform {
        let mut o = Map::new();
        put_str(
            &mut o,
            "cpuArchitecture",
            rp.cpu_architecture.as_ref().map(|c| c.as_str()),
        );
        put_str(
            &mut o,
            "operatingSystemFamily",
            rp.operating_system_family.as_ref().map(|o| o.as_str()),
        );
        m.insert("runtimePlatform".into(), Value::Object(o));
    }
    if let Some(es) = &td.ephemeral_storage {
        m.insert(
            "ephemeralStorage".into(),
            serde_json::json!({ "sizeInGiB": es.size_in_gib }),
        );
    }
    if let Some(volumes) = &td.volumes {
        m.insert(
            "volumes".into(),
            Value::Array(volumes.iter().map(volume_json).collect()),
        );
    }
    if let Some(containers) = &td.container_definitions {
        m.insert(
            "containerDefinitions".into(),
            Value::Array(containers.iter().map(container_json).collect()),
        );
    }
    unmanaged(
        &mut m,
        &[
            (
                "placementConstraints",
                has_items(td.placement_constraints.as_deref()),
            ),
            (
                "inferenceAccelerators",
                has_items(td.inference_accelerators.as_deref()),
            ),
            ("pidMode", td.pid_mode.is_some()),
            ("ipcMode", td.ipc_mode.is_some()),
            ("proxyConfiguration", td.proxy_configuration.is_some()),
            (
                "enableFaultInjection",
                td.enable_fault_injection == Some(true),
            ),
        ],
    );
    put_str(
        &mut m,
        "registeredAt",
        td.registered_at.map(|t| t.to_string()).as_deref(),
    );
    put_str(&mut m, "registeredBy", td.registered_by.as_deref());
    put_str(
        &mut m,
        "deregisteredAt",
        td.deregistered_at.map(|t| t.to_string()).as_deref(),
    );
    put_str(
        &mut m,
        "deleteRequestedAt",
        td.delete_requested_at.map(|t| t.to_string()).as_deref(),
    );
    if !tags.is_empty() {
        m.insert(
            "tags".into(),
            Value::Array(
                tags.iter()
                    .map(|t| pair_json("key", t.key.as_deref(), t.value.as_deref()))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// `{<label>: name, "value": value}`, leaving out what is absent: tags and environment entries.
fn pair_json(label: &str, name: Option<&str>, value: Option<&str>) -> Value {
    let mut o = Map::new();
    put_str(&mut o, label, name);
    put_str(&mut o, "value", value);
    Value::Object(o)
}

fn container_json(c: &ContainerDefinition) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "name", c.name.as_deref());
    put_str(&mut m, "image", c.image.as_deref());
    put_opt(&mut m, "essential", c.essential.map(Value::from));
    m.insert("cpu".into(), Value::from(c.cpu));
    put_opt(&mut m, "memory", c.memory.map(Value::from));
    put_opt(
        &mut m,
        "memoryReservation",
        c.memory_reservation.map(Value::from),
    );
    put_opt(
        &mut m,
        "command",
        c.command.as_ref().map(|v| strings(v.iter())),
    );
    put_opt(
        &mut m,
        "entryPoint",
        c.entry_point.as_ref().map(|v| strings(v.iter())),
    );
    put_str(&mut m, "workingDirectory", c.working_directory.as_deref());
    put_str(&mut m, "user", c.user.as_deref());
    put_opt(
        &mut m,
        "environment",
        c.environment.as_ref().map(|env| {
            Value::Array(
                env.iter()
                    .map(|kv| pair_json("name", kv.name.as_deref(), kv.value.as_deref()))
                    .collect(),
            )
        }),
    );
    put_opt(&mut m, "secrets", c.secrets.as_deref().map(secrets_json));
    put_opt(
        &mut m,
        "portMappings",
        c.port_mappings
            .as_ref()
            .map(|pm| Value::Array(pm.iter().map(port_json).collect())),
    );
    if let Some(h) = &c.health_check {
        let mut o = Map::new();
        o.insert("command".into(), strings(h.command.iter()));
        put_opt(&mut o, "interval", h.interval.map(Value::from));
        put_opt(&mut o, "timeout", h.timeout.map(Value::from));
        put_opt(&mut o, "retries", h.retries.map(Value::from));
        put_opt(&mut o, "startPeriod", h.start_period.map(Value::from));
        m.insert("healthCheck".into(), Value::Object(o));
    }
    if let Some(l) = &c.log_configuration {
        let mut o = Map::new();
        o.insert("logDriver".into(), Value::from(l.log_driver.as_str()));
        put_opt(&mut o, "options", l.options.as_ref().map(string_map_json));
        put_opt(
            &mut o,
            "secretOptions",
            l.secret_options.as_deref().map(secrets_json),
        );
        m.insert("logConfiguration".into(), Value::Object(o));
    }
    put_opt(
        &mut m,
        "dockerLabels",
        c.docker_labels.as_ref().map(string_map_json),
    );
    put_opt(&mut m, "stopTimeout", c.stop_timeout.map(Value::from));
    put_opt(
        &mut m,
        "readonlyRootFilesystem",
        c.readonly_root_filesystem.map(Value::from),
    );
    put_opt(
        &mut m,
        "ulimits",
        c.ulimits.as_ref().map(|u| {
            Value::Array(
                u.iter()
                    .map(|u| {
                        serde_json::json!({
                            "name": u.name.as_str(),
                            "softLimit": u.soft_limit,
                            "hardLimit": u.hard_limit,
                        })
                    })
                    .collect(),
            )
        }),
    );
    unmanaged(
        &mut m,
        &[
            ("repositoryCredentials", c.repository_credentials.is_some()),
            ("links", has_items(c.links.as_deref())),
            ("restartPolicy", c.restart_policy.is_some()),
            (
                "environmentFiles",
                has_items(c.environment_files.as_deref()),
            ),
            ("mountPoints", has_items(c.mount_points.as_deref())),
            ("volumesFrom", has_items(c.volumes_from.as_deref())),
            ("linuxParameters", c.linux_parameters.is_some()),
            ("dependsOn", has_items(c.depends_on.as_deref())),
            ("startTimeout", c.start_timeout.is_some()),
            // "enabled" is ECS's default.
            (
                "versionConsistency",
                c.version_consistency
                    .as_ref()
                    .is_some_and(|v| v.as_str() != "enabled"),
            ),
            ("hostname", c.hostname.is_some()),
            ("disableNetworking", c.disable_networking == Some(true)),
            ("privileged", c.privileged == Some(true)),
            ("dnsServers", has_items(c.dns_servers.as_deref())),
            (
                "dnsSearchDomains",
                has_items(c.dns_search_domains.as_deref()),
            ),
            ("extraHosts", has_items(c.extra_hosts.as_deref())),
            (
                "dockerSecurityOptions",
                has_items(c.docker_security_options.as_deref()),
            ),
            ("interactive", c.interactive == Some(true)),
            ("pseudoTerminal", c.pseudo_terminal == Some(true)),
            ("systemControls", has_items(c.system_controls.as_deref())),
            (
                "resourceRequirements",
                has_items(c.resource_requirements.as_deref()),
            ),
            ("firelensConfiguration", c.firelens_configuration.is_some()),
            ("credentialSpecs", has_items(c.credential_specs.as_deref())),
        ],
    );
    Value::Object(m)
}

fn port_json(p: &PortMapping) -> Value {
    let mut o = Map::new();
    put_opt(&mut o, "containerPort", p.container_port.map(Value::from));
    put_opt(&mut o, "hostPort", p.host_port.map(Value::from));
    put_str(&mut o, "protocol", p.protocol.as_ref().map(|x| x.as_str()));
    put_str(&mut o, "name", p.name.as_deref());
    put_str(
        &mut o,
        "appProtocol",
        p.app_protocol.as_ref().map(|x| x.as_str()),
    );
    put_str(
        &mut o,
        "containerPortRange",
        p.container_port_range.as_deref(),
    );
    Value::Object(o)
}

fn volume_json(v: &Volume) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "name", v.name.as_deref());
    if let Some(h) = &v.host {
        let mut ho = Map::new();
        put_str(&mut ho, "sourcePath", h.source_path.as_deref());
        o.insert("host".into(), Value::Object(ho));
    }
    unmanaged(
        &mut o,
        &[
            (
                "dockerVolumeConfiguration",
                v.docker_volume_configuration.is_some(),
            ),
            (
                "efsVolumeConfiguration",
                v.efs_volume_configuration.is_some(),
            ),
            (
                "fsxWindowsFileServerVolumeConfiguration",
                v.fsx_windows_file_server_volume_configuration.is_some(),
            ),
            ("configuredAtLaunch", v.configured_at_launch == Some(true)),
        ],
    );
    Value::Object(o)
}

fn secrets_json(s: &[Secret]) -> Value {
    Value::Array(
        s.iter()
            .map(|s| serde_json::json!({ "name": s.name, "valueFrom": s.value_from }))
            .collect(),
    )
}

fn string_map_json(m: &HashMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

fn strings<'a>(items: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>) -> Value {
    Value::Array(items.map(|s| Value::from(s.as_ref())).collect())
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.to_string(), Value::from(v));
    }
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

fn unmanaged(m: &mut Map<String, Value>, fields: &[(&str, bool)]) {
    for (key, set) in fields {
        if *set {
            m.insert((*key).to_string(), Value::from(UNMANAGED));
        }
    }
}

fn has_items<T>(v: Option<&[T]>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

// ------------------------------------------------------------------------------ normalize

/// Fields ECS fills in on registration; never part of a comparison.
const SERVER_FIELDS: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
];

/// The comparable form of a task definition, rendered or described: server-filled fields
/// dropped; nulls, empty lists and empty objects dropped (ECS and moto echo `volumes: []`,
/// `placementConstraints: []`, `mountPoints: []`, `volumesFrom: []`, `environment: []`);
/// values equal to what ECS fills in when a field is left out dropped (container `cpu: 0`,
/// `essential: true`, port `protocol: "tcp"`, `hostPort` equal to `containerPort` in `awsvpc`
/// and `host` mode, health-check `interval: 30`, `timeout: 5`, `retries: 3`,
/// `startPeriod: 0`, `networkMode: "bridge"`, `readonlyRootFilesystem: false`); and
/// `tags` sorted by key, `environment`, `secrets`, `secretOptions` and `ulimits` by name.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    let Value::Object(m) = &mut v else {
        return v;
    };
    for key in SERVER_FIELDS {
        m.remove(*key);
    }
    if m.get("networkMode").and_then(Value::as_str) == Some("bridge") {
        m.remove("networkMode");
    }
    let mode = m
        .get("networkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge")
        .to_string();
    if let Some(Value::Array(containers)) = m.get_mut("containerDefinitions") {
        for c in containers.iter_mut() {
            if let Value::Object(c) = c {
                normalize_container(c, &mode);
            }
        }
    }
    sort_by(m, "tags", "key");
    prune(&mut v);
    v
}

fn normalize_container(c: &mut Map<String, Value>, mode: &str) {
    remove_if(c, "cpu", &Value::from(0));
    remove_if(c, "essential", &Value::Bool(true));
    remove_if(c, "readonlyRootFilesystem", &Value::Bool(false));
    sort_by(c, "environment", "name");
    sort_by(c, "secrets", "name");
    sort_by(c, "ulimits", "name");
    if let Some(Value::Object(log)) = c.get_mut("logConfiguration") {
        sort_by(log, "secretOptions", "name");
    }
    if let Some(Value::Object(h)) = c.get_mut("healthCheck") {
        remove_if(h, "interval", &Value::from(30));
        remove_if(h, "timeout", &Value::from(5));
        remove_if(h, "retries", &Value::from(3));
        remove_if(h, "startPeriod", &Value::from(0));
    }
    if let Some(Value::Array(ports)) = c.get_mut("portMappings") {
        for p in ports.iter_mut() {
            let Value::Object(p) = p else { continue };
            remove_if(p, "protocol", &Value::from("tcp"));
            let container_port = p.get("containerPort").cloned();
            match (mode, container_port) {
                ("awsvpc" | "host", Some(port)) => remove_if(p, "hostPort", &port),
                // In bridge mode an absent hostPort is a dynamic one, which ECS shows as 0.
                _ => remove_if(p, "hostPort", &Value::from(0)),
            }
        }
    }
}

fn remove_if(m: &mut Map<String, Value>, key: &str, default: &Value) {
    if m.get(key) == Some(default) {
        m.remove(key);
    }
}

/// Sorts a list of objects by one of their string fields.
fn sort_by(m: &mut Map<String, Value>, list: &str, key: &str) {
    if let Some(Value::Array(items)) = m.get_mut(list) {
        items.sort_by(|a, b| {
            let ka = a.get(key).and_then(Value::as_str).unwrap_or_default();
            let kb = b.get(key).and_then(Value::as_str).unwrap_or_default();
            ka.cmp(kb)
        });
    }
}

/// Drops nulls, empty lists and empty objects, recursively (an object or list that becomes
/// empty is dropped too). The top-level value itself is kept.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                prune(child);
            }
            m.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                prune(child);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape shoal's built-in template renders for an API consumer.
    fn rendered() -> Value {
        json!({
            "family": "demo-api",
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
            "taskRoleArn": "arn:aws:iam::123456789012:role/task",
            "containerDefinitions": [{
                "name": "api",
                "image": "127.0.0.1:5000/demo/api:abc",
                "essential": true,
                "command": ["serve"],
                "environment": [{"name": "PORT", "value": "8080"}, {"name": "A", "value": "1"}],
                "secrets": [
                    {"name": "Z", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/z"},
                    {"name": "B", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/b"}
                ],
                "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 15},
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/demo/api", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "api"}}
            }],
            "tags": [{"key": "shoal:project", "value": "demo"}, {"key": "shoal:consumer", "value": "api"}]
        })
    }

    fn problems(v: &Value) -> Vec<String> {
        match from_json(v) {
            Ok(_) => panic!("expected a conversion error for {v}"),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn round_trip_through_the_sdk_types_is_lossless_after_normalize() {
        let v = rendered();
        let (td, tags) = from_json(&v).expect("converts");
        let back = to_json(&td, &tags);
        assert_eq!(normalize(&back), normalize(&v));
        // Nothing but the defaults the SDK type adds (container cpu 0, revision 0) differs.
        assert_eq!(back["containerDefinitions"][0]["cpu"], json!(0));
        assert_eq!(back["revision"], json!(0));
    }

    #[test]
    fn every_supported_field_round_trips() {
        let v = json!({
            "family": "all",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE", "EC2"],
            "cpu": "1024", "memory": "2048",
            "ephemeralStorage": {"sizeInGiB": 30},
            "volumes": [{"name": "scratch"}, {"name": "h", "host": {"sourcePath": "/tmp"}}],
            "containerDefinitions": [{
                "name": "a", "image": "x", "essential": false, "cpu": 128, "memory": 256,
                "memoryReservation": 128, "command": ["run"], "entryPoint": ["/bin/sh", "-c"],
                "workingDirectory": "/w", "user": "1000",
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "udp", "name": "web", "appProtocol": "http"}],
                "logConfiguration": {"logDriver": "awslogs", "options": {"a": "b"}, "secretOptions": [{"name": "k", "valueFrom": "arn:x"}]},
                "dockerLabels": {"l": "v"}, "stopTimeout": 30, "readonlyRootFilesystem": true,
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
            }]
        });
        let (td, tags) = from_json(&v).expect("converts");
        assert_eq!(to_json(&td, &tags).get("tags"), None);
        assert_eq!(normalize(&to_json(&td, &tags)), normalize(&v));
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let mut v = rendered();
        v["containerDefinitions"][0]["fooBar"] = json!(1);
        v["pidMode"] = json!("task");
        v["containerDefinitions"][0]["portMappings"][0]["hostIp"] = json!("0.0.0.0");
        let e = from_json(&v).expect_err("unsupported keys");
        assert_eq!(e.family.as_deref(), Some("demo-api"));
        let got: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "pidMode is not supported by shoal's RegisterTaskDefinition conversion",
                "containerDefinitions[0].fooBar is not supported by shoal's RegisterTaskDefinition conversion",
                "containerDefinitions[0].portMappings[0].hostIp is not supported by shoal's RegisterTaskDefinition conversion",
            ]
        );
        assert!(e
            .to_string()
            .starts_with("task definition demo-api: 3 problems: pidMode is"));
    }

    #[test]
    fn one_problem_reads_as_one_line() {
        let mut v = rendered();
        v["containerDefinitions"][0]["fooBar"] = json!(1);
        let e = from_json(&v).expect_err("unsupported key");
        assert_eq!(
            e.to_string(),
            "task definition demo-api: containerDefinitions[0].fooBar is not supported by \
             shoal's RegisterTaskDefinition conversion"
        );
        // Through AwsError, which register returns, the text is the same.
        assert_eq!(AwsError::from(e.clone()).to_string(), e.to_string());
    }

    #[test]
    fn wrong_types_are_named() {
        let mut v = rendered();
        v["cpu"] = json!(256);
        v["containerDefinitions"][0]["essential"] = json!("yes");
        v["containerDefinitions"][0]["portMappings"][0]["containerPort"] = json!("8080");
        v["containerDefinitions"][0]["environment"][1]["value"] = json!(1);
        v["containerDefinitions"][0]["command"] = json!("serve");
        v["containerDefinitions"][0]["logConfiguration"]["options"]["x"] = json!(false);
        v["containerDefinitions"][0]["healthCheck"]["retries"] = json!(3.5);
        v["tags"] = json!({"k": "v"});
        assert_eq!(
            problems(&v),
            [
                "cpu must be a string, not the number 256",
                "containerDefinitions[0].essential must be true or false, not the string \"yes\"",
                "containerDefinitions[0].command must be a list, not the string \"serve\"",
                "containerDefinitions[0].environment[1].value must be a string, not the number 1",
                "containerDefinitions[0].portMappings[0].containerPort must be an integer, not the string \"8080\"",
                "containerDefinitions[0].healthCheck.retries must be an integer, not the number 3.5",
                "containerDefinitions[0].logConfiguration.options.x must be a string, not false",
                "tags must be a list, not an object",
            ]
        );
    }

    #[test]
    fn missing_and_unknown_values_are_named() {
        let v = json!({
            "networkMode": "awsvpcx",
            "containerDefinitions": [{
                "image": "x",
                "secrets": [{"name": "S"}],
                "logConfiguration": {"logDriver": "stdout"},
                "ulimits": [{"name": "nofile", "softLimit": 1}]
            }]
        });
        let e = from_json(&v).expect_err("problems");
        assert_eq!(e.family, None);
        let got: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "family is required",
                "networkMode is \"awsvpcx\", which is not one of awsvpc, bridge, host, none",
                "containerDefinitions[0].name is required",
                "containerDefinitions[0].secrets[0].valueFrom is required",
                "containerDefinitions[0].logConfiguration.logDriver is \"stdout\", which is not one of awsfirelens, awslogs, fluentd, gelf, journald, json-file, splunk, syslog",
                "containerDefinitions[0].ulimits[0].hardLimit is required",
            ]
        );
        assert!(e.to_string().starts_with("task definition: 6 problems: "));
    }

    #[test]
    fn not_an_object_is_named() {
        assert_eq!(
            problems(&json!([])),
            ["(top level) must be an object, not a list"]
        );
        assert_eq!(
            problems(&json!({"family": "f", "containerDefinitions": [1]})),
            ["containerDefinitions[0] must be an object, not the number 1"]
        );
    }

    #[test]
    fn nulls_are_absent() {
        let mut v = rendered();
        v["taskRoleArn"] = Value::Null;
        v["containerDefinitions"][0]["command"] = Value::Null;
        let (td, _) = from_json(&v).expect("converts");
        assert_eq!(td.task_role_arn, None);
        assert_eq!(
            td.container_definitions
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|c| c.command.clone()),
            None
        );
    }

    #[test]
    fn normalize_drops_server_fields_and_defaults() {
        let described = json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:3",
            "revision": 3, "status": "ACTIVE", "compatibilities": ["EC2", "FARGATE"],
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
            "registeredAt": "2024-01-01T00:00:00Z", "registeredBy": "arn:aws:iam::1:root",
            "family": "f", "networkMode": "awsvpc",
            "placementConstraints": [], "volumes": [],
            "containerDefinitions": [{
                "name": "a", "image": "x", "cpu": 0, "essential": true,
                "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [],
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
                "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3},
                "logConfiguration": {"logDriver": "awslogs", "options": {}, "secretOptions": []}
            }]
        });
        let rendered = json!({
            "family": "f", "networkMode": "awsvpc",
            "containerDefinitions": [{
                "name": "a", "image": "x",
                "portMappings": [{"containerPort": 80}],
                "healthCheck": {"command": ["CMD", "true"]},
                "logConfiguration": {"logDriver": "awslogs"}
            }]
        });
        assert_eq!(normalize(&described), normalize(&rendered));
        assert_eq!(
            normalize(&rendered),
            json!({
                "family": "f", "networkMode": "awsvpc",
                "containerDefinitions": [{
                    "name": "a", "image": "x",
                    "portMappings": [{"containerPort": 80}],
                    "healthCheck": {"command": ["CMD", "true"]},
                    "logConfiguration": {"logDriver": "awslogs"}
                }]
            })
        );
    }

    #[test]
    fn normalize_keeps_what_differs_from_the_defaults() {
        let v = json!({
            "family": "f",
            "containerDefinitions": [{
                "name": "a", "cpu": 256, "essential": false,
                "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "udp"}],
                "healthCheck": {"command": ["CMD", "true"], "interval": 10}
            }]
        });
        assert_eq!(normalize(&v), v);
    }

    #[test]
    fn normalize_bridge_mode_host_ports() {
        // Bridge (the default mode): hostPort 0 is dynamic, the same as leaving it out, and a
        // hostPort equal to containerPort is a fixed mapping, kept.
        let v = json!({"family": "f", "networkMode": "bridge", "containerDefinitions": [{
            "name": "a", "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81, "hostPort": 81}]
        }]});
        assert_eq!(
            normalize(&v),
            json!({"family": "f", "containerDefinitions": [{
                "name": "a", "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 81}]
            }]})
        );
    }

    #[test]
    fn normalize_sorts_tags_environment_and_secrets() {
        let n = normalize(&rendered());
        assert_eq!(n["tags"][0]["key"], json!("shoal:consumer"));
        assert_eq!(
            n["containerDefinitions"][0]["environment"][0]["name"],
            json!("A")
        );
        assert_eq!(
            n["containerDefinitions"][0]["secrets"][0]["name"],
            json!("B")
        );
        // Same content in another order compares equal.
        let mut shuffled = rendered();
        if let Some(Value::Array(tags)) = shuffled.get_mut("tags") {
            tags.reverse();
        }
        assert_eq!(normalize(&shuffled), n);
        // And normalize is idempotent.
        assert_eq!(normalize(&n), n);
    }

    #[test]
    fn unmanaged_live_fields_show_as_differences() {
        let (mut td, tags) = from_json(&rendered()).expect("converts");
        if let Some(c) = td
            .container_definitions
            .as_mut()
            .and_then(|c| c.first_mut())
        {
            c.privileged = Some(true);
            c.mount_points = Some(vec![]);
        }
        td.pid_mode = Some(aws_sdk_ecs::types::PidMode::Task);
        let live = normalize(&to_json(&td, &tags));
        assert_eq!(live["pidMode"], json!(UNMANAGED));
        assert_eq!(
            live["containerDefinitions"][0]["privileged"],
            json!(UNMANAGED)
        );
        // An empty list is not a setting.
        assert_eq!(live["containerDefinitions"][0].get("mountPoints"), None);
        assert_ne!(live, normalize(&rendered()));
    }
}
