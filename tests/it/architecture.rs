//! The module map holds: every module of `src/` uses only modules in layers below its own,
//! read from the `crate::` paths in its source. The layers are the architecture of the README
//! ("Layout"); a new module gets a place here, and a use that points up or sideways fails
//! with the file that has it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// Bottom first. A module may use the modules of lower layers, never its own layer's others
/// nor higher ones. The platform wings (`platform/*`: every folder under src/platform/, so a
/// new platform needs no entry here) share a layer so none can reach into another.
const LAYERS: &[&[&str]] = &[
    &["manifest"],
    &["discover", "render", "scaffold"],
    &["plan"],
    &["error"],
    &["aws"],
    &["image", "kafka"],
    // The platform root: the `Scale` trait, rollout errors and waits.
    &["platform"],
    // The deploy pipeline both wings share, and the `Platform` trait they implement.
    &["deploy"],
    &["platform/*"],
    &["scale"],
    // The flags as typed and the printing: nothing below knows an output format or prints.
    &["cli"],
    &["report"],
    &["app"],
];

fn layer(module: &str) -> Option<usize> {
    let name = match module.strip_prefix("platform/") {
        Some(wing) if wings().iter().any(|w| w == wing) => "platform/*",
        _ => module,
    };
    LAYERS.iter().position(|l| l.contains(&name))
}

/// The platform wings: the folders under src/platform/.
fn wings() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo_root().join("src/platform"))
        .expect("src/platform is readable")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The module a source file belongs to: its top-level folder or file under `src/`, and for
/// files under `src/platform/<wing>/`, the wing.
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [file] if file == "lib.rs" || file == "main.rs" => None,
        [file] => Some(file.trim_end_matches(".rs").to_string()),
        [platform, wing, _, ..] if platform == "platform" => Some(format!("platform/{wing}")),
        [top, ..] => Some(top.clone()),
        [] => None,
    }
}

/// The modules a piece of source names through `crate::…` (comments left out). A path into
/// `crate::platform::ecs` or `crate::platform::docker` names that wing.
fn used_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for name in group[..end].split(',') {
                let name = name.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    out.insert(name.to_string());
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name == "platform" {
            let after = &rest["platform".len()..];
            let wing = wings().into_iter().find(|w| {
                after.strip_prefix(&format!("::{w}")).is_some_and(|rest| {
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            });
            if let Some(w) = wing {
                out.insert(format!("platform/{w}"));
                continue;
            }
        }
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(relative) else {
            continue;
        };
        let Some(own) = layer(&module) else {
            problems.push(format!(
                "src/{}: module `{module}` has no layer; add it to LAYERS in tests/it/architecture.rs",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).expect("a readable file");
        for used in used_modules(&source) {
            // `crate::Error` and `crate::exit` are the error module's, re-exported at the root.
            let used = match used.as_str() {
                "Error" | "exit" => "error".to_string(),
                _ => used,
            };
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(_) => problems.push(format!(
                    "src/{}: `{module}` uses `{used}`, which is not in a layer below it",
                    relative.display()
                )),
                None => problems.push(format!(
                    "src/{}: `{module}` uses `crate::{used}`, which is not a module in LAYERS",
                    relative.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_uses_that_point_up() {
    let uses = used_modules(
        "use crate::platform::ecs::describe;\nuse crate::{plan, render::Target};\n// crate::app\nlet x = crate::scale::policy::decide;",
    );
    let want: BTreeSet<String> = ["platform/ecs", "plan", "render", "scale"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(uses, want);
    assert_eq!(
        module_of(Path::new("platform/docker/spec.rs")).as_deref(),
        Some("platform/docker")
    );
    assert_eq!(
        module_of(Path::new("platform/mod.rs")).as_deref(),
        Some("platform")
    );
    assert_eq!(module_of(Path::new("app.rs")).as_deref(), Some("app"));
    assert!(layer("scale") > layer("platform/ecs"));
    assert_eq!(layer("platform/docker"), layer("platform/ecs"));
    assert_eq!(wings(), ["docker", "ecs"]);
}
