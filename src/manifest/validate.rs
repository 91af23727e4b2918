//! Turns a raw `consumer.toml` into a [`Consumer`], recording every problem on the way.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use super::environment::ROLE_ARN;
use super::problem::{quote_key, FileProblems, Problem, Problems};
use super::raw;
use super::{
    interp, Alarms, Api, Build, Consumer, KafkaUse, Kind, OffsetReset, Platform, Required, Scaling,
    Topic,
};

pub const NAME_HELP: &str = "use 1 to 63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit (the name becomes an ECS family, an ECS service and an ECR repository)";

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$").expect("valid regex"));
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
static SECRETS_MANAGER_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(?::[^:]*:[^:]*:[^:]*)?$")
        .expect("valid regex")
});
static SSM_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+$")
        .expect("valid regex")
});
static ROLE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9+=,.@_-]{1,64}$").expect("valid regex"));
static TOPIC_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._-]{1,249}$").expect("valid regex"));

/// Names shoal sets in every container; a manifest may not set them.
pub const RESERVED_ENV: &[&str] = &["SHOAL_PROJECT", "SHOAL_ENV", "SHOAL_CONSUMER"];

/// Checks a consumer or project name. The error completes "NAME ...".
pub fn resource_name(name: &str) -> Result<(), String> {
    if NAME.is_match(name) && !name.contains("--") && !name.contains("__") {
        Ok(())
    } else {
        Err("is not a legal name".to_string())
    }
}

/// Whether `value` is the ARN of a Secrets Manager secret (or one JSON key of it) or of an
/// SSM parameter: what ECS accepts as a secret's `valueFrom`.
pub(super) fn is_secret_arn(value: &str) -> bool {
    SECRETS_MANAGER_ARN.is_match(value) || SSM_ARN.is_match(value)
}

pub const SECRET_ARN_HELP: &str = "secrets hold references, never values: arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME or arn:aws:ssm:REGION:ACCOUNT:parameter/NAME";

pub fn env_var_name(name: &str) -> bool {
    ENV_NAME.is_match(name)
}

/// The Fargate CPU sizes and, for each, the memory sizes (MiB) it allows.
pub fn fargate_memory_for(cpu: u32) -> Option<Vec<u32>> {
    let (lo, hi, step) = match cpu {
        256 => return Some(vec![512, 1024, 2048]),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return None,
    };
    Some((lo..=hi).step_by(step).collect())
}

const FARGATE_CPUS: &str = "256, 512, 1024, 2048, 4096, 8192 or 16384";

