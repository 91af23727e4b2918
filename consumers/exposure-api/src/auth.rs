//! Request authentication: an API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`)
//! from `API_KEYS`, or an HS256 JWT (`Authorization: Bearer <jwt>`) signed with `JWT_SECRET`.
//! With neither setting, requests need no credentials.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

pub struct Auth {
    api_keys: Vec<String>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl Auth {
    pub fn new(api_keys: Vec<String>, jwt_secret: Option<&str>) -> Auth {
        let jwt = jwt_secret.map(|secret| {
            let mut v = Validation::new(Algorithm::HS256);
            // `exp` is required and checked (with jsonwebtoken's 60 s leeway); an audience is
            // not configured, so it is not checked.
            v.validate_aud = false;
            (DecodingKey::from_secret(secret.as_bytes()), v)
        });
        Auth { api_keys, jwt }
    }

    pub fn required(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }

    /// `Err` names what was wrong, for the 401's body.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if !self.required() {
            return Ok(());
        }
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return if self.is_key(key.trim()) {
                Ok(())
            } else {
                Err("invalid API key")
            };
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
        if self.is_key(token) {
            return Ok(());
        }
        match &self.jwt {
            Some((key, validation)) => {
                jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
                    .map(|_| ())
                    .map_err(|_| "invalid bearer token")
            }
            None => Err("invalid API key"),
        }
    }

    fn is_key(&self, candidate: &str) -> bool {
        // Compare every key in full so timing does not tell how much of a key matched.
        self.api_keys.iter().fold(false, |found, key| {
            found | constant_time_eq(key.as_bytes(), candidate.as_bytes())
        })
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
    fn open_without_settings() {
        assert!(Auth::new(vec![], None).check(&headers(&[])).is_ok());
    }

    #[test]
    fn api_keys() {
        let a = Auth::new(vec!["k1".into(), "k2".into()], None);
        assert!(a.check(&headers(&[("x-api-key", "k2")])).is_ok());
        assert!(a.check(&headers(&[("authorization", "Bearer k1")])).is_ok());
        assert!(a.check(&headers(&[("x-api-key", "nope")])).is_err());
        assert!(a.check(&headers(&[])).is_err());
        assert!(a
            .check(&headers(&[("authorization", "Basic azE6")]))
            .is_err());
    }

    #[test]
    fn jwts() {
        let a = Auth::new(vec![], Some("s3cret"));
        let good = format!("Bearer {}", jwt("s3cret", 600));
        assert!(a.check(&headers(&[("authorization", &good)])).is_ok());
        let wrong_key = format!("Bearer {}", jwt("other", 600));
        assert!(a.check(&headers(&[("authorization", &wrong_key)])).is_err());
        let expired = format!("Bearer {}", jwt("s3cret", -3600));
        assert!(a.check(&headers(&[("authorization", &expired)])).is_err());
        assert!(a
            .check(&headers(&[("authorization", "Bearer not.a.jwt")]))
            .is_err());
    }
}
