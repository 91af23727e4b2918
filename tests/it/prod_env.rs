//! The production path, checked before a deploy: every setting a workload declares
//! `required` is set by the environment, no credential is plain on ECS (unless `allow_plain`
//! says so), and the shipped `prod` environment is complete with its repository variables.

use std::collections::BTreeMap;
use std::path::Path;

use shoal::discover;
use shoal::manifest::{Environment, Problem, Project};
use shoal::render::{Renderer, Target};

use crate::support::{repo_root, shoal, text, Fixture};

/// The problems `env` has with the fixture's fleet as it deploys there.
fn deploy_problems(f: &Fixture, env: &str) -> Vec<Problem> {
    let project = Project::load(f.root()).unwrap_or_else(|p| panic!("{p}"));
    let env = project.environment(env).unwrap_or_else(|p| panic!("{p}"));
    let fleet = discover::discover(f.root())
        .and_then(|fleet| fleet.for_env(&env, &|_| None))
        .unwrap_or_else(|p| panic!("{p}"));
    project.check_deployable(&env, &fleet.consumers).0
}

const LOCAL: &str =
    "[env.local]\nplatform = \"docker\"\nkafka = { bootstrap = [\"127.0.0.1:9092\"] }\n";

/// An ECS environment with everything it needs but `extra` (vars, secrets, allow_plain).
fn ecs_env(extra: &str) -> String {
    format!(
        "[env.sandbox]\nplatform = \"ecs\"\naccount_id = \"123456789012\"\nsubnets = [\"subnet-1\"]\nsecurity_groups = [\"sg-1\"]\nexecution_role_arn = \"arn:aws:iam::123456789012:role/exec\"\nkafka = {{ bootstrap = [\"127.0.0.1:9092\"] }}\n{extra}"
    )
}

const WAREHOUSE_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:warehouse-AbCdEf";

#[test]
fn an_unset_required_setting_names_the_manifest_key_and_what_to_do() {
    let f = Fixture::new(&format!("project = \"p\"\n{LOCAL}{}", ecs_env("")));
    f.consumer(
        "sink",
        "kind = \"worker\"\n# what it cannot start without\nrequired = [\"KAFKA_BOOTSTRAP\", \"DATABASE_URL\"]\n",
    );
    let problems = deploy_problems(&f, "local");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert_eq!(p.file, Path::new("consumers/sink/consumer.toml"));
    assert_eq!(p.key, "required[1]", "KAFKA_BOOTSTRAP is set by shoal");
    assert_eq!(p.line, Some(3));
    assert!(
        p.message
            .contains("sink needs DATABASE_URL, and environment local leaves it unset"),
        "{p}"
    );
    let help = p.help.as_deref().unwrap_or_default();
    assert!(
        help.contains("[env.local]") && help.contains("secrets = { DATABASE_URL"),
        "{help}"
    );
}

#[test]
fn vars_secrets_and_the_manifest_each_count_as_set() {
    let required = "kind = \"worker\"\nrequired = [\"DATABASE_URL\"]\n";
    for (shoal_toml, manifest) in [
        (
            ecs_env("vars = { DATABASE_URL = \"postgres://warehouse/db\" }\n"),
            required.to_string(),
        ),
        (
            ecs_env(&format!(
                "secrets = {{ DATABASE_URL = \"{WAREHOUSE_ARN}\" }}\n"
            )),
            required.to_string(),
        ),
        (
            ecs_env(""),
            format!("{required}[secrets]\nDATABASE_URL = \"{WAREHOUSE_ARN}\"\n"),
        ),
        (
            ecs_env(""),
            format!("{required}[env]\nDATABASE_URL = \"postgres://warehouse/db\"\n"),
        ),
    ] {
        let f = Fixture::new(&format!(
            "project = \"p\"\ndefault_env = \"sandbox\"\n{shoal_toml}"
        ));
        f.consumer("sink", &manifest);
        assert_eq!(
            deploy_problems(&f, "sandbox"),
            Vec::new(),
            "{shoal_toml}\n{manifest}"
        );
    }
    // An empty value is not a setting.
    let f = Fixture::new(&format!(
        "project = \"p\"\ndefault_env = \"sandbox\"\n{}",
        ecs_env("vars = { DATABASE_URL = \"${NOT_SET_ANYWHERE:-}\" }\n")
    ));
    f.consumer("sink", required);
    let problems = deploy_problems(&f, "sandbox");
    assert_eq!(problems[0].key, "required[0]", "{problems:#?}");
}

