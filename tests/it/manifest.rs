//! Every validation error, each in its own test: the file, the key and the message.

use shoal::discover;
use shoal::manifest::{Problem, Project};

use crate::support::{Fixture, API, WORKER};

/// Loads a fixture whose only consumer `c` has `manifest` and returns the problems.
pub(crate) fn consumer_problems(manifest: &str) -> Vec<Problem> {
    let f = Fixture::standard();
    f.consumer("c", manifest);
    match discover::discover(f.root()) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

fn project_problems(shoal_toml: &str) -> Vec<Problem> {
    let f = Fixture::new(shoal_toml);
    match Project::load(f.root()) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

/// Asserts that exactly one problem has `key` and its message contains `needle`.
fn assert_problem(problems: &[Problem], key: &str, needle: &str) -> Problem {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.key == key).collect();
    assert_eq!(
        found.len(),
        1,
        "want one problem at `{key}`, got: {problems:#?}"
    );
    assert!(
        found[0].message.contains(needle),
        "problem at `{key}` should say {needle:?}: {}",
        found[0]
    );
    assert!(
        found[0].help.is_some(),
        "every problem says what to do: {}",
        found[0]
    );
    found[0].clone()
}

/// A test that loading gives exactly one problem at `$key` in `$file`, saying `$needle`.
macro_rules! invalid {
    ($name:ident, $problems:expr, $file:expr, $key:expr, $needle:expr) => {
        #[test]
        fn $name() {
            let p = assert_problem(&$problems, $key, $needle);
            assert_eq!(p.file, std::path::Path::new($file));
        }
    };
}

macro_rules! invalid_consumer {
    ($name:ident, $manifest:expr, $key:expr, $needle:expr) => {
        invalid!(
            $name,
            consumer_problems(&$manifest),
            "consumers/c/consumer.toml",
            $key,
            $needle
        );
    };
}

macro_rules! invalid_project {
    ($name:ident, $toml:expr, $key:expr, $needle:expr) => {
        invalid!($name, project_problems(&$toml), "shoal.toml", $key, $needle);
    };
}

const MIN: &str = "kind = \"worker\"\n";

#[test]
fn the_fixtures_are_valid() {
    assert_eq!(consumer_problems(WORKER), Vec::new());
    assert_eq!(consumer_problems(API), Vec::new());
    assert_eq!(consumer_problems(MIN), Vec::new());
}

invalid_consumer!(
    unknown_top_level_key,
    format!("{MIN}cpus = 256\n"),
    "cpus",
    "unknown key"
);
invalid_consumer!(
    unknown_nested_key,
    format!("{WORKER}\n[build]\ndockerfil = \"x\"\n"),
    "build.dockerfil",
    "unknown key"
);
invalid_consumer!(
    wrong_type,
    "kind = \"worker\"\ncpu = \"big\"\n",
    "cpu",
    "wrong type"
);
invalid_consumer!(missing_kind, "cpu = 256\n", "kind", "missing");
invalid_consumer!(unknown_kind, "kind = \"cron\"\n", "kind", "not a kind");
invalid_consumer!(
    cpu_not_a_fargate_size,
    format!("{MIN}cpu = 300\n"),
    "cpu",
    "not a Fargate CPU size"
);
invalid_consumer!(
    memory_not_allowed_with_cpu,
    format!("{MIN}cpu = 256\nmemory = 4096\n"),
    "memory",
    "not allowed with cpu = 256"
);
invalid_consumer!(
    secret_given_as_a_value,
    format!("{MIN}[secrets]\nDB_PASSWORD = \"hunter2\"\n"),
    "secrets.DB_PASSWORD",
    "not a Secrets Manager or SSM parameter ARN"
);
invalid_consumer!(
    secret_arn_of_another_service,
    format!("{MIN}[secrets]\nX = \"arn:aws:s3:::bucket/key\"\n"),
    "secrets.X",
    "not a Secrets Manager"
);
invalid_consumer!(secret_also_in_env, format!("{MIN}[env]\nX = \"1\"\n[secrets]\nX = \"arn:aws:ssm:us-east-1:123456789012:parameter/x\"\n"), "secrets.X", "also set in [env]");
invalid_consumer!(
    env_name_illegal,
    format!("{MIN}[env]\n\"1BAD\" = \"x\"\n"),
    "env.1BAD",
    "not a legal environment variable name"
);
invalid_consumer!(
    env_name_reserved,
    format!("{MIN}[env]\nSHOAL_ENV = \"x\"\n"),
    "env.SHOAL_ENV",
    "set by shoal"
);
invalid_consumer!(
    scaling_max_above_partitions,
    WORKER.replace("max = 6", "max = 8"),
    "scaling.max",
    "above the 6 partitions of topic \"orders\""
);
invalid_consumer!(
    scaling_min_above_max,
    WORKER
        .replace("min = 1", "min = 5")
        .replace("max = 6", "max = 3"),
    "scaling.min",
    "above max"
);
invalid_consumer!(
    scaling_without_kafka,
    format!("{MIN}[scaling]\nmin = 1\nmax = 2\n"),
    "scaling",
    "needs a [kafka] section"
);
invalid_consumer!(
    scaling_max_lag_not_positive,
    WORKER.replace("max_lag_seconds = 20", "max_lag_seconds = -1"),
    "scaling.max_lag_seconds",
    "not a positive number"
);
invalid_consumer!(
    api_without_api_section,
    "kind = \"api\"\n",
    "api",
    "needs an [api] section"
);
invalid_consumer!(
    api_port_out_of_range,
    API.replace("port = 8080", "port = 70000"),
    "api.port",
    "not a TCP port"
);
invalid_consumer!(
    api_port_missing,
    API.replace("port = 8080\n", ""),
    "api.port",
    "missing"
);
invalid_consumer!(
    api_health_path_not_a_path,
    API.replace("/healthz", "healthz"),
    "api.health_path",
    "not a URL path"
);
invalid_consumer!(
    worker_with_api_section,
    format!("{MIN}[api]\nport = 80\n"),
    "api",
    "only kind = \"api\""
);
invalid_consumer!(
    topic_name_illegal,
    WORKER.replace("name = \"orders\"", "name = \"orders!\""),
    "topic[0].name",
    "not a legal topic name"
);
invalid_consumer!(
    topic_partitions_zero,
    WORKER.replace("partitions = 6", "partitions = 0"),
    "topic[0].partitions",
    "out of range"
);
invalid_consumer!(
    topic_config_not_a_scalar,
    WORKER.replace(
        "\"cleanup.policy\" = \"delete\"",
        "\"cleanup.policy\" = [\"delete\"]"
    ),
    "topic[0].config.\"cleanup.policy\"",
    "string, number or boolean"
);
invalid_consumer!(
    kafka_group_empty,
    WORKER.replace("group = \"orders-worker\"", "group = \"\""),
    "kafka.group",
    "missing or empty"
);
invalid_consumer!(
    kafka_topics_empty,
    WORKER.replace("topics = [\"orders\"]", "topics = []"),
    "kafka.topics",
    "missing or empty"
);
invalid_consumer!(
    build_context_leaves_the_project,
    format!("{MIN}[build]\ncontext = \"../../..\"\n"),
    "build.context",
    "leaves the project"
);
invalid_consumer!(
    dockerfile_missing,
    format!("{MIN}[build]\ndockerfile = \"Nope.Dockerfile\"\n"),
    "build.dockerfile",
    "does not exist"
);
invalid_consumer!(
    command_empty,
    format!("{MIN}command = []\n"),
    "command",
    "is empty"
);

#[test]
fn folder_name_must_be_a_legal_ecs_and_ecr_name() {
    let f = Fixture::standard();
    f.consumer("Bad_Name-", MIN);
    let problems = discover::discover(f.root()).expect_err("illegal name").0;
    assert!(problems[0]
        .message
        .contains("\"Bad_Name-\" is not a legal name"));
    assert!(problems[0]
        .help
        .as_deref()
        .unwrap_or("")
        .contains("ECR repository"));
}

#[test]
fn toml_syntax_error_names_the_line() {
    let problems = consumer_problems("kind = \"worker\"\ncpu = = 3\n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, Some(2));
    assert!(problems[0].message.starts_with("not valid TOML"));
}

#[test]
fn every_problem_is_reported_at_once_with_lines() {
    let manifest = "kind = \"worker\"\ncpu = 300\nbogus = 1\n[env]\n\"1X\" = \"a\"\n[secrets]\nP = \"plain\"\n[build]\ntarget = \"\"\n";
    let problems = consumer_problems(manifest);
    let keys: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    for want in [
        ("bogus", Some(3)),
        ("cpu", Some(2)),
        ("env.1X", Some(5)),
        ("secrets.P", Some(7)),
        ("build.target", Some(9)),
    ] {
        assert!(keys.contains(&want), "missing {want:?} in {keys:?}");
    }
}

#[test]
fn problems_in_several_manifests_are_all_reported() {
    let f = Fixture::standard();
    f.consumer("a", "kind = \"nope\"\n");
    f.consumer("b", "cpu = 1\nkind = \"worker\"\n");
    let problems = discover::discover(f.root())
        .expect_err("two bad manifests")
        .0;
    let files: Vec<String> = problems
        .iter()
        .map(|p| p.file.display().to_string())
        .collect();
    assert!(
        files.contains(&"consumers/a/consumer.toml".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"consumers/b/consumer.toml".to_string()),
        "{files:?}"
    );
}

#[test]
fn same_topic_declared_differently_by_two_consumers() {
    let f = Fixture::standard();
    f.consumer("a", WORKER);
    f.consumer("b", &WORKER.replace("partitions = 6", "partitions = 12"));
    let problems = discover::discover(f.root()).expect_err("conflict").0;
    let p = assert_problem(
        &problems,
        "topic[0]",
        "also declared in consumers/a/consumer.toml",
    );
    assert_eq!(p.file, std::path::Path::new("consumers/b/consumer.toml"));
}

#[test]
fn identical_topic_declarations_are_fine() {
    let f = Fixture::standard();
    f.consumer("a", WORKER);
    f.consumer("b", WORKER);
    assert!(discover::discover(f.root()).is_ok());
}

#[test]
fn folders_without_a_manifest_are_skipped() {
    let f = Fixture::standard();
    f.consumer("a", MIN);
    f.write("consumers/notes/README.md", "not a workload");
    let fleet = discover::discover(f.root()).expect("valid");
    assert_eq!(fleet.consumers.len(), 1);
    assert_eq!(
        fleet.skipped,
        vec![std::path::PathBuf::from("consumers/notes")]
    );
}

const ENV_OK: &str = "project = \"p\"\n[env.local]\nplatform = \"docker\"\n";

invalid_project!(
    project_name_missing,
    "[env.local]\nplatform = \"docker\"\n",
    "project",
    "missing"
);
invalid_project!(
    project_name_illegal,
    ENV_OK.replace("\"p\"", "\"My Project\""),
    "project",
    "not a legal name"
);
invalid_project!(
    no_environments,
    "project = \"p\"\n",
    "env",
    "no environments"
);
invalid_project!(
    default_env_undefined,
    format!("default_env = \"prod\"\n{ENV_OK}"),
    "default_env",
    "not defined"
);
invalid_project!(
    platform_unknown,
    ENV_OK.replace("docker", "k8s"),
    "env.local.platform",
    "not a platform"
);
invalid_project!(
    platform_missing,
    "project = \"p\"\n[env.local]\nregion = \"us-east-1\"\n",
    "env.local.platform",
    "missing"
);
invalid_project!(
    env_unknown_key,
    format!("{ENV_OK}regoin = \"x\"\n"),
    "env.local.regoin",
    "unknown key"
);
invalid_project!(ecs_needs_subnets, "project = \"p\"\ndefault_env = \"prod\"\n[env.prod]\nplatform = \"ecs\"\naccount_id = \"123456789012\"\nsecurity_groups = [\"sg-1\"]\nexecution_role_arn = \"arn:aws:iam::123456789012:role/x\"\n", "env.prod.subnets", "the ecs platform needs it");
invalid_project!(
    bad_region,
    format!("{ENV_OK}region = \"mars-1\"\n"),
    "env.local.region",
    "not an AWS region"
);
invalid_project!(
    bad_account_id,
    format!("{ENV_OK}account_id = \"12\"\n"),
    "env.local.account_id",
    "12-digit"
);
invalid_project!(
    bad_role_arn,
    format!("{ENV_OK}execution_role_arn = \"role/x\"\n"),
    "env.local.execution_role_arn",
    "not an IAM role ARN"
);
invalid_project!(
    bad_log_retention,
    format!("{ENV_OK}log_retention_days = 10\n"),
    "env.local.log_retention_days",
    "not a retention"
);
invalid_project!(
    endpoint_url_without_scheme,
    format!("{ENV_OK}endpoint_url = \"127.0.0.1:5050\"\n"),
    "env.local.endpoint_url",
    "not an http(s) URL"
);
invalid_project!(
    registry_with_scheme,
    format!("{ENV_OK}registry = \"http://r:5000\"\n"),
    "env.local.registry",
    "not a registry host"
);
invalid_project!(kafka_bootstrap_and_msk, format!("{ENV_OK}kafka = {{ bootstrap = [\"b:9092\"], msk_cluster_arn = \"arn:aws:kafka:us-east-1:123456789012:cluster/c/1-2\" }}\n"), "env.local.kafka", "both bootstrap and msk_cluster_arn");
invalid_project!(
    kafka_bootstrap_not_host_port,
    format!("{ENV_OK}kafka = {{ bootstrap = [\"broker\"] }}\n"),
    "env.local.kafka.bootstrap[0]",
    "not host:port"
);
invalid_project!(kafka_auth_unknown, format!("{ENV_OK}kafka = {{ msk_cluster_arn = \"arn:aws:kafka:us-east-1:123456789012:cluster/c/1-2\", auth = \"kerberos\" }}\n"), "env.local.kafka.auth", "not an MSK auth mode");
invalid_project!(
    kafka_msk_arn_malformed,
    format!("{ENV_OK}kafka = {{ msk_cluster_arn = \"arn:aws:kafka:nope\" }}\n"),
    "env.local.kafka.msk_cluster_arn",
    "not an MSK cluster ARN"
);

invalid_consumer!(
    required_not_a_variable_name,
    format!("{MIN}required = [\"DATABASE URL\"]\n"),
    "required[0]",
    "not a variable name"
);
invalid_consumer!(
    required_on_an_unknown_platform,
    format!("{MIN}required_on = {{ lambda = [\"X\"] }}\n"),
    "required_on.lambda",
    "not a platform"
);
invalid_consumer!(
    allow_plain_names_no_env_key,
    format!("{MIN}allow_plain = [\"DB_PASSWORD\"]\n[env]\nDB_PASSWRD = \"x\"\n"),
    "allow_plain[0]",
    "not set in [env]"
);

const ECS_ENV: &str = "project = \"p\"\n[env.e]\nplatform = \"ecs\"\naccount_id = \"123456789012\"\nsubnets = [\"subnet-1\"]\nsecurity_groups = [\"sg-1\"]\nexecution_role_arn = \"arn:aws:iam::123456789012:role/x\"\ndefault_env = \"e\"\n";

invalid_project!(
    env_secret_given_as_a_value,
    format!(
        "default_env = \"e\"\n{}secrets = {{ DATABASE_URL = \"postgres://u:p@h/d\" }}\n",
        ECS_ENV.replace("default_env = \"e\"\n", "")
    ),
    "env.e.secrets.DATABASE_URL",
    "not a Secrets Manager or SSM parameter ARN"
);
invalid_project!(
    env_secret_also_in_vars,
    format!("default_env = \"e\"\n{}vars = {{ X = \"1\" }}\nsecrets = {{ X = \"arn:aws:ssm:us-east-1:123456789012:parameter/x\" }}\n", ECS_ENV.replace("default_env = \"e\"\n", "")),
    "env.e.secrets.X",
    "also set in vars"
);
invalid_project!(
    env_allow_plain_names_no_var,
    format!(
        "default_env = \"e\"\n{}allow_plain = [\"DATABASE_URL\"]\n",
        ECS_ENV.replace("default_env = \"e\"\n", "")
    ),
    "env.e.allow_plain[0]",
    "not set in vars"
);

#[test]
fn unset_variable_is_reported_for_the_selected_environment_only() {
    let toml = "project = \"p\"\n[env.local]\nplatform = \"docker\"\n[env.ci]\nplatform = \"docker\"\nregistry = \"${REG}\"\n";
    let f = Fixture::new(toml);
    let project = Project::load(f.root()).expect("static checks skip ${REG}");
    assert!(project.environment_with("local", &|_| None).is_ok());
    let problems = project
        .environment_with("ci", &|_| None)
        .expect_err("REG unset")
        .0;
    assert_eq!(problems[0].key, "env.ci.registry");
    assert_eq!(problems[0].line, Some(6));
    assert!(problems[0].message.contains("export REG"));
    let env = project
        .environment_with("ci", &|k| (k == "REG").then(|| "r:5000".to_string()))
        .expect("REG set");
    assert_eq!(env.registry.as_deref(), Some("r:5000"));
}

#[test]
fn list_items_expand_comma_separated_variables() {
    let toml = "project = \"p\"\n[env.e]\nplatform = \"ecs\"\naccount_id = \"123456789012\"\nsubnets = [\"${S}\"]\nsecurity_groups = [\"sg-1\"]\nexecution_role_arn = \"arn:aws:iam::123456789012:role/x\"\ndefault_env = \"e\"\n";
    let toml = toml.replace("default_env = \"e\"\n", "");
    let f = Fixture::new(&format!("default_env = \"e\"\n{toml}"));
    let project = Project::load(f.root()).expect("valid");
    let env = project
        .environment_with("e", &|k| {
            (k == "S").then(|| "subnet-1, subnet-2".to_string())
        })
        .expect("S set");
    assert_eq!(env.subnets, vec!["subnet-1", "subnet-2"]);
}

invalid_consumer!(
    unknown_platform,
    format!("{MIN}platforms = [\"ecs\", \"lambda\"]\n"),
    "platforms[1]",
    "\"lambda\" is not a platform"
);
invalid_consumer!(
    empty_platforms,
    format!("{MIN}platforms = []\n"),
    "platforms",
    "is empty"
);
invalid_consumer!(
    task_role_neither_name_nor_arn,
    format!("{MIN}task_role = \"arn:aws:s3:::bucket\"\n"),
    "task_role",
    "neither an IAM role name nor a role ARN"
);
invalid_consumer!(
    env_reference_unclosed,
    format!("{MIN}[env]\nHOST = \"${{HOST\"\n"),
    "env.HOST",
    "unclosed"
);

/// `[env]` references are expanded for a deploy, from the deploying process's environment:
/// unset ones are reported with the file, line and key, and a task role name is taken to be
/// in the environment's account.
#[test]
fn consumer_env_expands_for_a_deploy_and_task_role_takes_the_account() {
    let f = Fixture::standard();
    f.consumer(
        "c",
        &format!("{MIN}task_role = \"reader\"\n[env]\nA = \"${{A:-one}}\"\nB = \"x-${{B}}\"\n"),
    );
    f.consumer("d", &format!("{MIN}platforms = [\"docker\"]\n"));
    let project = Project::load(f.root()).expect("valid");
    let fleet = discover::discover(f.root()).expect("static checks skip ${B}");
    let env = project.environment("sandbox").expect("sandbox");

    let problems = fleet.for_env(&env, &|_| None).expect_err("B unset").0;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "env.B");
    assert_eq!(problems[0].line, Some(5));
    assert_eq!(
        problems[0].file,
        std::path::Path::new("consumers/c/consumer.toml")
    );

    let deployed = fleet
        .for_env(&env, &|k| (k == "B").then(|| "two".to_string()))
        .expect("B set");
    let names: Vec<&str> = deployed.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["c"], "d deploys to docker only");
    assert_eq!(deployed.elsewhere, vec!["d"]);
    let c = &deployed.consumers[0];
    assert_eq!(c.env["A"], "one");
    assert_eq!(c.env["B"], "x-two");
    assert_eq!(
        c.task_role_arn(&env).as_deref(),
        Some("arn:aws:iam::123456789012:role/reader")
    );
    let d = fleet.get("d").expect("d");
    assert_eq!(
        d.task_role_arn(&env).as_deref(),
        Some("arn:aws:iam::123456789012:role/demo-task")
    );
    let local = project.environment("local").expect("local");
    let names: Vec<String> = fleet
        .for_env(&local, &|k| (k == "B").then(|| "two".to_string()))
        .expect("local")
        .consumers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["c", "d"]);
}

#[test]
fn unknown_environment_lists_the_defined_ones() {
    let f = Fixture::standard();
    let project = Project::load(f.root()).expect("valid");
    let problems = project.environment("staging").expect_err("undefined").0;
    assert!(problems[0]
        .help
        .as_deref()
        .unwrap_or("")
        .contains("local, sandbox"));
}

#[test]
fn this_repository_is_valid() {
    let root = crate::support::repo_root();
    Project::load(&root).expect("shoal.toml is valid");
    let fleet = discover::discover(&root).expect("the bundled consumers are valid");
    let names: Vec<&str> = fleet.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["exposure-api", "exposure-consumer", "shoal-autoscaler"]
    );
}
