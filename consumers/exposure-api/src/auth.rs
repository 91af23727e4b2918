//! Request authentication: an API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`)
//! from `API_KEYS`, or an HS256 JWT (`Authorization: Bearer <jwt>`) signed with `JWT_SECRET`.
//! Reads always need one. Writes need one too, unless `AUTH=none` opened them: then a request
//! without credentials is anonymous (one that sends credentials still has them checked, when
//! there are keys or a secret to check them against).

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Who made a request: `key:<the API key>`, `jwt:<sub>` or `anonymous`. Idempotency keys are
/// namespaced by it, so two clients' keys never give the same exposure id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

pub struct Auth {
    api_keys: Vec<String>,
    jwt: Option<(DecodingKey, Validation)>,
    writes_open: bool,
}

impl Auth {
    /// `writes_open`: `AUTH=none`.
    pub fn new(api_keys: Vec<String>, jwt_secret: Option<&str>, writes_open: bool) -> Auth {
        let jwt = jwt_secret.map(|secret| {
            let mut v = Validation::new(Algorithm::HS256);
            // `exp` is required and checked (with jsonwebtoken's 60 s leeway); an audience is
            // not configured, so it is not checked.
            v.validate_aud = false;
            (DecodingKey::from_secret(secret.as_bytes()), v)
        });
        Auth {
            api_keys,
            jwt,
            writes_open,
        }
    }

    /// Who sent a request with these headers; `write` for the POST routes. `Err` names what
    /// was wrong, for the 401's body.
    pub fn check(&self, headers: &HeaderMap, write: bool) -> Result<Principal, &'static str> {
        let presented = headers.contains_key("x-api-key")
            || headers.contains_key(axum::http::header::AUTHORIZATION);
        let configured = !self.api_keys.is_empty() || self.jwt.is_some();
        if write && self.writes_open && (!presented || !configured) {
            return Ok(Principal("anonymous".into()));
        }
        if !configured {
            return Err("reads need credentials, and this API has none configured: set API_KEYS or JWT_SECRET");
        }
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return self.key(key.trim()).ok_or("invalid API key");
        }
        let Some(auth) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err("credentials required: X-API-Key or Authorization: Bearer");
        };
        let token = match auth.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err("the Authorization scheme must be Bearer"),
        };
        if let Some(principal) = self.key(token) {
            return Ok(principal);
        }
        match &self.jwt {
            Some((key, validation)) => {
                jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
                    .map(|t| {
                        let sub = t.claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
                        Principal(format!("jwt:{sub}"))
                    })
                    .map_err(|_| "invalid bearer token")
            }
            None => Err("invalid API key"),
        }
    }

    fn key(&self, candidate: &str) -> Option<Principal> {
        // Compare every key in full so timing does not tell how much of a key matched.
        let found = self.api_keys.iter().fold(false, |found, key| {
            found | constant_time_eq(key.as_bytes(), candidate.as_bytes())
        });
        found.then(|| Principal(format!("key:{candidate}")))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn jwt(secret: &str, exp_offset: i64) -> String {
        let exp = chrono::Utc::now().timestamp() + exp_offset;
        encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "svc", "exp": exp}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn auth_none_opens_writes_only() {
        let open = Auth::new(vec![], None, true);
        assert_eq!(
            open.check(&headers(&[]), true),
            Ok(Principal("anonymous".into()))
        );
        assert!(open.check(&headers(&[]), false).is_err(), "reads");
        assert!(
            open.check(&headers(&[("x-api-key", "k")]), true).is_ok(),
            "nothing to check a key against"
        );
        let open_with_keys = Auth::new(vec!["k1".into()], None, true);
        assert!(open_with_keys.check(&headers(&[]), true).is_ok());
        assert!(open_with_keys.check(&headers(&[]), false).is_err());
        assert_eq!(
            open_with_keys.check(&headers(&[("x-api-key", "k1")]), false),
            Ok(Principal("key:k1".into()))
        );
        assert!(
            open_with_keys
                .check(&headers(&[("x-api-key", "bad")]), true)
                .is_err(),
            "credentials sent are checked"
        );
    }

    #[test]
    fn api_keys() {
        let a = Auth::new(vec!["k1".into(), "k2".into()], None, false);
        assert_eq!(
            a.check(&headers(&[("x-api-key", "k2")]), true),
            Ok(Principal("key:k2".into()))
        );
        assert!(a
            .check(&headers(&[("authorization", "Bearer k1")]), false)
            .is_ok());
        assert!(a.check(&headers(&[("x-api-key", "nope")]), true).is_err());
        assert!(a.check(&headers(&[]), true).is_err());
        assert!(a
            .check(&headers(&[("authorization", "Basic azE6")]), true)
            .is_err());
    }

    #[test]
    fn jwts() {
        let a = Auth::new(vec![], Some("s3cret"), false);
        let good = format!("Bearer {}", jwt("s3cret", 600));
        assert_eq!(
            a.check(&headers(&[("authorization", &good)]), true),
            Ok(Principal("jwt:svc".into()))
        );
        let wrong_key = format!("Bearer {}", jwt("other", 600));
        assert!(a
            .check(&headers(&[("authorization", &wrong_key)]), true)
            .is_err());
        let expired = format!("Bearer {}", jwt("s3cret", -3600));
        assert!(a
            .check(&headers(&[("authorization", &expired)]), true)
            .is_err());
        assert!(a
            .check(&headers(&[("authorization", "Bearer not.a.jwt")]), true)
            .is_err());
    }
}
