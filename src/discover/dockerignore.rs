//! `.dockerignore` with Docker's own semantics (moby's `patternmatcher` and `ignorefile`).
//!
//! No maintained crate implements these rules (crates for `.gitignore` differ: there a
//! pattern without a slash matches at any depth, in Docker it is anchored at the context
//! root), so they are written out here and tested against the cases moby's tests document:
//!
//! - each line is trimmed; `#` starts a comment; blank lines are skipped;
//! - `!` makes an exception; the last matching line decides;
//! - a pattern is cleaned like Go's `filepath.Clean`, and a leading `/` is dropped;
//! - a pattern matches a path if it matches the path or any of its parent directories;
//! - `*` and `?` do not cross `/`; `**` matches any number of directories, including none;
//!   `[...]` is a character class (`^` negates); `\` escapes the next character.

use regex::Regex;

/// One cleaned pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exclusion: bool,
    regex: Regex,
}

/// A `.dockerignore` line that is not a pattern.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {pattern:?}: {problem}")]
pub struct PatternError {
    /// 1-based.
    pub line: usize,
    pub pattern: String,
    pub problem: Problem,
}

/// What is wrong with a pattern.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("a lone \"!\" excludes nothing")]
    LoneExclamation,
    #[error("ends with an escaping \\")]
    TrailingEscape,
    #[error("has an unterminated [ character class")]
    UnterminatedClass,
    /// The translated pattern is not a regex (a class such as `[z-a]`).
    #[error(transparent)]
    Regex(#[from] regex::Error),
}

/// The rules of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`. Errors name the line and the pattern.
    pub fn parse(text: &str) -> Result<DockerIgnore, PatternError> {
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let exclusion = line.starts_with('!');
            if exclusion {
                line = line[1..].trim();
                if line.is_empty() {
                    return Err(PatternError {
                        line: n + 1,
                        pattern: raw.to_string(),
                        problem: Problem::LoneExclamation,
                    });
                }
            }
            let mut text = clean(line);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let regex = compile(&text).map_err(|problem| PatternError {
                line: n + 1,
                pattern: raw.to_string(),
                problem,
            })?;
            patterns.push(Pattern {
                text,
                exclusion,
                regex,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion != excluded {
                // Only a pattern that could flip the current answer needs testing.
                continue;
            }
            let mut matched = p.regex.is_match(path);
            if !matched && parents.len() > 1 {
                let mut prefix = String::new();
                for part in &parents[..parents.len() - 1] {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    if p.regex.is_match(&prefix) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether an excluded directory can be skipped whole: true unless some exception pattern
    /// could re-include something inside it (the same test moby's walker makes).
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        !self.patterns.iter().any(|p| {
            p.exclusion
                && (p.text.contains(['*', '?', '['])
                    || format!("{}/", p.text).starts_with(&dir_slash))
        })
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Translates a cleaned pattern into an anchored regex, as moby's `Pattern.compile` does.
fn compile(pattern: &str) -> Result<Regex, Problem> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if in_class {
            match ch {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' => {
                    if let Some(next) = chars.get(i) {
                        re.push_str(&regex::escape(&next.to_string()));
                        i += 1;
                    }
                }
                '[' => re.push_str("\\["),
                other => re.push(other),
            }
            continue;
        }
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                in_class = true;
                re.push('[');
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
            }
            '\\' => match chars.get(i) {
                Some(next) => {
                    re.push_str(&regex::escape(&next.to_string()));
                    i += 1;
                }
                None => return Err(Problem::TrailingEscape),
            },
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    if in_class {
        return Err(Problem::UnterminatedClass);
    }
    re.push('$');
    Ok(Regex::new(&re)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).expect("valid patterns")
    }

    #[test]
    fn anchored_at_the_root_unlike_gitignore() {
        let r = rules("target\n");
        assert!(r.excludes("target"));
        assert!(r.excludes("target/debug/x"));
        assert!(!r.excludes("sub/target"));
    }

    #[test]
    fn double_star_matches_any_depth() {
        let r = rules("**/target\n**/*.log\n");
        assert!(r.excludes("target"));
        assert!(r.excludes("a/b/target/x"));
        assert!(r.excludes("x.log"));
        assert!(r.excludes("a/b/x.log"));
        assert!(!r.excludes("a/b/x.logs"));
    }

    #[test]
    fn star_does_not_cross_slash() {
        let r = rules("*.md\ndocs/*\n");
        assert!(r.excludes("README.md"));
        assert!(!r.excludes("sub/README.md"));
        assert!(r.excludes("docs/a"));
        assert!(r.excludes("docs/a/b"), "parent docs/a matches docs/*");
    }

    #[test]
    fn last_match_wins_with_exceptions() {
        let r = rules("*\n!src\n!Cargo.toml\nsrc/secret.rs\n");
        assert!(r.excludes("README.md"));
        assert!(!r.excludes("src/main.rs"));
        assert!(!r.excludes("Cargo.toml"));
        assert!(r.excludes("src/secret.rs"));
    }

    #[test]
    fn comments_blank_lines_leading_slash_and_dots() {
        let r = rules("# comment\n\n  /build/  \n./a/../tmp\n");
        assert!(r.excludes("build/x"));
        assert!(r.excludes("tmp"));
        assert!(!r.excludes("# comment"));
    }

    #[test]
    fn classes_and_escapes() {
        let r = rules("file[0-9].txt\n[^a]x\nq\\*\n");
        assert!(r.excludes("file1.txt"));
        assert!(!r.excludes("filea.txt"));
        assert!(r.excludes("bx"));
        assert!(!r.excludes("ax"));
        assert!(r.excludes("q*"));
        assert!(!r.excludes("qq"));
    }

    #[test]
    fn bad_patterns_are_errors_with_line_numbers() {
        let lone = DockerIgnore::parse("ok\n!\n").unwrap_err();
        assert_eq!(lone.line, 2);
        assert!(matches!(lone.problem, Problem::LoneExclamation));
        assert!(
            lone.to_string().starts_with("line 2: \"!\": a lone"),
            "{lone}"
        );
        let class = DockerIgnore::parse("[abc\n").unwrap_err();
        assert!(matches!(class.problem, Problem::UnterminatedClass));
        assert!(class.to_string().contains("unterminated"), "{class}");
        let escape = DockerIgnore::parse("a\\").unwrap_err();
        assert!(
            matches!(escape.problem, Problem::TrailingEscape),
            "{escape}"
        );
    }

    #[test]
    fn skipping_dirs_respects_exceptions_inside() {
        let r = rules("node_modules\n.git\n!node_modules/keep\n");
        assert!(r.can_skip_dir(".git"));
        assert!(!r.can_skip_dir("node_modules"));
    }
}
