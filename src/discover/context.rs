//! The build context of a workload: the files Docker would receive, and their content hash.
//!
//! The hash is the image tag. It covers every file the context sends (after `.dockerignore`),
//! each file's path, type and executable bit, the Dockerfile, the build args, the target and
//! the platform. Paths are walked in byte order and framed with lengths, so the hash is the
//! same on every machine and changes when any included byte does. Timestamps, owners and
//! permission bits other than "executable" are left out: git does not keep them either.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dockerignore::DockerIgnore;
use crate::manifest::Build;

/// The platform every image is built for (Fargate's default architecture).
pub const PLATFORM: &str = "linux/amd64";

/// How many hex digits of the digest make the tag (64 bits).
const TAG_LEN: usize = 16;

/// One entry of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the context, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { executable: bool },
    Symlink { target: String },
}

/// The content hash of a build context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContextHash {
    /// Full SHA-256, hex.
    pub digest: String,
    /// Files included.
    pub files: usize,
    /// Bytes of file content included.
    pub bytes: u64,
}

impl ContextHash {
    /// The image tag: the first 16 hex digits of the digest.
    pub fn tag(&self) -> &str {
        &self.digest[..TAG_LEN]
    }
}

/// A build context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Ignore {
        path: PathBuf,
        source: super::dockerignore::PatternError,
    },
}

/// The `.dockerignore` that applies: BuildKit's `<Dockerfile>.dockerignore` beside the
/// Dockerfile when present, else `.dockerignore` at the context root.
pub fn ignore_rules(build: &Build) -> Result<DockerIgnore, ContextError> {
    let mut beside = build.dockerfile.clone().into_os_string();
    beside.push(".dockerignore");
    let candidates = [PathBuf::from(beside), build.context.join(".dockerignore")];
    for path in candidates {
        match fs::read_to_string(&path) {
            Ok(text) => {
                return DockerIgnore::parse(&text)
                    .map_err(|source| ContextError::Ignore { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ContextError::Io { path, source }),
        }
    }
    Ok(DockerIgnore::default())
}

/// Lists what the context sends, in a stable order. As Docker does, the Dockerfile and
/// `.dockerignore` are sent even when the rules exclude them.
pub fn entries(build: &Build) -> Result<Vec<Entry>, ContextError> {
    let rules = ignore_rules(build)?;
    let root = &build.context;
    let keep_always = [build.dockerfile_in_context.as_str(), ".dockerignore"];
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let Some(rel) = rel_path(root, e.path()) else {
                return true;
            };
            !(e.file_type().is_dir() && rules.excludes(&rel) && rules.can_skip_dir(&rel))
        });
    for entry in walker {
        let entry = entry.map_err(|e| ContextError::Io {
            path: e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.clone()),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("file system loop")),
        })?;
        let Some(rel) = rel_path(root, entry.path()) else {
            continue;
        };
        if rules.excludes(&rel) && !keep_always.contains(&rel.as_str()) {
            continue;
        }
        let ft = entry.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|source| ContextError::Io {
                path: entry.path().to_path_buf(),
                source,
            })?;
            EntryKind::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if ft.is_file() {
            let meta = entry.metadata().map_err(|e| ContextError::Io {
                path: entry.path().to_path_buf(),
                source: e.into(),
            })?;
            EntryKind::File {
                executable: is_executable(&meta),
            }
        } else {
            // Sockets, FIFOs and devices are not sent by Docker either.
            continue;
        };
        out.push(Entry {
            rel,
            path: entry.path().to_path_buf(),
            kind,
        });
    }
    Ok(out)
}

fn rel_path(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Hashes a build context.
pub fn hash(build: &Build) -> Result<ContextHash, ContextError> {
    let mut h = Sha256::new();
    let frame = |h: &mut Sha256, tag: &[u8], data: &[u8]| {
        h.update(tag);
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    };
    frame(&mut h, b"shoal-context", b"v1");
    let mut files = 0;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in entries(build)? {
        match &entry.kind {
            EntryKind::Dir => frame(&mut h, b"D", entry.rel.as_bytes()),
            EntryKind::Symlink { target } => {
                frame(&mut h, b"L", entry.rel.as_bytes());
                frame(&mut h, b"T", target.as_bytes());
            }
            EntryKind::File { executable } => {
                frame(
                    &mut h,
                    if *executable { b"X" } else { b"F" },
                    entry.rel.as_bytes(),
                );
                let io = |source| ContextError::Io {
                    path: entry.path.clone(),
                    source,
                };
                let mut f = fs::File::open(&entry.path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                h.update(b"C");
                h.update(len.to_le_bytes());
                let mut seen = 0u64;
                loop {
                    let n = f.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    seen += n as u64;
                }
                if seen != len {
                    return Err(io(std::io::Error::other(
                        "the file changed while it was being hashed",
                    )));
                }
                files += 1;
                bytes += len;
            }
        }
    }
    frame(
        &mut h,
        b"dockerfile",
        build.dockerfile_in_context.as_bytes(),
    );
    for (k, v) in &build.args {
        frame(&mut h, b"arg", k.as_bytes());
        frame(&mut h, b"=", v.as_bytes());
    }
    frame(
        &mut h,
        b"target",
        build.target.as_deref().unwrap_or("").as_bytes(),
    );
    frame(&mut h, b"platform", PLATFORM.as_bytes());
    let digest = h
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok(ContextHash {
        digest,
        files,
        bytes,
    })
}