#[test]
fn required_on_a_platform_and_one_of_several() {
    let f = Fixture::new(&format!("project = \"p\"\n{LOCAL}{}", ecs_env("")));
    f.consumer(
        "api",
        "kind = \"api\"\nrequired_on = { ecs = [\"API_KEYS|JWT_SECRET\"] }\n[api]\nport = 8080\n",
    );
    assert_eq!(deploy_problems(&f, "local"), Vec::new(), "not on docker");
    let problems = deploy_problems(&f, "sandbox");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "required_on.ecs[0]");
    assert!(
        problems[0]
            .message
            .contains("needs one of API_KEYS, JWT_SECRET"),
        "{}",
        problems[0]
    );
    let f = Fixture::new(&format!(
        "project = \"p\"\ndefault_env = \"sandbox\"\n{}",
        ecs_env(
            "secrets = { JWT_SECRET = \"arn:aws:ssm:us-east-1:123456789012:parameter/jwt\" }\n"
        )
    ));
    f.consumer(
        "api",
        "kind = \"api\"\nrequired_on = { ecs = [\"API_KEYS|JWT_SECRET\"] }\n[api]\nport = 8080\n",
    );
    assert_eq!(deploy_problems(&f, "sandbox"), Vec::new());
}

#[test]
fn ecs_refuses_a_plain_credential_and_points_to_secrets() {
    let f = Fixture::new(&format!(
        "project = \"p\"\n{LOCAL}{}",
        ecs_env("vars = { DATABASE_URL = \"postgres://app:hunter2@db:5432/x\", REGION_NAME = \"eu\" }\n")
    ));
    f.consumer(
        "c",
        "kind = \"worker\"\n[env]\nBATCH_SIZE = \"10\"\nSESSION_TOKEN = \"abc\"\n",
    );
    let problems = deploy_problems(&f, "sandbox");
    let keys: Vec<(&Path, &str)> = problems
        .iter()
        .map(|p| (p.file.as_path(), p.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (Path::new("shoal.toml"), "env.sandbox.vars.DATABASE_URL"),
            (Path::new("consumers/c/consumer.toml"), "env.SESSION_TOKEN"),
        ],
        "{problems:#?}"
    );
    assert!(problems[0].message.contains("a URL with a password"));
    assert!(
        problems[0]
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("secrets = { DATABASE_URL = \"arn:aws:secretsmanager:"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1]
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("[secrets] SESSION_TOKEN"),
        "{}",
        problems[1]
    );
    // The docker platform keeps its plain values (its output is redacted instead).
    let f = Fixture::new(
        "project = \"p\"\n[env.local]\nplatform = \"docker\"\nvars = { DATABASE_URL = \"postgres://app:hunter2@db/x\" }\n",
    );
    f.consumer("c", "kind = \"worker\"\n[env]\nSESSION_TOKEN = \"abc\"\n");
    assert_eq!(deploy_problems(&f, "local"), Vec::new());
}

#[test]
fn allow_plain_opts_one_key_out_explicitly() {
    let f = Fixture::new(&format!(
        "project = \"p\"\ndefault_env = \"sandbox\"\n{}",
        ecs_env("vars = { DATABASE_URL = \"postgres://app:local@db/x\", OTHER_URL = \"http://u:p@h/\" }\nallow_plain = [\"DATABASE_URL\"]\n")
    ));
    f.consumer(
        "c",
        "kind = \"worker\"\nallow_plain = [\"PUBLIC_KEY\"]\n[env]\nPUBLIC_KEY = \"ssh-ed25519 AAAA\"\n",
    );
    let problems = deploy_problems(&f, "sandbox");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["env.sandbox.vars.OTHER_URL"], "{problems:#?}");
}

/// The repository variables deploy.yml passes to `shoal` (as a real job would have them).
fn repository_variables() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCOUNT_ID", "210987654321"),
        ("SHOAL_SUBNETS", "subnet-0a1,subnet-0b2"),
        ("SHOAL_SECURITY_GROUPS", "sg-0c3"),
        (
            "SHOAL_MSK_CLUSTER_ARN",
            "arn:aws:kafka:eu-west-1:210987654321:cluster/events/0f1e2d3c-aaaa-bbbb-cccc-000000000001-1",
        ),
        (
            "SHOAL_WAREHOUSE_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:210987654321:secret:shoal/warehouse-url-Ab12Cd",
        ),
        (
            "SHOAL_API_KEYS_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:210987654321:secret:shoal/api-keys-Ef34Gh",
        ),
    ])
}

fn prod(vars: &BTreeMap<&str, &str>) -> Result<Environment, shoal::manifest::Problems> {
    let project = Project::load(&repo_root()).expect("shoal.toml");
    project.environment_with("prod", &|k| vars.get(k).map(|v| v.to_string()))
}

