//! Whether an environment can run its workloads: every setting a workload declares
//! `required` is set, and (on ECS) no plain value carries a credential. `shoal validate
//! --env E`, `plan` and `deploy` run these checks on the resolved environment and its fleet.

use std::collections::BTreeSet;
use std::path::Path;

use super::credential::credential_reason;
use super::problem::{quote_key, FileProblems, Problems};
use super::validate::RESERVED_ENV;
use super::{Consumer, Environment, KafkaAccess, Platform, CONSUMER_FILE, PROJECT_FILE};

/// The variables a container of `consumer` gets in `env`, whatever sets them: shoal, the
/// manifest's `[env]` and `[secrets]`, the environment's `vars` and `secrets`. An empty value
/// is not set.
fn set_names<'a>(env: &'a Environment, consumer: &'a Consumer) -> BTreeSet<&'a str> {
    let mut names: BTreeSet<&str> = RESERVED_ENV.iter().copied().collect();
    if !matches!(env.kafka, KafkaAccess::None) {
        names.insert("KAFKA_BOOTSTRAP");
    }
    if consumer.kafka.is_some() {
        names.extend(["KAFKA_GROUP", "KAFKA_TOPICS"]);
    }
    if consumer.api.is_some() {
        names.insert("PORT");
    }
    let plain = consumer.env.iter().chain(env.vars.iter());
    names.extend(
        plain
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.as_str()),
    );
    names.extend(consumer.secrets.keys().map(String::as_str));
    names.extend(env.secrets.keys().map(String::as_str));
    names
}

/// Checks `consumers` (as they deploy: `[env]` expanded) against `env`. `project_text` is
/// `shoal.toml`'s text, to put lines on the problems.
pub(super) fn check(project_text: &str, env: &Environment, consumers: &[Consumer]) -> Problems {
    let mut problems = Problems::default();
    let env_key = format!("env.{}", quote_key(&env.name));
    let ecs = env.platform == Platform::Ecs;
    let mut shoal_toml = FileProblems::new(Path::new(PROJECT_FILE), project_text);
    if ecs {
        for (name, value) in &env.vars {
            if env.allow_plain.contains(name) {
                continue;
            }
            if let Some(reason) = credential_reason(name, value) {
                shoal_toml
                    .push(
                        format!("{env_key}.vars.{}", quote_key(name)),
                        format!(
                            "holds {reason} in plain text; on ECS a plain value is readable by anyone who can describe the task definition, and shoal refuses it"
                        ),
                    )
                    .help = Some(format!(
                    "store it in Secrets Manager (or SSM) and move it to [env.{0}] secrets = {{ {name} = \"arn:aws:secretsmanager:...\" }}; if it is not secret, say so with allow_plain = [\"{name}\"] in [env.{0}]",
                    env.name
                ));
            }
        }
    }
    problems.extend(shoal_toml.into_problems());
    for c in consumers {
        let text = std::fs::read_to_string(c.dir.join(CONSUMER_FILE)).unwrap_or_default();
        let mut fp = FileProblems::new(&c.manifest, &text);
        let set = set_names(env, c);
        for r in &c.required {
            if r.on.is_some_and(|p| p != env.platform) {
                continue;
            }
            if r.any_of.iter().any(|n| set.contains(n.as_str())) {
                continue;
            }
            let what = match r.any_of.as_slice() {
                [one] => one.clone(),
                many => format!("one of {}", many.join(", ")),
            };
            fp.push(
                &r.key,
                format!(
                    "{} needs {what}, and environment {} leaves it unset",
                    c.name, env.name
                ),
            )
            .help = Some(format!(
                "set {} in [env.{}] of {PROJECT_FILE}: in secrets = {{ {} = \"arn:aws:secretsmanager:...\" }} for a credential, else in vars (or in this file's [env] or [secrets])",
                r.any_of[0], env.name, r.any_of[0]
            ));
        }
        if ecs {
            for (name, value) in &c.env {
                if c.allow_plain.contains(name) {
                    continue;
                }
                if let Some(reason) = credential_reason(name, value) {
                    fp.push(
                        format!("env.{}", quote_key(name)),
                        format!(
                            "holds {reason} in plain text; environment {} runs on ECS, where a plain value is readable by anyone who can describe the task definition, and shoal refuses it",
                            env.name
                        ),
                    )
                    .help = Some(format!(
                        "store it in Secrets Manager (or SSM) and move it to [secrets] {name} = \"arn:aws:secretsmanager:...\"; if it is not secret, say so with allow_plain = [\"{name}\"]"
                    ));
                }
            }
        }
        problems.extend(fp.into_problems());
    }
    problems
}