pub(super) fn consumer(
    root: &Path,
    dir: &Path,
    manifest: PathBuf,
    name: String,
    file: raw::ConsumerFile,
    fp: &mut FileProblems,
) -> Option<Consumer> {
    if let Err(why) = resource_name(&name) {
        fp.push("", format!("the folder name {name:?} {why}")).help =
            Some(format!("rename the folder: {NAME_HELP}"));
    }

    let kind = match file.kind.as_deref() {
        Some("worker") => Kind::Worker,
        Some("api") => Kind::Api,
        Some(other) => {
            fp.push("kind", format!("{other:?} is not a kind")).help =
                Some("use \"worker\" (reads Kafka) or \"api\" (serves HTTP)".into());
            Kind::Worker
        }
        None => {
            if !fp.has("kind") {
                fp.push("kind", "missing").help =
                    Some("add kind = \"worker\" or kind = \"api\"".into());
            }
            Kind::Worker
        }
    };

    let (cpu, memory) = cpu_memory(file.cpu, file.memory, fp);
    let build = build(root, dir, file.build.unwrap_or_default(), fp);
    let env = env_table("env", file.env.unwrap_or_default(), fp);
    // Expanded at deploy time (Consumer::for_deploy); here only the syntax is checked.
    for (key, value) in &env {
        if let Err(why) = interp::expand(value, &|_| Some("set".into())) {
            fp.push(format!("env.{}", quote_key(key)), why).help =
                Some("write ${VAR} or ${VAR:-default}, and $$ for a literal $".into());
        }
    }
    let secrets = secrets(file.secrets.unwrap_or_default(), &env, fp);
    let required = required(file.required, file.required_on, fp);
    let allow_plain = allow_plain("allow_plain", file.allow_plain, &env, "[env]", fp);
    let kafka = file.kafka.map(|k| kafka(k, fp));
    let topics = file
        .topic
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| topic(i, t, fp))
        .collect::<Vec<_>>();
    let scaling = file.scaling.map(|s| scaling(s, fp));
    if scaling.is_some() && kafka.is_none() {
        fp.push("scaling", "needs a [kafka] section").help = Some(
            "the autoscaler scales on the lag of the consumer group named in [kafka] group".into(),
        );
    }
    let alarms = alarms(file.alarms, scaling.is_some(), &topics, fp);
    let api = match (kind, file.api) {
        (Kind::Api, Some(a)) => api(a, fp),
        (Kind::Api, None) => {
            fp.push("api", "kind = \"api\" needs an [api] section").help = Some(
                "add [api] with port = 8080 (and health_path = \"/health\" if it differs)".into(),
            );
            None
        }
        (Kind::Worker, Some(_)) => {
            fp.push("api", "only kind = \"api\" takes an [api] section")
                .help = Some("remove [api], or set kind = \"api\"".into());
            None
        }
        (Kind::Worker, None) => None,
    };
    let command = file.command;
    if command.as_ref().is_some_and(|c| c.is_empty()) {
        fp.push("command", "is empty").help =
            Some("remove it to run the image's CMD, or list the program and its arguments".into());
    }
    let platforms = platforms(file.platforms, fp);
    let task_role = file.task_role;
    if let Some(role) = &task_role {
        if !ROLE_NAME.is_match(role) && !ROLE_ARN.is_match(role) {
            fp.push("task_role", format!("{role:?} is neither an IAM role name nor a role ARN"))
                .help = Some(
                "give the role's name in the environment's account, e.g. \"shoal-autoscaler\", or its ARN, arn:aws:iam::ACCOUNT:role/NAME".into(),
            );
        }
    }

    Some(Consumer {
        name,
        dir: dir.to_path_buf(),
        manifest,
        kind,
        cpu,
        memory,
        command,
        platforms,
        task_role,
        build: build?,
        env,
        secrets,
        required,
        allow_plain,
        kafka,
        topics,
        scaling,
        api,
        alarms,
        defaults: false,
    })
}

/// `required = ["A", "B|C"]` and `required_on = { ecs = [...] }`.
fn required(
    everywhere: Option<Vec<String>>,
    on: Option<BTreeMap<String, Vec<String>>>,
    fp: &mut FileProblems,
) -> Vec<Required> {
    let mut lists = vec![("required".to_string(), None, everywhere.unwrap_or_default())];
    for (platform, list) in on.unwrap_or_default() {
        let key = format!("required_on.{}", quote_key(&platform));
        match Platform::parse(&platform) {
            Some(p) => lists.push((key, Some(p), list)),
            None => {
                fp.push(&key, format!("{platform:?} is not a platform"))
                    .help = Some("use required_on = { ecs = [...] } or { docker = [...] }".into());
            }
        }
    }
    let mut out = Vec::new();
    for (key, on, list) in lists {
        for (i, entry) in list.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let any_of: Vec<String> = entry.split('|').map(|n| n.trim().to_string()).collect();
            if any_of.iter().any(|n| !env_var_name(n)) {
                fp.push(&key, format!("{entry:?} is not a variable name, or names joined by '|'"))
                    .help = Some(
                    "list the variables the workload cannot start without, e.g. \"DATABASE_URL\", or \"API_KEYS|JWT_SECRET\" for either one".into(),
                );
                continue;
            }
            out.push(Required { any_of, on, key });
        }
    }
    out
}

/// `allow_plain`: names of `table`'s keys that may hold a plain credential. Each must name a
/// key of `table`, so that a misspelt opt-out does not go unnoticed.
pub(super) fn allow_plain(
    key: &str,
    list: Option<Vec<String>>,
    table: &BTreeMap<String, String>,
    table_name: &str,
    fp: &mut FileProblems,
) -> Vec<String> {
    let list = list.unwrap_or_default();
    for (i, name) in list.iter().enumerate() {
        if !table.contains_key(name) {
            fp.push(
                format!("{key}[{i}]"),
                format!("{name:?} is not set in {table_name}"),
            )
            .help = Some(format!(
                "list only keys of {table_name} whose plain value is not secret, or remove it"
            ));
        }
    }
    list
}

