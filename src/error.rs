//! The errors a command can end with, and the exit code of each.

use crate::discover::context::ContextError;
use crate::manifest::Problems;
use crate::render::RenderError;

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INVALID: i32 = 3;
    pub const DRIFT: i32 = 4;
    pub const ROLLOUT: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} in the project's manifests", count(.0.len()))]
    Invalid(Problems),
    #[error("{0}")]
    Render(#[from] RenderError),
    #[error("cannot read the build context of {consumer}: {source}")]
    Context {
        consumer: String,
        #[source]
        source: ContextError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Drift(String),
    /// A failure shoal describes itself, with no underlying error.
    #[error("{0}")]
    Failed(String),
    /// What shoal was doing when the operating system refused (a file, a socket, a thread).
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
    /// A rollout that rolled back, failed or timed out.
    #[error("{0}")]
    Rollout(String),
    /// A command's failure, its cause kept whole.
    #[error(transparent)]
    Cause(Box<dyn std::error::Error + Send + Sync>),
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".to_string()
    } else {
        format!("{n} problems")
    }
}

impl Error {
    /// An operating system error while `doing` something ("cannot write out/a.json").
    pub fn io(doing: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            doing: doing.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Render(_) => exit::INVALID,
            Error::Usage(_) => exit::USAGE,
            Error::Drift(_) => exit::DRIFT,
            Error::Context { .. } | Error::Failed(_) | Error::Io { .. } | Error::Cause(_) => {
                exit::FAILED
            }
            Error::Rollout(_) => exit::ROLLOUT,
        }
    }

    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Error::Invalid(_) => Some("fix the keys above and run `shoal validate` again"),
            Error::Render(RenderError::Template { .. } | RenderError::NotJson { .. }) => Some(
                "fix the template, or delete templates/task-definition.json.j2 to use the built-in one",
            ),
            Error::Drift(_) => Some("run the same command with --write DIR to update the files"),
            Error::Rollout(_) => Some(
                "the service runs its previous revision; fix the cause above and deploy again, or see `shoal status`",
            ),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error shows under its message: `heading` on a line of its own, then each line after
/// `prefix`; nothing when there are no lines.
pub fn last_lines(heading: &str, prefix: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("\n  {heading}");
    for line in lines {
        out.push_str("\n  ");
        out.push_str(prefix);
        out.push_str(line);
    }
    out
}

/// The innermost message of an error's source chain ("Connection refused (os error 111)").
pub fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        last = e.to_string();
        cur = e.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_follow_the_message_indented_under_their_heading() {
        assert_eq!(last_lines("the last lines:", "| ", &[]), "");
        let lines = ["one".to_string(), "two".to_string()];
        assert_eq!(
            last_lines("the last lines:", "| ", &lines),
            "\n  the last lines:\n  | one\n  | two"
        );
    }
}
