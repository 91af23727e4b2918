//! Rendered JSON (the shape of ECS's RegisterTaskDefinition request) → the SDK's types.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_ecs::error::BuildError;
use aws_sdk_ecs::types::{
    ApplicationProtocol, Compatibility, ContainerDefinition, CpuArchitecture, EphemeralStorage,
    HealthCheck, HostVolumeProperties, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    OsFamily, PortMapping, RuntimePlatform, Secret, Tag, TaskDefinition, TransportProtocol, Ulimit,
    UlimitName, Volume,
};
use serde_json::{Map, Value};

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