fn cpu_memory(cpu: Option<u32>, memory: Option<u32>, fp: &mut FileProblems) -> (u32, u32) {
    let cpu_val = cpu.unwrap_or(256);
    let Some(allowed) = fargate_memory_for(cpu_val) else {
        fp.push("cpu", format!("{cpu_val} is not a Fargate CPU size"))
            .help = Some(format!("use {FARGATE_CPUS} (1024 = one vCPU)"));
        return (cpu_val, memory.unwrap_or(512));
    };
    let memory_val = memory.unwrap_or(allowed[0]);
    if !allowed.contains(&memory_val) {
        let listed = if allowed.len() > 8 {
            format!(
                "{} to {} in steps of {}",
                allowed[0],
                allowed[allowed.len() - 1],
                allowed[1] - allowed[0]
            )
        } else {
            allowed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        fp.push(
            "memory",
            format!("{memory_val} MiB is not allowed with cpu = {cpu_val} on Fargate"),
        )
        .help = Some(format!("with cpu = {cpu_val}, use memory = {listed}"));
    }
    (cpu_val, memory_val)
}

fn build(root: &Path, dir: &Path, b: raw::BuildSection, fp: &mut FileProblems) -> Option<Build> {
    let context_rel = b.context.unwrap_or_else(|| ".".to_string());
    let dockerfile_rel = b.dockerfile.unwrap_or_else(|| "Dockerfile".to_string());
    let context = normalize(&dir.join(&context_rel));
    let dockerfile = normalize(&dir.join(&dockerfile_rel));
    let root = normalize(root);
    let mut ok = true;
    if !context.starts_with(&root) {
        fp.push(
            "build.context",
            format!("{context_rel:?} leaves the project"),
        )
        .help = Some("the build context must be inside the repository".into());
        ok = false;
    } else if !context.is_dir() {
        fp.push("build.context", format!("{context_rel:?} is not a folder"))
            .help = Some("give a folder relative to this manifest, e.g. \".\" or \"../..\"".into());
        ok = false;
    }
    if !dockerfile.is_file() {
        fp.push(
            "build.dockerfile",
            format!(
                "{dockerfile_rel:?} does not exist (looked for {})",
                dockerfile
                    .strip_prefix(&root)
                    .unwrap_or(&dockerfile)
                    .display()
            ),
        )
        .help = Some("give the Dockerfile's path relative to this manifest".into());
        ok = false;
    } else if ok && !dockerfile.starts_with(&context) {
        fp.push(
            "build.dockerfile",
            format!("{dockerfile_rel:?} is outside the build context {context_rel:?}"),
        )
        .help = Some("move the Dockerfile into the context, or widen build.context".into());
        ok = false;
    }
    let args = b.args.unwrap_or_default();
    for key in args.keys() {
        if !env_var_name(key) {
            fp.push(
                format!("build.args.{}", quote_key(key)),
                format!("{key:?} is not a legal build argument name"),
            )
            .help = Some("use letters, digits and '_', not starting with a digit".into());
        }
    }
    if b.target.as_deref().is_some_and(str::is_empty) {
        fp.push("build.target", "is empty").help =
            Some("name a stage of the Dockerfile, or remove the key".into());
    }
    let dockerfile_in_context = dockerfile
        .strip_prefix(&context)
        .ok()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    ok.then_some(Build {
        dockerfile,
        context,
        dockerfile_in_context,
        target: b.target,
        args,
    })
}

/// Lexically normalises a path (`a/b/../c` → `a/c`) without touching the file system, so a
/// context that does not exist is still reported by name.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn env_table(
    section: &str,
    table: BTreeMap<String, String>,
    fp: &mut FileProblems,
) -> BTreeMap<String, String> {
    for key in table.keys() {
        let path = format!("{section}.{}", quote_key(key));
        if !env_var_name(key) {
            fp.push(
                path,
                format!("{key:?} is not a legal environment variable name"),
            )
            .help = Some("use letters, digits and '_', not starting with a digit".into());
        } else if RESERVED_ENV.contains(&key.as_str()) {
            fp.push(path, format!("{key} is set by shoal")).help =
                Some(format!("remove it; shoal sets {}", RESERVED_ENV.join(", ")));
        }
    }
    table
}

