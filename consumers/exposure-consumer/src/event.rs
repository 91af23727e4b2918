//! The Kafka message contract: what exposure-api produces, checked before it reaches the
//! warehouse. A message that fails the checks is a poison message and goes to the DLQ.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The widest values the warehouse columns take, in bytes (Redshift counts VARCHAR lengths in
/// bytes, PostgreSQL in characters; bytes is the stricter of the two). A longer value would
/// fail every retry of its batch, so it is rejected here instead.
pub const EXPOSURE_ID_MAX: usize = 64;
pub const TEXT_MAX: usize = 256;

/// One exposure, ready for the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub exposure_id: String,
    pub ds_user_id: String,
    pub experiment_id: String,
    pub variation_id: String,
    /// The event's `timestamp`; the `ts` column.
    pub ts: DateTime<Utc>,
    /// Always a JSON object.
    pub attributes: Value,
    pub source: String,
    /// When exposure-api accepted the event, for the end-to-end latency metric.
    pub accepted_at: Option<DateTime<Utc>>,
}

/// Parses and checks a message value. The error says what is wrong, for the DLQ's `error`
/// header.
pub fn parse(payload: Option<&[u8]>) -> Result<Exposure, String> {
    let payload = payload.ok_or("the message has no value")?;
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the value is not valid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("the value is not a JSON object".to_string());
    };
    let exposure_id = text(&obj, "exposure_id", EXPOSURE_ID_MAX)?;
    let ds_user_id = text(&obj, "ds_user_id", TEXT_MAX)?;
    let experiment_id = text(&obj, "experiment_id", TEXT_MAX)?;
    let variation_id = text(&obj, "variation_id", TEXT_MAX)?;
    let source = text(&obj, "source", TEXT_MAX)?;
    let ts = time(&obj, "timestamp")?.ok_or("the field \"timestamp\" is missing")?;
    // accepted_at is informational: a bad one is ignored rather than losing the event.
    let accepted_at = time(&obj, "accepted_at").ok().flatten();
    let attributes = match obj.get("attributes") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => {
            // PostgreSQL's jsonb cannot hold U+0000.
            if v.to_string().contains("\\u0000") {
                return Err("the field \"attributes\" contains a NUL character".to_string());
            }
            v.clone()
        }
        Some(_) => return Err("the field \"attributes\" is not a JSON object".to_string()),
    };
    Ok(Exposure {
        exposure_id,
        ds_user_id,
        experiment_id,
        variation_id,
        ts,
        attributes,
        source,
        accepted_at,
    })
}

fn text(obj: &Map<String, Value>, field: &str, max: usize) -> Result<String, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(format!("the field {field:?} is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(format!("the field {field:?} is empty"))
        }
        Some(Value::String(s)) if s.len() > max => Err(format!(
            "the field {field:?} is longer than {max} bytes ({})",
            s.len()
        )),
        Some(Value::String(s)) if s.contains('\0') => {
            Err(format!("the field {field:?} contains a NUL character"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("the field {field:?} is not a string")),
    }
}

fn time(obj: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(format!("the field {field:?} is empty"))
        }
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| format!("the field {field:?} is not an RFC 3339 time ({s:?}): {e}")),
        Some(_) => Err(format!("the field {field:?} is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "exposure_id": "0b6c1a9e-4b7e-4d57-9a53-1d1f5a0c7e11",
            "ds_user_id": "user-1",
            "experiment_id": "exp-1",
            "variation_id": "1",
            "attributes": {"country": "NL", "n": 3},
            "source": "web",
            "timestamp": "2026-11-22T01:02:03.456+01:00",
            "accepted_at": "2026-11-22T00:02:04Z"
        })
    }

    fn parse_value(v: &Value) -> Result<Exposure, String> {
        parse(Some(v.to_string().as_bytes()))
    }

    #[test]
    fn parses_the_contract() {
        let e = parse_value(&good()).unwrap();
        assert_eq!(e.exposure_id, "0b6c1a9e-4b7e-4d57-9a53-1d1f5a0c7e11");
        assert_eq!(e.ts.to_rfc3339(), "2026-11-22T00:02:03.456+00:00");
        assert_eq!(e.attributes, json!({"country": "NL", "n": 3}));
        assert!(e.accepted_at.is_some());
    }

    #[test]
    fn attributes_may_be_missing() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("attributes");
        assert_eq!(parse_value(&v).unwrap().attributes, json!({}));
    }

    #[test]
    fn poison() {
        assert!(parse(None).unwrap_err().contains("no value"));
        assert!(parse(Some(b"{not json"))
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse(Some(b"[1]"))
            .unwrap_err()
            .contains("not a JSON object"));
        for field in [
            "exposure_id",
            "ds_user_id",
            "experiment_id",
            "variation_id",
            "source",
            "timestamp",
        ] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(field);
            let e = parse_value(&v).unwrap_err();
            assert_eq!(e, format!("the field {field:?} is missing"));
            v[field] = json!("");
            assert!(parse_value(&v).unwrap_err().contains("empty"), "{field}");
        }
        let mut v = good();
        v["timestamp"] = json!("yesterday");
        assert!(parse_value(&v).unwrap_err().contains("RFC 3339"));
        let mut v = good();
        v["attributes"] = json!([1, 2]);
        assert!(parse_value(&v).unwrap_err().contains("not a JSON object"));
        let mut v = good();
        v["experiment_id"] = json!(42);
        assert!(parse_value(&v).unwrap_err().contains("not a string"));
        let mut v = good();
        v["exposure_id"] = json!("x".repeat(65));
        assert!(parse_value(&v).unwrap_err().contains("longer than 64"));
        let mut v = good();
        v["attributes"] = json!({"a": "\u{0}"});
        assert!(parse_value(&v).unwrap_err().contains("NUL"));
    }

    #[test]
    fn a_bad_accepted_at_is_ignored() {
        let mut v = good();
        v["accepted_at"] = json!("soon");
        assert_eq!(parse_value(&v).unwrap().accepted_at, None);
    }
}
