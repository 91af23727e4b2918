//! A problem found in a manifest: which file, which key, what is wrong and what to do.
//!
//! Loaders never stop at the first problem. They collect every one they can find into a
//! [`Problems`] list, so a person fixes a manifest in one pass instead of one error per run.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with one key of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file, as the user would type it (relative to the project root where possible).
    pub file: PathBuf,
    /// 1-based line of the key, when it could be located.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `scaling.max` or `topic[0].partitions`. Empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading a project, in file order.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Collects problems for one file, and finds the line of each key in that file's text.
pub struct FileProblems<'a> {
    file: PathBuf,
    doc: Option<toml_edit::ImDocument<&'a str>>,
    text: &'a str,
    problems: Vec<Problem>,
}

impl<'a> FileProblems<'a> {
    pub fn new(file: &Path, text: &'a str) -> Self {
        FileProblems {
            file: file.to_path_buf(),
            doc: toml_edit::ImDocument::parse(text).ok(),
            text,
            problems: Vec::new(),
        }
    }

    /// Records a problem at `key` (dotted, with `[n]` for array elements).
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) -> &mut Problem {
        let key = key.into();
        let line = self.line_of(&key);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            key,
            message: message.into(),
            help: None,
        });
        self.problems.last_mut().expect("just pushed")
    }

    /// Records a problem whose position is a byte offset (TOML syntax errors).
    pub fn push_at(&mut self, offset: Option<usize>, message: impl Into<String>) {
        let line = offset.map(|o| line_of_offset(self.text, o));
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            key: String::new(),
            message: message.into(),
            help: None,
        });
    }

    /// Sets the help of the problem recorded last.
    pub fn help_last(&mut self, help: &str) {
        if let Some(p) = self.problems.last_mut() {
            p.help = Some(help.to_string());
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }

    pub fn into_problems(self) -> Problems {
        Problems(self.problems)
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        enum Node<'d> {
            Item(&'d toml_edit::Item),
            Table(&'d toml_edit::Table),
            Value(&'d toml_edit::Value),
        }
        let doc = self.doc.as_ref()?;
        let mut node = Node::Item(doc.as_item());
        let mut found = None;
        for segment in split_key(key) {
            node = match (segment, node) {
                (Segment::Key(k), node) => {
                    let table: &dyn toml_edit::TableLike = match node {
                        Node::Item(i) => i.as_table_like(),
                        Node::Table(t) => Some(t as &dyn toml_edit::TableLike),
                        Node::Value(v) => {
                            v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike)
                        }
                    }?;
                    let Some((key, value)) = table.get_key_value(k) else {
                        break;
                    };
                    found = key.span().or_else(|| value.span()).or(found);
                    Node::Item(value)
                }
                (Segment::Index(i), Node::Item(toml_edit::Item::ArrayOfTables(a))) => {
                    let Some(t) = a.get(i) else { break };
                    found = t.span().or(found);
                    Node::Table(t)
                }
                (
                    Segment::Index(i),
                    Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a))),
                )
                | (Segment::Index(i), Node::Value(toml_edit::Value::Array(a))) => {
                    let Some(v) = a.get(i) else { break };
                    found = v.span().or(found);
                    Node::Value(v)
                }
                (Segment::Index(_), _) => break,
            };
        }
        found.map(|s| line_of_offset(self.text, s.start))
    }
}

pub(crate) enum Segment<'k> {
    Key(&'k str),
    Index(usize),
}

/// Splits `topic[0].config.retention.ms`-style paths. Keys that themselves hold dots are
/// written quoted by callers (`config."retention.ms"`), as TOML does.
pub(crate) fn split_key(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(stripped) = rest.strip_prefix('"') {
            let end = stripped.find('"').unwrap_or(stripped.len());
            out.push(Segment::Key(&stripped[..end]));
            rest = stripped.get(end + 1..).unwrap_or("");
        } else if let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']').unwrap_or(stripped.len());
            if let Ok(i) = stripped[..end].parse() {
                out.push(Segment::Index(i));
            }
            rest = stripped.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Segment::Key(&rest[..end]));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Quotes a key segment for a dotted path when it holds characters TOML would quote.
pub fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{key}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_and_array_tables() {
        let text = "kind = \"worker\"\n[scaling]\nmin = 1\nmax = 40\n[[topic]]\nname = \"a\"\n[[topic]]\nname = \"b\"\nconfig = { \"retention.ms\" = \"1\" }\n";
        let mut fp = FileProblems::new(Path::new("c.toml"), text);
        fp.push("scaling.max", "too big");
        fp.push("topic[1].name", "bad");
        fp.push("topic[1].config.\"retention.ms\"", "bad");
        fp.push("nope", "missing");
        let lines: Vec<_> = fp.into_problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(4), Some(8), Some(9), None]);
    }

    #[test]
    fn display_names_file_line_key_and_help() {
        let mut fp = FileProblems::new(Path::new("a/consumer.toml"), "cpu = 3\n");
        fp.push("cpu", "3 is not a Fargate CPU size").help = Some("use 256".into());
        assert_eq!(
            fp.into_problems().to_string(),
            "a/consumer.toml:1: `cpu`: 3 is not a Fargate CPU size\n  help: use 256"
        );
    }
}