/// `platforms`: a non-empty list of platform names; every platform when absent.
fn platforms(list: Option<Vec<String>>, fp: &mut FileProblems) -> Vec<Platform> {
    let Some(list) = list else {
        return Platform::ALL.to_vec();
    };
    let names = Platform::ALL.map(Platform::as_str).join("\" or \"");
    if list.is_empty() {
        fp.push("platforms", "is empty").help = Some(format!(
            "remove it to deploy everywhere, or list \"{names}\" or both"
        ));
    }
    let mut out = Vec::new();
    for (i, name) in list.iter().enumerate() {
        match Platform::parse(name) {
            Some(p) if !out.contains(&p) => out.push(p),
            Some(_) => {}
            None => {
                fp.push(
                    format!("platforms[{i}]"),
                    format!("{name:?} is not a platform"),
                )
                .help = Some(format!("use \"{names}\""));
            }
        }
    }
    out
}

fn secrets(
    table: BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    fp: &mut FileProblems,
) -> BTreeMap<String, String> {
    let table = env_table("secrets", table, fp);
    for (key, value) in &table {
        let path = format!("secrets.{}", quote_key(key));
        if env.contains_key(key) {
            fp.push(&path, format!("{key} is also set in [env]")).help =
                Some("a variable comes from [env] or [secrets], not both".into());
        }
        if !is_secret_arn(value) {
            fp.push(&path, "is not a Secrets Manager or SSM parameter ARN")
                .help = Some(SECRET_ARN_HELP.into());
        }
    }
    table
}

fn kafka(k: raw::KafkaSection, fp: &mut FileProblems) -> KafkaUse {
    let group = k.group.unwrap_or_default();
    if group.trim().is_empty() && !fp.has("kafka.group") {
        fp.push("kafka.group", "missing or empty").help =
            Some("name the consumer group this workload commits offsets for".into());
    }
    let topics = k.topics.unwrap_or_default();
    if topics.is_empty() && !fp.has("kafka.topics") {
        fp.push("kafka.topics", "missing or empty").help =
            Some("list the topics the group reads, e.g. topics = [\"exposures\"]".into());
    }
    for (i, t) in topics.iter().enumerate() {
        if !topic_name(t) {
            fp.push(
                format!("kafka.topics[{i}]"),
                format!("{t:?} is not a legal topic name"),
            )
            .help = Some(TOPIC_HELP.into());
        }
    }
    let offset_reset = match k.offset_reset.as_deref() {
        None | Some("earliest") => OffsetReset::Earliest,
        Some("latest") => OffsetReset::Latest,
        Some(other) => {
            fp.push(
                "kafka.offset_reset",
                format!("{other:?} is not an offset reset"),
            )
            .help = Some(
                "use \"earliest\" or \"latest\", the same as the workload's auto.offset.reset"
                    .into(),
            );
            OffsetReset::Earliest
        }
    };
    KafkaUse {
        group,
        topics,
        offset_reset,
    }
}

const TOPIC_HELP: &str = "use 1 to 249 letters, digits, '.', '_' or '-'";

fn topic_name(name: &str) -> bool {
    TOPIC_NAME.is_match(name) && name != "." && name != ".."
}

fn topic(i: usize, t: raw::TopicSection, fp: &mut FileProblems) -> Option<Topic> {
    let at = |key: &str| format!("topic[{i}].{key}");
    let name = match t.name {
        Some(n) if topic_name(&n) => Some(n),
        Some(n) => {
            fp.push(at("name"), format!("{n:?} is not a legal topic name"))
                .help = Some(TOPIC_HELP.into());
            None
        }
        None => {
            if !fp.has(&at("name")) {
                fp.push(at("name"), "missing").help = Some("every [[topic]] needs a name".into());
            }
            None
        }
    };
    let partitions = match t.partitions {
        Some(p) if (1..=100_000).contains(&p) => Some(p as u32),
        Some(p) => {
            fp.push(at("partitions"), format!("{p} is out of range"))
                .help = Some("use a partition count from 1 to 100000".into());
            None
        }
        None => {
            if !fp.has(&at("partitions")) {
                fp.push(at("partitions"), "missing").help =
                    Some("set the partition count; it caps the useful replica count".into());
            }
            None
        }
    };
    let replication = match t.replication {
        Some(r) if (1..=i64::from(i16::MAX)).contains(&r) => Some(r as u16),
        Some(r) => {
            fp.push(at("replication"), format!("{r} is out of range"))
                .help = Some("use a replication factor of 1 or more (3 on MSK)".into());
            None
        }
        None => Some(3),
    };
    let mut config = BTreeMap::new();
    for (key, value) in t.config.unwrap_or_default() {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                fp.push(
                    format!("topic[{i}].config.{}", quote_key(&key)),
                    "must be a string, number or boolean",
                )
                .help = Some(
                    "Kafka topic configs are single values, e.g. \"retention.ms\" = \"259200000\""
                        .into(),
                );
                continue;
            }
        };
        config.insert(key, text);
    }
    Some(Topic {
        name: name?,
        partitions: partitions?,
        replication: replication?,
        config,
    })
}

