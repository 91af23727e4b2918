//! What counts as a credential in a plain value, and how shoal hides one wherever it prints
//! or stores a value (plans, deploy summaries, status, JSON output, docker labels, logs).
//!
//! A value is a credential when its name says so (it ends in `_PASSWORD`, `_SECRET`,
//! `_TOKEN`, `_KEY` or `_KEYS`, or is one of those words) or when it is a URL with a
//! password (`postgres://user:password@host/db`). References are not credentials: an ARN in
//! `[secrets]` names where the value lives, and is shown as it is.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What replaces a credential in output.
pub const REDACTED: &str = "***";

/// The name endings that mark a credential.
pub const CREDENTIAL_SUFFIXES: &[&str] = &["PASSWORD", "SECRET", "TOKEN", "KEY", "KEYS"];

/// A URL's `scheme://user:password@`, the password captured.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^/\s@]+)@")
        .expect("valid regex")
});

/// Whether a variable's name marks its value as a credential.
pub fn is_credential_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIAL_SUFFIXES
        .iter()
        .any(|s| upper == *s || upper.ends_with(&format!("_{s}")))
}

/// Whether `value` holds a URL with a password in it.
pub fn has_url_password(value: &str) -> bool {
    URL_PASSWORD.is_match(value)
}

/// Why a plain `name = value` would put a credential in plain text, or `None` when it does
/// not. An empty value and a reference (an ARN) carry nothing secret.
pub fn credential_reason(name: &str, value: &str) -> Option<&'static str> {
    if value.is_empty() || value.starts_with("arn:") {
        return None;
    }
    if has_url_password(value) {
        Some("a URL with a password")
    } else if is_credential_name(name) {
        Some("a credential (so its name says)")
    } else {
        None
    }
}

/// The value of `name` as it may be shown: a credential's whole value replaced, and any URL
/// password masked.
pub fn redact_value<'v>(name: &str, value: &'v str) -> Cow<'v, str> {
    mask_value(name, value, &|_| REDACTED.to_string())
}

/// As [`redact_value`], with `mask` giving what replaces each secret part. The docker
/// platform masks with a digest, so a changed password still changes what it stores.
pub fn mask_value<'v>(name: &str, value: &'v str, mask: &dyn Fn(&str) -> String) -> Cow<'v, str> {
    if value.is_empty() || value.starts_with("arn:") {
        return Cow::Borrowed(value);
    }
    if is_credential_name(name) {
        return Cow::Owned(mask(value));
    }
    URL_PASSWORD.replace_all(value, |c: &regex::Captures<'_>| {
        format!("{}{}@", &c["head"], mask(&c["password"]))
    })
}

/// `text` with every URL password masked (`postgres://user:***@host`): for free text such as
/// log lines and error messages, where no variable name is at hand.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    URL_PASSWORD.replace_all(text, format!("${{head}}{REDACTED}@"))
}

/// Redacts a JSON document in place: each `{"name": N, "value": V}` pair (a task
/// definition's environment, a container's variables) by its name, a `{"N": "V"}` map whose
/// key names a credential, and every string holding a URL password.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let name = map
                .get("name")
                .or_else(|| map.get("key"))
                .and_then(Value::as_str)
                .map(str::to_string);
            for (k, v) in map.iter_mut() {
                let shown = match (k.as_str(), &name, v.as_str()) {
                    ("value", Some(n), Some(s)) => redact_value(n, s).into_owned(),
                    // A map of variables (`vars`, a docker spec's environment).
                    (key, _, Some(s)) if is_variable_name(key) => redact_value(key, s).into_owned(),
                    (_, _, Some(s)) => redact_text(s).into_owned(),
                    _ => {
                        redact_json(v);
                        continue;
                    }
                };
                *v = Value::String(shown);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) => {
            if let Cow::Owned(o) = redact_text(s) {
                *s = o;
            }
        }
        _ => {}
    }
}

/// An environment variable's name as written by convention, `UPPER_SNAKE`: a JSON key of
/// that shape names a variable, where `key` or `name` are a document's own fields.
fn is_variable_name(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `NAME=value` lines (a container's `Env`), each redacted by its name.
pub fn redact_assignment(line: &str) -> Cow<'_, str> {
    match line.split_once('=') {
        Some((name, value)) => match redact_value(name, value) {
            Cow::Borrowed(v) if v.len() == value.len() => Cow::Borrowed(line),
            shown => Cow::Owned(format!("{name}={shown}")),
        },
        None => redact_text(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_urls_that_carry_credentials() {
        for name in [
            "DB_PASSWORD",
            "JWT_SECRET",
            "GITHUB_TOKEN",
            "api_key",
            "API_KEYS",
            "PASSWORD",
        ] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "KEYSPACE",
            "TOKENIZER",
            "BATCH_SIZE",
            "MONKEY",
        ] {
            assert!(!is_credential_name(name), "{name}");
        }
        assert_eq!(
            credential_reason("DATABASE_URL", "postgres://u:p@h:5432/db"),
            Some("a URL with a password")
        );
        assert_eq!(credential_reason("DATABASE_URL", "postgres://u@h/db"), None);
        assert_eq!(credential_reason("DATABASE_URL", "http://h:8080/x"), None);
        assert_eq!(credential_reason("DB_PASSWORD", ""), None);
        assert_eq!(
            credential_reason("DB_PASSWORD", "arn:aws:ssm:us-east-1:1:parameter/p"),
            None
        );
    }

    #[test]
    fn redaction_keeps_what_is_not_secret() {
        assert_eq!(
            redact_text("connect postgres://shoal:hunter2@db:5432/x?sslmode=require failed"),
            "connect postgres://shoal:***@db:5432/x?sslmode=require failed"
        );
        assert_eq!(redact_value("JWT_SECRET", "abc"), REDACTED);
        assert_eq!(redact_value("BATCH_SIZE", "1000"), "1000");
        assert_eq!(redact_assignment("API_KEYS=a,b"), "API_KEYS=***");
        assert_eq!(redact_assignment("RUST_LOG=info"), "RUST_LOG=info");
        let mut v = json!({
            "environment": [
                {"name": "DATABASE_URL", "value": "postgres://u:pw@h/db"},
                {"name": "API_KEYS", "value": "k1,k2"},
                {"name": "RUST_LOG", "value": "info"}
            ],
            "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/p"}],
            "vars": {"SESSION_TOKEN": "t", "REGION": "us-east-1"},
            "problem": {"key": "cpu", "message": "bad"}
        });
        redact_json(&mut v);
        assert_eq!(
            v,
            json!({
                "environment": [
                    {"name": "DATABASE_URL", "value": "postgres://u:***@h/db"},
                    {"name": "API_KEYS", "value": "***"},
                    {"name": "RUST_LOG", "value": "info"}
                ],
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/p"}],
                "vars": {"SESSION_TOKEN": "***", "REGION": "us-east-1"},
                "problem": {"key": "cpu", "message": "bad"}
            })
        );
    }
}