/// The shipped `prod` gives exposure-consumer its warehouse URL from Secrets Manager and
/// `WAREHOUSE_DIALECT=redshift`, and the API its keys: the rendered task definitions carry
/// them as ECS will run them, with no credential among the plain values.
#[test]
fn the_shipped_prod_environment_is_complete() {
    let root = repo_root();
    let vars = repository_variables();
    let env = prod(&vars).unwrap_or_else(|p| panic!("{p}"));
    let project = Project::load(&root).expect("shoal.toml");
    let fleet = discover::discover(&root)
        .and_then(|f| f.for_env(&env, &|_| None))
        .unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(
        project.check_deployable(&env, &fleet.consumers),
        Default::default()
    );

    let renderer = Renderer::for_project(&root).expect("template");
    let target = Target {
        project: &project.name,
        env: &env,
        bootstrap: Some("b-1.events.kafka.eu-west-1.amazonaws.com:9098".into()),
    };
    let container = |name: &str| {
        let c = fleet.get(name).expect("bundled consumer");
        let td = renderer.render(&target, c, "img:tag").expect("renders");
        td["containerDefinitions"][0].clone()
    };
    let pairs = |c: &serde_json::Value, list: &str, field: &str| -> BTreeMap<String, String> {
        c[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e[field].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let sink = container("exposure-consumer");
    let env_vars = pairs(&sink, "environment", "value");
    let secrets = pairs(&sink, "secrets", "valueFrom");
    assert_eq!(env_vars["WAREHOUSE_DIALECT"], "redshift");
    assert_eq!(secrets["DATABASE_URL"], vars["SHOAL_WAREHOUSE_SECRET_ARN"]);
    assert!(!env_vars.contains_key("DATABASE_URL"), "{env_vars:?}");
    let api = container("exposure-api");
    assert_eq!(
        pairs(&api, "secrets", "valueFrom")["API_KEYS"],
        vars["SHOAL_API_KEYS_SECRET_ARN"]
    );
    for (name, value) in env_vars.iter().chain(&pairs(&api, "environment", "value")) {
        assert_eq!(
            shoal::manifest::credential::credential_reason(name, value),
            None,
            "{name} is plain"
        );
    }

    // Without the repository variable, validate says which key and which variable.
    let mut missing = vars.clone();
    missing.remove("SHOAL_WAREHOUSE_SECRET_ARN");
    let problems = prod(&missing).expect_err("unset").0;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "env.prod.secrets.DATABASE_URL");
    assert!(problems[0].message.contains("SHOAL_WAREHOUSE_SECRET_ARN"));
}

/// Every `${VAR}` of `[env.prod]` reaches the deploy job: deploy.yml sets each in its env.
#[test]
fn deploy_yml_passes_every_variable_prod_uses() {
    let text = std::fs::read_to_string(repo_root().join("shoal.toml")).expect("shoal.toml");
    let prod = text
        .split("[env.prod]")
        .nth(1)
        .expect("shoal.toml has [env.prod]");
    let prod = prod.split("\n[").next().unwrap_or(prod);
    let re = regex::Regex::new(r"\$\{([A-Z0-9_]+)(:-[^}]*)?\}").expect("regex");
    let yml = std::fs::read_to_string(repo_root().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&yml).expect("yaml");
    let job_env = &yaml["jobs"]["deploy"]["env"];
    let mut seen = 0;
    for cap in re.captures_iter(prod) {
        let (name, default) = (&cap[1], cap.get(2));
        seen += 1;
        assert!(
            default.is_some() || job_env.get(name).is_some(),
            "[env.prod] uses ${{{name}}} and deploy.yml's deploy job does not set it"
        );
        assert!(
            repository_variables().contains_key(name),
            "{name}: add it to this test's repository variables and to README's Going to production"
        );
    }
    assert!(seen >= 6, "{prod}");
}

#[test]
fn validate_env_fails_on_an_unset_requirement_and_a_plain_credential() {
    let f = Fixture::new(&format!(
        "project = \"p\"\n{LOCAL}{}",
        ecs_env("vars = { DATABASE_URL = \"postgres://app:hunter2@db/x\" }\n")
    ));
    f.consumer(
        "sink",
        "kind = \"worker\"\nrequired = [\"WAREHOUSE_DIALECT\"]\n",
    );
    let out = shoal(f.root(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = shoal(f.root(), &["validate", "--env", "sandbox"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("shoal.toml:")
            && err.contains("`env.sandbox.vars.DATABASE_URL`: holds a URL with a password"),
        "{err}"
    );
    assert!(
        err.contains("consumers/sink/consumer.toml:2: `required[0]`: sink needs WAREHOUSE_DIALECT, and environment sandbox leaves it unset"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the error itself leaks it: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // plan refuses too, before reading anything live.
    let out = shoal(f.root(), &["plan", "--env", "sandbox"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
