//! The build context as a tar archive, made from the same file list as the content hash
//! ([`crate::discover::context::entries`]), so `.dockerignore` means the same in both.
//!
//! The archive is deterministic: entries in the listing's (byte) order, every mtime 0, owner
//! and group 0 with no names, and modes from the executable bit only (0755 or 0644; folders
//! 0755). Two machines with the same files send the same bytes.

use std::fs;
use std::io;

use crate::discover::context::{entries, ContextError, EntryKind};
use crate::manifest::Build;

/// Writes the build context of `build` as an uncompressed tar archive.
pub fn context_tar(build: &Build) -> Result<Vec<u8>, ContextError> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries(build)? {
        let io_err = |source: io::Error| ContextError::Io {
            path: entry.path.clone(),
            source,
        };
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match &entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", entry.rel), io::empty())
                    .map_err(io_err)?;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, &entry.rel, target)
                    .map_err(io_err)?;
            }
            EntryKind::File { executable } => {
                let file = fs::File::open(&entry.path).map_err(io_err)?;
                let len = file.metadata().map_err(io_err)?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(len);
                // `take` so a file that grows meanwhile cannot overrun its header's size.
                tar.append_data(&mut header, &entry.rel, io::Read::take(file, len))
                    .map_err(io_err)?;
            }
        }
    }
    tar.into_inner().map_err(|source| ContextError::Io {
        path: build.context.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn build(root: &std::path::Path) -> Build {
        Build {
            dockerfile: root.join("Dockerfile"),
            context: root.to_path_buf(),
            dockerfile_in_context: "Dockerfile".into(),
            target: None,
            args: BTreeMap::new(),
        }
    }

    fn names(tar_bytes: &[u8]) -> Vec<(String, u32, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").to_string_lossy().into_owned(),
                    h.mode().expect("mode"),
                    h.mtime().expect("mtime"),
                )
            })
            .collect()
    }

    #[test]
    fn honours_dockerignore_and_is_deterministic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").expect("write");
        fs::write(root.join(".dockerignore"), "target\n*.log\n").expect("write");
        fs::create_dir_all(root.join("src")).expect("mkdir");
        fs::write(root.join("src/main.rs"), "fn main() {}\n").expect("write");
        fs::write(root.join("debug.log"), "noise").expect("write");
        fs::create_dir_all(root.join("target")).expect("mkdir");
        fs::write(root.join("target/big"), "x").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
            fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        let b = build(root);
        let first = context_tar(&b).expect("tar");
        let second = context_tar(&b).expect("tar");
        assert_eq!(first, second, "the same files give the same bytes");
        let listed = names(&first);
        let paths: Vec<&str> = listed.iter().map(|(p, _, _)| p.as_str()).collect();
        assert!(paths.contains(&"Dockerfile"), "{paths:?}");
        assert!(paths.contains(&".dockerignore"), "{paths:?}");
        assert!(paths.contains(&"src/main.rs"), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("target")), "{paths:?}");
        assert!(!paths.contains(&"debug.log"), "{paths:?}");
        for (p, mode, mtime) in &listed {
            assert_eq!(*mtime, 0, "{p}");
            let want = if p == "run.sh" || p.ends_with('/') {
                0o755
            } else {
                0o644
            };
            assert_eq!(*mode, want, "{p}");
        }
    }
}
