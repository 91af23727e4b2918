//! Zero-configuration folders: a folder under `consumers/` with a `Dockerfile` and no
//! `consumer.toml` is a worker with the defaults; a folder with neither is skipped. The
//! seed's example (tests/fixtures/zero-config/seed-worker: a Dockerfile and a main.py) is
//! copied in unchanged and deployed to the local platform (Docker Engine) and to the sandbox
//! (moto, the stack's registry).

use std::path::Path;

use shoal::discover;
use shoal::manifest::Kind;

use crate::support::{assert_ok, copy_tree, repo_root, shoal, text, Fixture, Sandbox, WORKER};

/// The seed-shaped folder, copied into `root/consumers/<name>`.
fn seed_worker(root: &Path, name: &str) {
    copy_tree(
        &repo_root().join("tests/fixtures/zero-config/seed-worker"),
        &root.join("consumers").join(name),
    );
}

#[test]
fn a_folder_with_a_dockerfile_and_no_manifest_is_a_worker_with_the_defaults() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    seed_worker(f.root(), "seed");
    f.write("consumers/notes/README.md", "not a workload");
    let fleet = discover::discover(f.root()).expect("valid");
    assert_eq!(
        fleet.skipped,
        vec![std::path::PathBuf::from("consumers/notes")],
        "a folder with neither file is skipped"
    );
    let seed = fleet
        .get("seed")
        .expect("the Dockerfile-only folder is a workload");
    assert!(seed.defaults);
    assert_eq!(seed.kind, Kind::Worker);
    assert_eq!((seed.cpu, seed.memory), (256, 512));
    assert_eq!(seed.initial_count(), 1);
    assert!(seed.kafka.is_none() && seed.scaling.is_none() && seed.topics.is_empty());
    assert!(seed.api.is_none() && seed.command.is_none());
    assert_eq!(seed.build.dockerfile_in_context, "Dockerfile");
    assert_eq!(seed.build.context, f.root().join("consumers/seed"));
    assert!(!fleet.get("orders").expect("orders").defaults);
}

#[test]
fn a_folder_name_that_cannot_be_a_service_is_reported_for_a_dockerfile_only_folder() {
    let f = Fixture::standard();
    f.write("consumers/Bad_Name/Dockerfile", "FROM scratch\n");
    let problems = discover::discover(f.root()).expect_err("illegal name").0;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].message.contains("the folder name \"Bad_Name\""),
        "{:?}",
        problems[0]
    );
}

#[test]
fn discover_shows_defaults_in_text_and_json_and_names_skipped_folders_with_v() {
    let f = Fixture::standard();
    f.consumer("orders", WORKER);
    seed_worker(f.root(), "seed");
    f.write("consumers/scratch/notes.txt", "x");

    let out = shoal(f.root(), &["discover", "-v"]);
    assert_ok(&out);
    let stdout = text(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert!(stdout.starts_with("CONSUMER  KIND"), "{stdout}");
    assert_eq!(row("seed")[1..3], ["worker", "defaults"], "{stdout}");
    assert_eq!(row("orders")[1..3], ["worker", "consumer.toml"], "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("skipped: no consumer.toml and no Dockerfile")
            && stderr.contains("consumers/scratch"),
        "{stderr}"
    );

    let out = shoal(f.root(), &["discover", "-o", "json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let seed = v["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .find(|c| c["name"] == "seed")
        .expect("seed listed");
    assert_eq!(seed["manifest"], "defaults");
    assert_eq!(seed["defaults"], true);
    assert_eq!(seed["kind"], "worker");
    assert_eq!(seed["tag"].as_str().map(str::len), Some(16));
    assert_eq!(v["skipped"], serde_json::json!(["consumers/scratch"]));
}

#[test]
fn validate_explains_how_to_add_a_manifest() {
    let f = Fixture::standard();
    seed_worker(f.root(), "seed");
    let out = shoal(f.root(), &["validate"]);
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 consumer (1 with the defaults, no manifest)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("seed has no consumer.toml, so it deploys with the defaults (a worker, 256 CPU units / 512 MiB, 1 replica, no scaling, no [kafka]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("write consumers/seed/consumer.toml, e.g.:"),
        "{stdout}"
    );
    assert!(stdout.contains("[kafka]\n    group = \"seed\""), "{stdout}");
    assert!(stdout.contains("[scaling]"), "{stdout}");

    let out = shoal(f.root(), &["validate", "-o", "json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["defaults"][0]["consumer"], "seed");
    assert!(v["defaults"][0]["hint"]
        .as_str()
        .is_some_and(|h| h.contains("[scaling]")));

    // The hint's example is itself a valid manifest: written out, the folder validates.
    let hint = v["defaults"][0]["hint"].as_str().expect("hint").to_string();
    let example: String = hint
        .split("e.g.:\n")
        .nth(1)
        .expect("an example")
        .split("\n\n(")
        .next()
        .expect("the example ends")
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    f.write("consumers/seed/consumer.toml", &example);
    let fleet = discover::discover(f.root()).unwrap_or_else(|p| panic!("{example}\n{p}"));
    let seed = fleet.get("seed").expect("seed");
    assert!(!seed.defaults);
    assert_eq!(seed.scaling.map(|s| (s.min, s.max)), Some((1, 4)));
}

#[test]
fn the_seed_example_deploys_unchanged_to_the_local_platform() {
    let l = crate::docker_platform::Local::new();
    seed_worker(l.root(), "seed");
    let out = l.shoal(&["deploy", "--env", "local", "--timeout", "60s", "-o", "json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true, "{v}");
    let running = l.running();
    assert_eq!(running.len(), 1, "one replica: {running:?}");
    let name = &running[0].0;
    assert!(
        name.starts_with(&format!("shoal-{}-local-seed-", l.project)),
        "{name}"
    );
    let logs = crate::docker_platform::docker(&["logs", name]);
    assert!(
        logs.contains("seed-worker") && logs.contains(" started"),
        "{logs}"
    );

    // A second deploy of the unchanged folder changes nothing.
    let out = l.shoal(&["plan", "--env", "local", "-o", "json"]);
    assert_ok(&out);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["summary"]["create"], 0, "{plan}");
    assert_eq!(plan["summary"]["change"], 0, "{plan}");
}

#[test]
fn the_seed_example_deploys_unchanged_to_the_sandbox() {
    let sb = Sandbox::new();
    seed_worker(sb.root(), "seed");
    let out = sb.shoal(&[
        "deploy",
        "--env",
        "sandbox",
        "--timeout",
        "60s",
        "-o",
        "json",
    ]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true, "{v}");

    let out = sb.shoal(&["render", "seed", "--env", "sandbox"]);
    assert_ok(&out);
    let td: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (td["cpu"].as_str(), td["memory"].as_str()),
        (Some("256"), Some("512"))
    );
    assert!(td["containerDefinitions"][0].get("portMappings").is_none());

    let out = sb.shoal(&["status", "--env", "sandbox", "-o", "json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["consumer"] == "seed")
        .unwrap_or_else(|| panic!("the seed service: {status}"));
    assert_eq!(row["desired"], 1, "one replica: {row}");
}
