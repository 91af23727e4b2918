//! What ships builds on a GitHub-hosted runner: every Dockerfile under `consumers/` and
//! `templates/new/` (and what `shoal new` writes, in Rust and in Python) starts from
//! `scratch`, an earlier stage, or an official public image with a tag. Names that only exist
//! on this machine (a `shoal/` namespace, a `:local` tag) are refused; `scripts/stack`
//! provides local stand-ins under the public names instead (`debian:bookworm-slim`,
//! `rust:X.Y-bookworm`, `python:3.11-slim-bookworm`). The Rust image's version is one,
//! everywhere, and CI's job runs in it; so is the Python image's.

use std::path::{Path, PathBuf};

use crate::support::{assert_ok, repo_root, shoal, Fixture};

/// Docker Hub's official images ("library" names) that a Dockerfile here may start from.
/// Adding one is a deliberate edit: each is pullable by anyone, unauthenticated.
const OFFICIAL: &[&str] = &[
    "alpine", "busybox", "debian", "golang", "node", "python", "rust", "ubuntu",
];

/// The Dockerfiles (and Dockerfile templates) under `dir`: files named `Dockerfile`,
/// `Dockerfile.<something>` or `<something>.Dockerfile`, with an optional `.j2`; not
/// `Dockerfile.dockerignore`.
fn dockerfiles(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != "target")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let name = name.strip_suffix(".j2").unwrap_or(name);
            !name.ends_with(".dockerignore")
                && (name == "Dockerfile"
                    || name.starts_with("Dockerfile.")
                    || name.to_ascii_lowercase().ends_with(".dockerfile"))
        })
        .collect()
}

/// The image each `FROM` names, in order, with `${ARG}`s from global `ARG NAME=default`
/// lines expanded; and each stage's alias.
fn from_lines(dockerfile: &str) -> Vec<(String, Option<String>)> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut args: Vec<(String, String)> = Vec::new();
    let mut froms = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(instruction) = words.first() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && froms.is_empty() {
            if let Some((k, v)) = words.get(1).and_then(|a| a.split_once('=')) {
                args.push((k.to_string(), v.trim_matches('"').to_string()));
            }
        }
        if !instruction.eq_ignore_ascii_case("FROM") {
            continue;
        }
        let rest: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let mut image = rest.first().copied().unwrap_or_default().to_string();
        for (k, v) in &args {
            image = image
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
        let alias = match rest.as_slice() {
            [_, as_, alias] if as_.eq_ignore_ascii_case("AS") => Some(alias.to_lowercase()),
            _ => None,
        };
        froms.push((image, alias));
    }
    froms
}

/// Why an image named by `FROM` would not build on a GitHub-hosted runner, if it would not.
fn not_public(image: &str, earlier_stages: &[String]) -> Option<String> {
    if image == "scratch" || earlier_stages.contains(&image.to_lowercase()) {
        return None;
    }
    if image.contains('$') {
        return Some("a variable without a default (give it one: ARG NAME=<public image>)".into());
    }
    let name = image.split('@').next().unwrap_or_default();
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .unwrap_or(repo)
        .strip_prefix("library/")
        .unwrap_or(repo);
    if repo.contains('/') {
        return Some(format!(
            "`{repo}` is not an official image (a namespace or a registry: it exists only where \
             someone built or pushed it)"
        ));
    }
    if !OFFICIAL.contains(&repo) {
        return Some(format!(
            "`{repo}` is not one of Docker Hub's official images this repository uses ({})",
            OFFICIAL.join(", ")
        ));
    }
    match tag {
        None if !image.contains('@') => Some("no tag: name the version".into()),
        Some(tag) if tag.contains("local") => Some(format!(
            "the tag `{tag}` names an image built on this machine"
        )),
        _ => None,
    }
}

/// Every problem in one Dockerfile, as `file: FROM image: why`.
fn problems(path: &str, dockerfile: &str) -> Vec<String> {
    let mut stages = Vec::new();
    let mut found = Vec::new();
    let froms = from_lines(dockerfile);
    if froms.is_empty() {
        found.push(format!("{path}: no FROM"));
    }
    for (image, alias) in froms {
        if let Some(why) = not_public(&image, &stages) {
            found.push(format!("{path}: FROM {image}: {why}"));
        }
        stages.extend(alias);
    }
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `rust:` images a Dockerfile starts from.
fn rust_images(dockerfile: &str) -> Vec<String> {
    images_of(dockerfile, "rust:")
}

#[test]
fn the_check_refuses_names_that_exist_only_here() {
    let old = "FROM shoal/rust:local AS build\nRUN cargo build\n\nFROM shoal/debian:bookworm\n";
    let found = problems("old", old);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("FROM shoal/rust:local"), "{found:#?}");
    assert!(
        found[1].contains("FROM shoal/debian:bookworm"),
        "{found:#?}"
    );
    for (image, why) in [
        ("rust:local", "the tag `local`"),
        ("python:local", "the tag `local`"),
        ("shoal/python:3.11", "not an official image"),
        ("rust", "no tag"),
        ("mybase:1.0", "not one of Docker Hub's official images"),
        ("ghcr.io/acme/rust:1.95", "not an official image"),
        ("${BASE}", "a variable without a default"),
    ] {
        let found = problems("x", &format!("FROM {image}\n"));
        assert!(
            found.len() == 1 && found[0].contains(why),
            "{image}: {found:#?}"
        );
    }
    let fine = "ARG RUST=rust:1.95-bookworm\nFROM --platform=linux/amd64 ${RUST} AS build\n\
                FROM build AS test\nFROM docker.io/library/debian:bookworm-slim\n\
                FROM scratch\nCOPY --from=build /x /x\nFROM python:3.11-slim-bookworm\n";
    assert_eq!(problems("fine", fine), Vec::<String>::new());
}

