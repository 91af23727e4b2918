//! `[env.NAME]` sections of `shoal.toml`: where a deploy goes.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::interp;
use super::problem::{quote_key, FileProblems};
use super::raw::{EnvKafkaSection, EnvSection};
use super::validate::{env_var_name, is_secret_arn, SECRET_ARN_HELP};

/// Where workloads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Containers on the local Docker Engine.
    Docker,
    /// ECS Fargate services.
    Ecs,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Docker, Platform::Ecs];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Docker => "docker",
            Platform::Ecs => "ecs",
        }
    }

    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How clients authenticate to an MSK cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaAuth {
    Iam,
    Tls,
    Scram,
    Plaintext,
}

/// How shoal and the workloads reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaAccess {
    /// A fixed broker list.
    Bootstrap(Vec<String>),
    /// An MSK cluster whose brokers are looked up at deploy time.
    Msk {
        cluster_arn: String,
        auth: KafkaAuth,
        /// With `auth = "scram"`: the Secrets Manager secret holding the username and password.
        scram_secret_arn: Option<String>,
    },
    /// No Kafka configured for this environment.
    None,
}

impl KafkaAccess {
    /// The broker list when it is known without asking AWS.
    pub fn static_bootstrap(&self) -> Option<String> {
        match self {
            KafkaAccess::Bootstrap(b) => Some(b.join(",")),
            _ => None,
        }
    }
}

/// One environment, with every `${VAR}` expanded and every value checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Environment {
    pub name: String,
    pub platform: Platform,
    pub region: String,
    pub account_id: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub registry: Option<String>,
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub log_group_prefix: String,
    pub log_retention_days: u32,
    pub keep_images: u32,
    pub vars: BTreeMap<String, String>,
    /// Secrets every container of this environment gets, by ARN (`secrets`).
    pub secrets: BTreeMap<String, String>,
    /// `vars` keys that may hold a plain credential even on ECS (`allow_plain`).
    pub allow_plain: Vec<String>,
    pub kafka: KafkaAccess,
    /// The SNS topic that consumers' CloudWatch alarms notify (`alarm_topic_arn`).
    pub alarm_topic_arn: Option<String>,
}

impl Environment {
    /// Where images are pushed: the override registry, or the account's ECR registry.
    pub fn registry_host(&self) -> String {
        match (&self.registry, &self.account_id) {
            (Some(r), _) => r.trim_end_matches('/').to_string(),
            (None, Some(account)) => format!("{account}.dkr.ecr.{}.amazonaws.com", self.region),
            (None, None) => "local".to_string(),
        }
    }

    /// The CloudWatch Logs group of one consumer.
    pub fn log_group(&self, consumer: &str) -> String {
        format!("{}/{consumer}", self.log_group_prefix.trim_end_matches('/'))
    }
}

/// The retention periods CloudWatch Logs accepts.
const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

static SNS_TOPIC_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
        .expect("valid regex")
});

const SNS_TOPIC_ARN_HELP: &str =
    "give the ARN of the SNS topic alarms notify: arn:aws:sns:REGION:ACCOUNT:NAME";

static ACCOUNT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{12}$").expect("valid regex"));
pub(super) static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+$").expect("valid regex")
});
static MSK_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9_-]+/[A-Za-z0-9-]+$")
        .expect("valid regex")
});
/// A Secrets Manager secret ARN whose name starts with `AmazonMSK_` (MSK refuses others).
static SCRAM_SECRET_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:AmazonMSK_[A-Za-z0-9/_+=.@-]+$",
    )
    .expect("valid regex")
});
static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d$").expect("valid regex"));

struct Resolver<'a, 'f> {
    prefix: String,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    strict: bool,
    fp: &'a mut FileProblems<'f>,
}