fn scaling(s: raw::ScalingSection, fp: &mut FileProblems) -> Scaling {
    let mut count = |key: &str, v: Option<i64>| -> u32 {
        match v {
            Some(n) if (0..=10_000).contains(&n) => n as u32,
            Some(n) => {
                fp.push(format!("scaling.{key}"), format!("{n} is out of range"))
                    .help = Some("use a replica count from 0 to 10000".into());
                0
            }
            None => {
                if !fp.has(&format!("scaling.{key}")) {
                    fp.push(format!("scaling.{key}"), "missing").help =
                        Some("[scaling] needs min and max replica counts".into());
                }
                0
            }
        }
    };
    let min = count("min", s.min);
    let max = count("max", s.max);
    if s.max.is_some() && max == 0 && !fp.has("scaling.max") {
        fp.push("scaling.max", "must be at least 1").help =
            Some("max = 0 would never run the workload".into());
    }
    if min > max {
        fp.push("scaling.min", format!("min = {min} is above max = {max}"))
            .help = Some("min must not exceed max".into());
    }
    let max_lag_seconds = s.max_lag_seconds.unwrap_or(30.0);
    if !(max_lag_seconds.is_finite() && max_lag_seconds > 0.0) {
        fp.push(
            "scaling.max_lag_seconds",
            format!("{max_lag_seconds} is not a positive number of seconds"),
        )
        .help = Some("the autoscaler keeps lag under this many seconds, e.g. 30".into());
    }
    Scaling {
        min,
        max,
        max_lag_seconds,
        duty_cycle: s.duty_cycle.unwrap_or(true),
    }
}

/// Whether a topic's name marks it as a dead-letter topic: `<name>.dlq`, `-dlq` or `_dlq`.
fn is_dlq(name: &str) -> bool {
    [".dlq", "-dlq", "_dlq"]
        .iter()
        .any(|s| name.to_ascii_lowercase().ends_with(s))
}

/// `[alarms]`: on by default for a scaled consumer, as the alarms watch the autoscaler's
/// metrics. The DLQ alarm watches `dlq_topic`, by default the consumer's own `[[topic]]`
/// whose name ends in `.dlq`, `-dlq` or `_dlq`.
fn alarms(
    a: Option<raw::AlarmsSection>,
    scaled: bool,
    topics: &[Topic],
    fp: &mut FileProblems,
) -> Option<Alarms> {
    let written = a.is_some();
    let a = a.unwrap_or_default();
    // Written on a consumer without [scaling], the table asks for alarms it cannot have.
    let enabled = a.enabled.unwrap_or(scaled || written);
    if enabled && !scaled {
        fp.push("alarms", "needs a [scaling] section").help = Some(
            "the alarms watch the metrics the autoscaler publishes for scaled consumers: add [scaling], or set enabled = false in [alarms]".into(),
        );
    }
    let mut minutes = |key: &str, v: Option<i64>, default: u32| -> u32 {
        match v {
            None => default,
            Some(n) if (0..=1440).contains(&n) => n as u32,
            Some(n) => {
                fp.push(format!("alarms.{key}"), format!("{n} is out of range"))
                    .help = Some(
                    "use a number of minutes from 1 to 1440 (a day), or 0 to turn this alarm off"
                        .into(),
                );
                default
            }
        }
    };
    let lag_minutes = minutes("lag_minutes", a.lag_minutes, Alarms::DEFAULT_LAG_MINUTES);
    let below_desired_minutes = minutes(
        "below_desired_minutes",
        a.below_desired_minutes,
        Alarms::DEFAULT_BELOW_DESIRED_MINUTES,
    );
    let no_data_minutes = minutes(
        "no_data_minutes",
        a.no_data_minutes,
        Alarms::DEFAULT_NO_DATA_MINUTES,
    );
    let declared = topics.iter().map(|t| t.name.as_str()).find(|n| is_dlq(n));
    let dlq_topic = match (a.dlq, a.dlq_topic) {
        (Some(false), Some(_)) => {
            fp.push("alarms.dlq_topic", "is set while dlq = false").help =
                Some("remove dlq_topic, or remove dlq = false to alarm on its growth".into());
            None
        }
        (Some(false), None) => None,
        (_, Some(t)) if topic_name(&t) => Some(t),
        (_, Some(t)) => {
            fp.push(
                "alarms.dlq_topic",
                format!("{t:?} is not a legal topic name"),
            )
            .help = Some(TOPIC_HELP.into());
            None
        }
        (Some(true), None) => {
            if declared.is_none() {
                fp.push("alarms.dlq", "no dead-letter topic to watch").help = Some(
                    "name it with dlq_topic = \"orders.dlq\", or declare a [[topic]] whose name ends in .dlq".into(),
                );
            }
            declared.map(str::to_string)
        }
        (None, None) => declared.map(str::to_string),
    };
    if !enabled || !scaled {
        return None;
    }
    Some(Alarms {
        lag_minutes,
        below_desired_minutes,
        no_data_minutes,
        dlq_topic,
    })
}

