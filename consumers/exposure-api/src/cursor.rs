//! The opaque keyset cursor of the read endpoints: the `(ts, exposure_id)` of the last row of
//! a page, newest first. Encoded as URL-safe base64 of `<microseconds since epoch>:<id>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: DateTime<Utc>,
    pub exposure_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.ts.timestamp_micros(),
            self.exposure_id
        ))
    }

    /// `None` for anything [`Cursor::encode`] did not produce.
    pub fn decode(s: &str) -> Option<Cursor> {
        let raw = URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (micros, id) = raw.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        let ts = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Cursor {
            ts,
            exposure_id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_microsecond() {
        let c = Cursor {
            ts: DateTime::from_timestamp_micros(1_795_314_792_123_456).unwrap(),
            exposure_id: "0b7c1c9e-7a52-4f55-9d8e-3f0c6c1f8e21".into(),
        };
        let s = c.encode();
        assert!(s
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
        assert_eq!(Cursor::decode(&s), Some(c));
    }

    #[test]
    fn ids_with_colons_survive() {
        let c = Cursor {
            ts: DateTime::from_timestamp_micros(-5).unwrap(),
            exposure_id: "a:b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }

    #[test]
    fn rejects_garbage() {
        let encoded = [
            URL_SAFE_NO_PAD.encode("12:"),
            URL_SAFE_NO_PAD.encode("x:id"),
        ];
        for s in [
            "",
            "!!!",
            "bm90LWEtY3Vyc29y",
            encoded[0].as_str(),
            encoded[1].as_str(),
        ] {
            assert_eq!(Cursor::decode(s), None, "{s}");
        }
    }
}