impl Resolver<'_, '_> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// Expands one value. `None` when it is absent, or (not strict) holds a reference.
    fn text(&mut self, key: &str, value: Option<&String>) -> Option<String> {
        let value = value?;
        if !self.strict && value.contains("${") {
            return None;
        }
        match interp::expand(value, self.lookup) {
            Ok(v) => Some(v),
            Err(why) => {
                let k = self.key(key);
                self.fp.push(k, why);
                None
            }
        }
    }

    /// Expands a list; each item may expand to a comma-separated list.
    fn list(&mut self, key: &str, value: Option<&Vec<String>>) -> Option<Vec<String>> {
        let value = value?;
        let mut out = Vec::new();
        for (i, item) in value.iter().enumerate() {
            let expanded = self.text(&format!("{key}[{i}]"), Some(item))?;
            out.extend(
                expanded
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        Some(out)
    }

    fn check(&mut self, key: &str, ok: bool, message: String, help: &str) {
        if !ok {
            let k = self.key(key);
            self.fp.push(k, message).help = Some(help.to_string());
        }
    }

    fn require(&mut self, key: &str, present: bool, help: &str) {
        if !present && !self.fp.has(&self.key(key)) {
            let k = self.key(key);
            self.fp.push(k, "missing; the ecs platform needs it").help = Some(help.to_string());
        }
    }
}

/// Resolves one environment section. With `strict` off (for `shoal validate`, which checks
/// every environment), values that hold `${VAR}` are skipped instead of expanded, and
/// everything else is checked as for a deploy.
pub(super) fn resolve(
    project: &str,
    name: &str,
    s: &EnvSection,
    lookup: &dyn Fn(&str) -> Option<String>,
    strict: bool,
    fp: &mut FileProblems,
) -> Option<Environment> {
    let mut r = Resolver {
        prefix: format!("env.{}", quote_key(name)),
        lookup,
        strict,
        fp,
    };
    let platform = match s.platform.as_deref() {
        Some("docker") => Platform::Docker,
        Some("ecs") => Platform::Ecs,
        Some(other) => {
            r.check(
                "platform",
                false,
                format!("{other:?} is not a platform"),
                "use \"docker\" (the local Docker Engine) or \"ecs\" (AWS ECS Fargate)",
            );
            return None;
        }
        None => {
            r.require_platform();
            return None;
        }
    };
    let region = r
        .text("region", s.region.as_ref())
        .unwrap_or_else(|| "us-east-1".to_string());
    if s.region.is_some() && (strict || !s.region.as_deref().unwrap_or("").contains("${")) {
        r.check(
            "region",
            REGION.is_match(&region),
            format!("{region:?} is not an AWS region"),
            "use a region name such as \"us-east-1\"",
        );
    }
    let account_id = r.text("account_id", s.account_id.as_ref());
    if let Some(a) = &account_id {
        r.check(
            "account_id",
            ACCOUNT.is_match(a),
            format!("{a:?} is not a 12-digit AWS account id"),
            "use the account's 12-digit id, e.g. \"123456789012\"",
        );
    }
    let profile = r.text("profile", s.profile.as_ref());
    let endpoint_url = r.text("endpoint_url", s.endpoint_url.as_ref());
    if let Some(u) = &endpoint_url {
        r.check(
            "endpoint_url",
            u.starts_with("http://") || u.starts_with("https://"),
            format!("{u:?} is not an http(s) URL"),
            "point it at an AWS API emulator, e.g. \"http://127.0.0.1:5050\"",
        );
    }
    let registry = r.text("registry", s.registry.as_ref());
    if let Some(reg) = &registry {
        r.check(
            "registry",
            !reg.contains("://") && !reg.is_empty(),
            format!("{reg:?} is not a registry host"),
            "give host[:port] without a scheme, e.g. \"127.0.0.1:5000\"",
        );
    }
    let cluster = r
        .text("cluster", s.cluster.as_ref())
        .unwrap_or_else(|| format!("{project}-{name}"));
    let subnets = r.list("subnets", s.subnets.as_ref()).unwrap_or_default();
    let security_groups = r
        .list("security_groups", s.security_groups.as_ref())
        .unwrap_or_default();
    let execution_role_arn = r.text("execution_role_arn", s.execution_role_arn.as_ref());
    let task_role_arn = r.text("task_role_arn", s.task_role_arn.as_ref());
    for (key, arn) in [
        ("execution_role_arn", &execution_role_arn),
        ("task_role_arn", &task_role_arn),
    ] {
        if let Some(a) = arn {
            r.check(
                key,
                ROLE_ARN.is_match(a),
                format!("{a:?} is not an IAM role ARN"),
                "use arn:aws:iam::ACCOUNT:role/NAME",
            );
        }
    }
    if platform == Platform::Ecs {
        r.require(
            "account_id",
            s.account_id.is_some(),
            "set the AWS account id; image URIs name the account's ECR registry",
        );
        r.require(
            "subnets",
            s.subnets.as_ref().is_some_and(|v| !v.is_empty()),
            "list the subnets Fargate tasks run in, e.g. subnets = [\"subnet-0abc\"] or [\"${SUBNETS}\"]",
        );
        r.require(
            "security_groups",
            s.security_groups.as_ref().is_some_and(|v| !v.is_empty()),
            "list the security groups of the tasks, e.g. security_groups = [\"sg-0abc\"]",
        );
        r.require(
            "execution_role_arn",
            s.execution_role_arn.is_some(),
            "the task execution role pulls images, reads secrets and writes logs",
        );
    }
    let log_group_prefix = r
        .text("log_group_prefix", s.log_group_prefix.as_ref())
        .unwrap_or_else(|| format!("/shoal/{project}/{name}"));
    r.check(
        "log_group_prefix",
        log_group_prefix.starts_with('/') && !log_group_prefix.contains(' '),
        format!("{log_group_prefix:?} is not a log group prefix"),
        "start with '/', e.g. \"/shoal/prod\"",
    );
    let log_retention_days = match s.log_retention_days {
        None => 30,
        Some(d) => {
            let ok = u32::try_from(d).is_ok_and(|d| RETENTION_DAYS.contains(&d));
            r.check(
                "log_retention_days",
                ok,
                format!("{d} is not a retention CloudWatch Logs accepts"),
                "use 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653",
            );
            d.clamp(1, 3653) as u32
        }
    };
    let keep_images = match s.keep_images {
        None => 20,
        Some(n) => {
            r.check(
                "keep_images",
                (1..=10_000).contains(&n),
                format!("{n} is out of range"),
                "keep between 1 and 10000 images per repository (older ones expire)",
            );
            n.clamp(1, 10_000) as u32
        }
    };
    let mut vars = BTreeMap::new();
    for (k, v) in s.vars.iter().flatten() {
        let key = format!("vars.{}", quote_key(k));
        r.check(
            &key,
            env_var_name(k),
            format!("{k:?} is not a legal environment variable name"),
            "use letters, digits and '_', not starting with a digit",
        );
        if let Some(v) = r.text(&key, Some(v)) {
            vars.insert(k.clone(), v);
        }
    }
    let mut secrets = BTreeMap::new();
    for (k, v) in s.secrets.iter().flatten() {
        let key = format!("secrets.{}", quote_key(k));
        r.check(
            &key,
            env_var_name(k),
            format!("{k:?} is not a legal environment variable name"),
            "use letters, digits and '_', not starting with a digit",
        );
        r.check(
            &key,
            !s.vars.as_ref().is_some_and(|vars| vars.contains_key(k)),
            format!("{k} is also set in vars"),
            "a variable comes from vars or secrets, not both",
        );
        if let Some(arn) = r.text(&key, Some(v)) {
            r.check(
                &key,
                is_secret_arn(&arn),
                format!("{arn:?} is not a Secrets Manager or SSM parameter ARN"),
                SECRET_ARN_HELP,
            );
            secrets.insert(k.clone(), arn);
        }
    }
    let allow_plain = s.allow_plain.clone().unwrap_or_default();
    for (i, k) in allow_plain.iter().enumerate() {
        r.check(
            &format!("allow_plain[{i}]"),
            s.vars.as_ref().is_some_and(|vars| vars.contains_key(k)),
            format!("{k:?} is not set in vars"),
            "list only keys of vars whose plain value is not secret, or remove it",
        );
    }
    let kafka = kafka(&mut r, s.kafka.as_ref());
    let alarm_topic_arn = r
        .text("alarm_topic_arn", s.alarm_topic_arn.as_ref())
        .filter(|a| !a.is_empty());
    if let Some(arn) = &alarm_topic_arn {
        r.check(
            "alarm_topic_arn",
            SNS_TOPIC_ARN.is_match(arn),
            format!("{arn:?} is not an SNS topic ARN"),
            SNS_TOPIC_ARN_HELP,
        );
    }
    Some(Environment {
        name: name.to_string(),
        platform,
        region,
        account_id,
        profile,
        endpoint_url,
        registry,
        cluster,
        subnets,
        security_groups,
        assign_public_ip: s.assign_public_ip.unwrap_or(false),
        execution_role_arn,
        task_role_arn,
        log_group_prefix,
        log_retention_days,
        keep_images,
        vars,
        secrets,
        allow_plain,
        kafka,
        alarm_topic_arn,
    })
}

impl Resolver<'_, '_> {
    fn require_platform(&mut self) {
        let k = self.key("platform");
        self.fp.push(k, "missing").help =
            Some("set platform = \"docker\" (local) or platform = \"ecs\" (AWS)".into());
    }
}

fn kafka(r: &mut Resolver<'_, '_>, k: Option<&EnvKafkaSection>) -> KafkaAccess {
    let Some(k) = k else {
        return KafkaAccess::None;
    };
    let auth = match k.auth.as_deref() {
        None => None,
        Some("iam") => Some(KafkaAuth::Iam),
        Some("tls") => Some(KafkaAuth::Tls),
        Some("scram") => Some(KafkaAuth::Scram),
        Some("plaintext") => Some(KafkaAuth::Plaintext),
        Some(other) => {
            r.check(
                "kafka.auth",
                false,
                format!("{other:?} is not an MSK auth mode"),
                "use \"iam\", \"tls\", \"scram\" or \"plaintext\"",
            );
            None
        }
    };
    match (&k.bootstrap, &k.msk_cluster_arn) {
        (Some(_), Some(_)) => {
            r.check(
                "kafka",
                false,
                "sets both bootstrap and msk_cluster_arn".into(),
                "use bootstrap for a fixed broker list, or msk_cluster_arn to look the brokers up",
            );
            KafkaAccess::None
        }
        (Some(list), None) => {
            if k.scram_secret_arn.is_some() {
                r.check(
                    "kafka.scram_secret_arn",
                    false,
                    "only applies with msk_cluster_arn and auth = \"scram\"".into(),
                    "remove scram_secret_arn, or use msk_cluster_arn",
                );
            }
            if k.auth.is_some() {
                r.check(
                    "kafka.auth",
                    false,
                    "only applies with msk_cluster_arn".into(),
                    "remove auth, or use msk_cluster_arn",
                );
            }
            let brokers = r.list("kafka.bootstrap", Some(list)).unwrap_or_default();
            for (i, b) in brokers.iter().enumerate() {
                let ok = b
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                r.check(
                    &format!("kafka.bootstrap[{i}]"),
                    ok,
                    format!("{b:?} is not host:port"),
                    "list brokers as \"host:port\", e.g. \"127.0.0.1:9092\"",
                );
            }
            if r.strict && brokers.is_empty() {
                r.check(
                    "kafka.bootstrap",
                    false,
                    "is empty".into(),
                    "list at least one broker as \"host:port\"",
                );
            }
            KafkaAccess::Bootstrap(brokers)
        }
        (None, Some(arn)) => {
            let arn = r
                .text("kafka.msk_cluster_arn", Some(arn))
                .unwrap_or_default();
            if !arn.is_empty() {
                r.check(
                    "kafka.msk_cluster_arn",
                    MSK_ARN.is_match(&arn),
                    format!("{arn:?} is not an MSK cluster ARN"),
                    "use arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID",
                );
            }
            let auth = auth.unwrap_or(KafkaAuth::Iam);
            let scram_secret_arn = r.text("kafka.scram_secret_arn", k.scram_secret_arn.as_ref());
            match (&scram_secret_arn, auth) {
                (None, KafkaAuth::Scram) if k.scram_secret_arn.is_none() => r.check(
                    "kafka.scram_secret_arn",
                    false,
                    "is required with auth = \"scram\"".into(),
                    "name the Secrets Manager secret (its name starts with AmazonMSK_) that holds {\"username\", \"password\"}",
                ),
                (Some(_), a) if a != KafkaAuth::Scram => r.check(
                    "kafka.scram_secret_arn",
                    false,
                    "only applies with auth = \"scram\"".into(),
                    "remove scram_secret_arn, or set auth = \"scram\"",
                ),
                (Some(s), _) => r.check(
                    "kafka.scram_secret_arn",
                    SCRAM_SECRET_ARN.is_match(s),
                    format!("{s:?} is not the ARN of an MSK SCRAM secret"),
                    "use arn:aws:secretsmanager:REGION:ACCOUNT:secret:AmazonMSK_NAME-SUFFIX (MSK only accepts secrets whose name starts with AmazonMSK_)",
                ),
                _ => {}
            }
            KafkaAccess::Msk {
                cluster_arn: arn,
                auth,
                scram_secret_arn,
            }
        }
        (None, None) => {
            r.check(
                "kafka",
                false,
                "needs bootstrap or msk_cluster_arn".into(),
                "add bootstrap = [\"host:9092\"], or msk_cluster_arn = \"arn:aws:kafka:...\"",
            );
            KafkaAccess::None
        }
    }
}
