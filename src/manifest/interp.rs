//! `${VAR}` and `${VAR:-default}` references in `shoal.toml` environment values, so that CI
//! can pass subnets, endpoints and account ids without editing the file. `$$` is a literal `$`.

/// Expands references in `text`. On failure returns the message for the user.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_and_tail.find('}') else {
            return Err(format!("unclosed \"${{\" in {text:?}"));
        };
        let body = &body_and_tail[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if !super::validate::env_var_name(name) {
            return Err(format!("${{{body}}} does not name a variable"));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "${{{name}}} is not set; export {name}, or give a default as ${{{name}:-VALUE}}"
                ))
            }
        }
        rest = &body_and_tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(k: &str) -> Option<String> {
        match k {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_default_and_escapes() {
        assert_eq!(expand("x-${A}-y", &vars).as_deref(), Ok("x-alpha-y"));
        assert_eq!(expand("${B:-beta}", &vars).as_deref(), Ok("beta"));
        assert_eq!(expand("${EMPTY:-d}", &vars).as_deref(), Ok("d"));
        assert_eq!(expand("$$5 $x", &vars).as_deref(), Ok("$5 $x"));
    }

    #[test]
    fn unset_without_default_says_how_to_fix() {
        let err = expand("${NOPE}", &vars).unwrap_err();
        assert!(err.contains("export NOPE"), "{err}");
        assert!(expand("${A", &vars).unwrap_err().contains("unclosed"));
        assert!(expand("${1x}", &vars)
            .unwrap_err()
            .contains("does not name"));
    }
}
