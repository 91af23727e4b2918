//! The content hash of a build context: stable, blind to ignored files, and sensitive to
//! every included byte, the Dockerfile, the build args and the target.

use shoal::discover::{self, context};

use crate::support::Fixture;

/// The fixture's files beside the standard ones, in the order `fixture` writes them.
const FILES: &[(&str, &str)] = &[
    ("consumers/c/Dockerfile", "FROM scratch\n"),
    (
        "consumers/c/consumer.toml",
        "kind = \"worker\"\n[build]\nargs = { MODE = \"release\" }\n",
    ),
    ("consumers/c/src/main.rs", "fn main() {}\n"),
    ("consumers/c/src/lib/util.rs", "pub fn x() {}\n"),
    ("consumers/c/notes.md", "notes\n"),
    ("consumers/c/target/debug/big.bin", "build output\n"),
    (
        "consumers/c/.dockerignore",
        "# build output and docs stay out\ntarget\n*.md\n!KEEP.md\n",
    ),
    ("consumers/c/KEEP.md", "kept\n"),
];

fn fixture() -> Fixture {
    let f = Fixture::standard();
    for (path, text) in FILES {
        f.write(path, text);
    }
    f
}

fn hash(f: &Fixture) -> context::ContextHash {
    let fleet = discover::discover(f.root()).expect("valid fixture");
    context::hash(&fleet.consumers[0].build).expect("readable context")
}

#[test]
fn stable_across_runs_and_copies() {
    let a = fixture();
    let b = fixture();
    assert_eq!(hash(&a), hash(&a));
    assert_eq!(
        hash(&a),
        hash(&b),
        "same content in another folder, same hash"
    );
}

#[test]
fn independent_of_creation_order() {
    let a = fixture();
    let b = Fixture::standard();
    // The same files, written in the opposite order.
    for (path, text) in FILES.iter().rev() {
        b.write(path, text);
    }
    assert_eq!(hash(&a), hash(&b));
}

#[test]
fn ignored_files_do_not_change_it() {
    let f = fixture();
    let before = hash(&f);
    f.write("consumers/c/target/debug/big.bin", "rebuilt output\n");
    f.write("consumers/c/target/new.o", "x");
    f.write("consumers/c/notes.md", "edited notes\n");
    assert_eq!(before, hash(&f));
}

#[test]
fn one_changed_byte_changes_it() {
    let f = fixture();
    let before = hash(&f);
    f.write("consumers/c/src/lib/util.rs", "pub fn y() {}\n");
    assert_ne!(before.digest, hash(&f).digest);
}

#[test]
fn an_exception_re_includes_a_file() {
    let f = fixture();
    let before = hash(&f);
    f.write("consumers/c/KEEP.md", "kept!\n");
    assert_ne!(
        before.digest,
        hash(&f).digest,
        "KEEP.md is re-included by !KEEP.md"
    );
}

#[test]
fn new_empty_folder_renamed_file_and_exec_bit_change_it() {
    let f = fixture();
    let h0 = hash(&f);
    std::fs::create_dir(f.root().join("consumers/c/empty")).expect("mkdir");
    let h1 = hash(&f);
    assert_ne!(h0.digest, h1.digest, "an empty folder is part of the image");
    std::fs::rename(
        f.root().join("consumers/c/src/main.rs"),
        f.root().join("consumers/c/src/start.rs"),
    )
    .expect("rename");
    let h2 = hash(&f);
    assert_ne!(h1.digest, h2.digest, "a rename changes it");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = f.root().join("consumers/c/src/start.rs");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_ne!(h2.digest, hash(&f).digest, "the exec bit changes it");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o775)).expect("chmod");
        assert_eq!(
            hash(&f).digest,
            {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
                hash(&f).digest
            },
            "other permission bits are left out"
        );
    }
}

#[test]
fn dockerfile_build_args_and_target_change_it() {
    let f = fixture();
    let h0 = hash(&f);
    f.write("consumers/c/Dockerfile", "FROM scratch\nCOPY . /\n");
    let h1 = hash(&f);
    assert_ne!(h0.digest, h1.digest, "Dockerfile");
    f.write(
        "consumers/c/consumer.toml",
        "kind = \"worker\"\n[build]\nargs = { MODE = \"debug\" }\n",
    );
    let h2 = hash(&f);
    assert_ne!(h1.digest, h2.digest, "build arg");
    f.write(
        "consumers/c/consumer.toml",
        "kind = \"worker\"\n[build]\nargs = { MODE = \"debug\" }\ntarget = \"runtime\"\n",
    );
    assert_ne!(h2.digest, hash(&f).digest, "target");
}

#[test]
fn an_ignored_dockerfile_is_still_hashed() {
    let f = fixture();
    f.write("consumers/c/.dockerignore", "Dockerfile\n");
    let before = hash(&f);
    f.write("consumers/c/Dockerfile", "FROM scratch\n# changed\n");
    assert_ne!(before.digest, hash(&f).digest);
}

#[test]
fn buildkit_dockerfile_specific_ignore_file_wins() {
    let f = fixture();
    f.write("consumers/c/Dockerfile.dockerignore", "src\n");
    let before = hash(&f);
    f.write("consumers/c/src/main.rs", "fn main() { changed() }\n");
    assert_eq!(
        before,
        hash(&f),
        "src is ignored by Dockerfile.dockerignore"
    );
}

#[test]
fn the_tag_is_a_prefix_of_the_digest() {
    let h = hash(&fixture());
    assert_eq!(h.tag().len(), 16);
    assert!(h.digest.starts_with(h.tag()));
    assert_eq!(
        h.files, 6,
        "Dockerfile, consumer.toml, .dockerignore, KEEP.md, two sources"
    );
}
