//! Property tests: no manifest, however broken, makes shoal panic. Arbitrary bytes cover
//! the TOML parser's error paths; generated TOML with shoal's own keys and values of random
//! types reaches the validation and the error-collecting loop behind it.

use proptest::prelude::*;

use shoal::manifest::{Consumer, Project};

const KEYS: &[&str] = &[
    "kind",
    "cpu",
    "memory",
    "command",
    "build",
    "env",
    "secrets",
    "kafka",
    "topic",
    "scaling",
    "api",
    "dockerfile",
    "context",
    "target",
    "args",
    "group",
    "topics",
    "name",
    "partitions",
    "replication",
    "config",
    "min",
    "max",
    "max_lag_seconds",
    "port",
    "health_path",
    "project",
    "default_env",
    "platform",
    "region",
    "subnets",
    "bootstrap",
    "auth",
    "vars",
    "local",
    "x y",
];

fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<f64>().prop_map(toml::Value::Float),
        "[a-z0-9:/_.${}-]{0,12}".prop_map(toml::Value::String),
        prop::sample::select(vec![
            "worker",
            "api",
            "docker",
            "ecs",
            "Dockerfile",
            ".",
            "../.."
        ])
        .prop_map(|s| toml::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(|m| {
                toml::Value::Table(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::btree_map(prop::sample::select(KEYS), value(), 0..8).prop_map(|m| {
        let table: toml::Table = m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        toml::to_string(&table).unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = String::from_utf8_lossy(&bytes);
        let _ = Consumer::parse(dir.path(), &dir.path().join("consumers/c"), &text);
        let _ = Project::parse(dir.path(), &text);
    }

    #[test]
    fn generated_manifests_give_values_or_errors_never_panics(doc in document()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let consumer = dir.path().join("consumers/c");
        std::fs::create_dir_all(&consumer).expect("mkdir");
        std::fs::write(consumer.join("Dockerfile"), "FROM scratch\n").expect("write");
        match Consumer::parse(dir.path(), &consumer, &doc) {
            Ok(_) => {}
            Err(problems) => prop_assert!(!problems.is_empty()),
        }
        if let Ok(project) = Project::parse(dir.path(), &doc) {
            for name in project.env_names() {
                let _ = project.environment_with(name, &|_| None);
            }
        }
    }
}