#[test]
fn dockerfiles_start_from_public_images() {
    let root = repo_root();
    let mut files = dockerfiles(&root.join("consumers"));
    files.extend(dockerfiles(&root.join("templates/new")));
    let shipped = ["exposure-api", "exposure-consumer", "shoal-autoscaler"];
    for name in shipped {
        let path = root.join("consumers").join(name).join("Dockerfile");
        assert!(files.contains(&path), "{} in {files:#?}", path.display());
    }
    for template in [
        "templates/new/Dockerfile.j2",
        "templates/new/python/Dockerfile.j2",
    ] {
        let template = root.join(template);
        assert!(files.contains(&template), "{files:#?}");
    }
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with("Dockerfile.dockerignore")),
        "{files:#?}"
    );
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
            problems(&rel, &read(f))
        })
        .collect();
    assert!(
        found.is_empty(),
        "these build only on this machine; start from an official public image \
         (scripts/stack provides local stand-ins under those names):\n{}",
        found.join("\n")
    );
}

/// The images a Dockerfile starts from whose name begins with `prefix` (`rust:`, `python:`).
fn images_of(dockerfile: &str, prefix: &str) -> Vec<String> {
    from_lines(dockerfile)
        .into_iter()
        .map(|(image, _)| image)
        .filter(|image| image.starts_with(prefix))
        .collect()
}

/// What `shoal new` writes, for both kinds and both languages: Rust builds in `rust:` and
/// Python runs on the `python:` image the stack provides.
#[test]
fn new_consumers_start_from_public_images() {
    let fx = Fixture::standard();
    for lang in ["rust", "python"] {
        for kind in ["worker", "api"] {
            let name = format!("{}{}", &lang[..1], &kind[..1]);
            assert_ok(&shoal(
                fx.root(),
                &["new", &name, "--kind", kind, "--lang", lang],
            ));
            let dockerfile = read(&fx.root().join("consumers").join(&name).join("Dockerfile"));
            let found = problems(
                &format!("shoal new --lang {lang} --kind {kind}"),
                &dockerfile,
            );
            assert!(found.is_empty(), "{}\n{dockerfile}", found.join("\n"));
            let (rust, python) = (
                images_of(&dockerfile, "rust:"),
                images_of(&dockerfile, "python:"),
            );
            match lang {
                "rust" => assert!(rust.len() == 1 && python.is_empty(), "{dockerfile}"),
                _ => assert_eq!(python, ["python:3.11-slim-bookworm"], "{dockerfile}"),
            }
        }
    }
}

/// One Python version: every Dockerfile's `python:` image is the same, the one scripts/stack
/// makes a stand-in for (from Debian bookworm's python3, which is 3.11).
#[test]
fn one_python_image_everywhere() {
    let root = repo_root();
    let mut files = dockerfiles(&root.join("consumers"));
    files.extend(dockerfiles(&root.join("templates/new")));
    let mut images: Vec<String> = files
        .iter()
        .flat_map(|f| images_of(&read(f), "python:"))
        .collect();
    images.sort();
    images.dedup();
    assert_eq!(images, ["python:3.11-slim-bookworm"]);
}

/// One Rust version: every Dockerfile's `rust:` image is the same, and CI's job runs in it
/// (scripts/stack makes the stand-in from the job's toolchain, and refuses another version).
#[test]
fn one_rust_image_everywhere() {
    let root = repo_root();
    let mut files = dockerfiles(&root.join("consumers"));
    files.extend(dockerfiles(&root.join("templates/new")));
    let mut images: Vec<String> = files.iter().flat_map(|f| rust_images(&read(f))).collect();
    images.sort();
    images.dedup();
    assert_eq!(
        images.len(),
        1,
        "one rust:X.Y-bookworm everywhere: {images:?}"
    );
    let ci: serde_yaml::Value =
        serde_yaml::from_str(&read(&root.join(".github/workflows/ci.yml"))).expect("ci.yml");
    let ci_image = ci["jobs"]["test"]["container"]["image"].as_str();
    assert_eq!(
        ci_image,
        Some(images[0].as_str()),
        "ci.yml's test job runs in the image the Dockerfiles build in"
    );
}