fn api(a: raw::ApiSection, fp: &mut FileProblems) -> Option<Api> {
    let port = match a.port {
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            fp.push("api.port", format!("{p} is not a TCP port")).help =
                Some("use a port from 1 to 65535, e.g. 8080".into());
            None
        }
        None => {
            if !fp.has("api.port") {
                fp.push("api.port", "missing").help =
                    Some("set the port the API listens on, e.g. port = 8080".into());
            }
            None
        }
    };
    let health_path = a.health_path.unwrap_or_else(|| "/health".to_string());
    if !health_path.starts_with('/')
        || health_path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\'' || c == '"')
    {
        fp.push(
            "api.health_path",
            format!("{health_path:?} is not a URL path"),
        )
        .help = Some("start with '/' and use no spaces or quotes, e.g. \"/health\"".into());
    }
    if a.health_command.as_ref().is_some_and(|c| c.is_empty()) {
        fp.push("api.health_command", "is empty").help = Some(
            "remove it for the default curl check, or give e.g. [\"CMD\", \"/app\", \"--health\"]"
                .into(),
        );
    }
    Some(Api {
        port: port?,
        health_path,
        health_command: a.health_command,
    })
}

/// Checks across manifests.
pub(super) fn fleet(consumers: &[Consumer]) -> Problems {
    let mut out = Vec::new();
    let mut declared: BTreeMap<&str, (&Topic, &Consumer, usize)> = BTreeMap::new();
    for c in consumers {
        for (i, t) in c.topics.iter().enumerate() {
            match declared.get(t.name.as_str()) {
                Some((first, owner, _)) if *first != t => out.push(Problem {
                    file: c.manifest.clone(),
                    line: None,
                    key: format!("topic[{i}]"),
                    message: format!(
                        "topic {:?} is also declared in {} with different settings",
                        t.name,
                        owner.manifest.display()
                    ),
                    help: Some(
                        "declare a topic once, in the workload that owns it, or make both declarations identical".into(),
                    ),
                }),
                Some(_) => {}
                None => {
                    declared.insert(&t.name, (t, c, i));
                }
            }
        }
    }
    for c in consumers {
        let (Some(scaling), Some(kafka)) = (c.scaling, &c.kafka) else {
            continue;
        };
        for topic in &kafka.topics {
            if let Some((t, owner, _)) = declared.get(topic.as_str()) {
                if scaling.max > t.partitions {
                    out.push(Problem {
                        file: c.manifest.clone(),
                        line: None,
                        key: "scaling.max".into(),
                        message: format!(
                            "max = {} is above the {} partitions of topic {:?} (declared in {})",
                            scaling.max,
                            t.partitions,
                            t.name,
                            owner.manifest.display()
                        ),
                        help: Some(format!(
                            "a group cannot use more replicas than partitions: lower max to {} or add partitions",
                            t.partitions
                        )),
                    });
                }
            }
        }
    }
    Problems(out)
}
