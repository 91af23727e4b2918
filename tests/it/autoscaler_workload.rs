//! The autoscaler as a workload: `consumers/shoal-autoscaler` deployed by `shoal deploy` to
//! the sandbox (moto for ECS and CloudWatch, the registry v2, tansu), then its image run the
//! way its task definition says, as a container on the real Docker Engine: it reads the
//! project from the image, raises another consumer's desired count on moto, publishes the
//! metrics (read back), and stops cleanly on SIGTERM.
//!
//! moto does not run tasks, so the test starts the container itself, with the task
//! definition's image, command and environment, plus what ECS would provide: credentials
//! (the task role's, here moto's test keys) and the AWS endpoint (here moto's).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::autoscale::{metric_names, worker_with_backlog};
use crate::support::{assert_ok, copy_tree, repo_root, stack_env, text, Container, Sandbox};
use crate::workloads::wait_for;

/// Copies what the autoscaler's build context needs from this repository into `to`.
fn copy_autoscaler_sources(to: &Path) {
    let root = repo_root();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        ".dockerignore",
        "consumers/shoal-autoscaler/consumer.toml",
        "consumers/shoal-autoscaler/Dockerfile",
    ] {
        let dest = to.join(file);
        std::fs::create_dir_all(dest.parent().expect("has parent")).expect("mkdir");
        std::fs::copy(root.join(file), &dest).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    for dir in ["src", "templates"] {
        copy_tree(&root.join(dir), &to.join(dir));
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker")
}

#[test]
fn the_repository_autoscaler_renders_with_its_own_role_and_stays_off_the_local_platform() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .current_dir(repo_root())
            .envs(stack_env())
            .env("NO_COLOR", "1")
            .output()
            .expect("runs shoal")
    };
    let out = run(&["render", "--env", "sandbox", "shoal-autoscaler"]);
    assert_ok(&out);
    let td: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        td["taskRoleArn"],
        "arn:aws:iam::123456789012:role/shoal-autoscaler"
    );
    let container = &td["containerDefinitions"][0];
    assert_eq!(
        container["command"],
        serde_json::json!(["autoscale", "--listen", "0.0.0.0:9464"])
    );
    let env: std::collections::BTreeMap<&str, &str> = container["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name"),
                v["value"].as_str().expect("value"),
            )
        })
        .collect();
    assert_eq!(env["SHOAL_ENV"], "sandbox");
    // The deploy's own value, handed on so the daemon resolves shoal.toml as the deploy did.
    assert_eq!(env["SHOAL_SUBNETS"], stack_env()["SHOAL_SUBNETS"]);

    // The other workloads keep the environment's task role.
    let out = run(&["render", "--env", "sandbox", "exposure-consumer"]);
    assert_ok(&out);
    let td: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(td.get("taskRoleArn").is_none(), "{td}");

    let out = run(&["render", "--env", "local", "shoal-autoscaler"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not deploy to environment local"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["plan", "--env", "local", "-o", "json"]);
    assert_ok(&out);
    assert!(
        !text(&out.stdout).contains("shoal-autoscaler"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_autoscaler_deploys_as_a_workload_and_scales_from_its_own_container() {
    let sb = Sandbox::new();
    copy_autoscaler_sources(sb.root());
    let consumer = worker_with_backlog(&sb, false).await;

    // The daemon's image is built here: the first build on a machine compiles shoal in
    // Docker (about 15 minutes on 2 cores); later ones reuse the dependency layer.
    let out = sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "10m"]);
    assert_ok(&out);

    let env = sb.env();
    let cfg = sb.aws_config(&env).await;
    let ecs = shoal::aws::ecs(&cfg);
    let names = vec!["shoal-autoscaler".to_string(), consumer.clone()];
    let services = shoal::platform::ecs::describe(&ecs, &env.cluster, &names)
        .await
        .expect("describe");
    assert_eq!(services[1].desired_count(), 1);
    let td = ecs
        .describe_task_definition()
        .task_definition(services[0].task_definition().expect("task definition"))
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let td = td.task_definition().expect("task definition");
    assert_eq!(
        td.task_role_arn(),
        Some("arn:aws:iam::123456789012:role/shoal-autoscaler")
    );
    let container = &td.container_definitions()[0];
    let image = container.image().expect("image");

    // Run it as ECS would: the task definition's image, command and environment.
    let mut environment: Vec<(&str, String)> = container
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default(),
                kv.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ] {
        environment.push((k, sb.var(k)));
    }
    let running = Container::run(
        &format!("{}-autoscaler", sb.project),
        image,
        &environment,
        container.command(),
    );

    wait_for(
        "the daemon to scale the worker out",
        Duration::from_secs(90),
        || {
            let count = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    shoal::platform::ecs::describe(
                        &ecs,
                        &env.cluster,
                        std::slice::from_ref(&consumer),
                    )
                    .await
                    .expect("describe")[0]
                        .desired_count()
                })
            });
            (count > 1).then_some(())
        },
    );

    let metrics = metric_names(&cfg, &consumer).await;
    for name in ["ConsumerLag", "DesiredCount"] {
        assert!(metrics.iter().any(|m| m == name), "{name}: {metrics:?}");
    }

    // SIGTERM (what ECS sends on a stop): the daemon finishes and exits 0.
    let out = docker(&["stop", "--time", "20", &running.0]);
    assert_ok(&out);
    let out = docker(&["inspect", "--format", "{{.State.ExitCode}}", &running.0]);
    assert_eq!(text(&out.stdout).trim(), "0", "{}", running.logs());
    assert!(running.logs().contains(&consumer), "{}", running.logs());
}
