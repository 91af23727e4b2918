//! Exposure events: validation of what clients send, and the Kafka message contract.
//!
//! The value on the topic is a JSON object with exactly the fields of [`KafkaExposure`]; the
//! key is `ds_user_id` as UTF-8. The exposure-consumer parses exactly this.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The longest string a field may hold (the warehouse columns are `varchar(256)`).
pub const MAX_FIELD_CHARS: usize = 256;

/// A request that is well-formed JSON but not a valid exposure: answered 422 (or 413 for a
/// batch over the limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
    pub too_large: bool,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
            too_large: false,
        }
    }
}

/// A validated exposure, ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub ds_user_id: String,
    pub experiment_id: String,
    pub variation_id: String,
    pub attributes: Map<String, Value>,
    pub source: String,
    pub timestamp: DateTime<Utc>,
}

/// The Kafka message value (the contract with the exposure-consumer).
#[derive(Debug, Serialize)]
pub struct KafkaExposure<'a> {
    pub exposure_id: String,
    pub ds_user_id: &'a str,
    pub experiment_id: &'a str,
    pub variation_id: &'a str,
    pub attributes: &'a Map<String, Value>,
    pub source: &'a str,
    pub timestamp: String,
    pub accepted_at: String,
}

/// RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-11-22T02:33:12.123Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Exposure {
    /// The message value for this event, with a new id, accepted now.
    pub fn to_message(&self, exposure_id: Uuid, accepted_at: DateTime<Utc>) -> Vec<u8> {
        let msg = KafkaExposure {
            exposure_id: exposure_id.to_string(),
            ds_user_id: &self.ds_user_id,
            experiment_id: &self.experiment_id,
            variation_id: &self.variation_id,
            attributes: &self.attributes,
            source: &self.source,
            timestamp: rfc3339(self.timestamp),
            accepted_at: rfc3339(accepted_at),
        };
        // Serialising strings and a JSON map cannot fail.
        serde_json::to_vec(&msg).unwrap_or_default()
    }
}

/// Validates one event; `prefix` names its place in the request (`""` or `exposures[3].`).
pub fn validate(value: &Value, prefix: &str, now: DateTime<Utc>) -> Result<Exposure, Invalid> {
    let field = |name: &str| format!("{prefix}{name}");
    let obj = value.as_object().ok_or_else(|| {
        let f = prefix.trim_end_matches('.');
        Invalid::new(
            if f.is_empty() { "body" } else { f },
            "must be a JSON object",
        )
    })?;
    let string = |name: &str| -> Result<String, Invalid> {
        match obj.get(name) {
            None | Some(Value::Null) => Err(Invalid::new(field(name), "is required")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(Invalid::new(field(name), "must not be empty"))
            }
            Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => Err(Invalid::new(
                field(name),
                format!("must be at most {MAX_FIELD_CHARS} characters"),
            )),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Invalid::new(field(name), "must be a string")),
        }
    };
    let ds_user_id = string("ds_user_id")?;
    let experiment_id = string("experiment_id")?;
    let variation_id = string("variation_id")?;
    let source = string("source")?;
    let attributes = match obj.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Invalid::new(field("attributes"), "must be a JSON object")),
    };
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| {
                Invalid::new(
                    field("timestamp"),
                    "must be an RFC 3339 date-time, e.g. 2026-11-22T02:33:12.123Z",
                )
            })?
            .with_timezone(&Utc),
        Some(_) => {
            return Err(Invalid::new(
                field("timestamp"),
                "must be an RFC 3339 date-time string",
            ))
        }
    };
    Ok(Exposure {
        ds_user_id,
        experiment_id,
        variation_id,
        attributes,
        source,
        timestamp,
    })
}

/// Validates a batch: `{"exposures": [...]}` or a bare array. Every event is checked before
/// any is produced; the first problem is reported.
pub fn validate_batch(
    value: &Value,
    max_batch: usize,
    now: DateTime<Utc>,
) -> Result<Vec<Exposure>, Invalid> {
    let items = match value {
        Value::Array(items) => items,
        Value::Object(obj) => match obj.get("exposures") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => return Err(Invalid::new("exposures", "is required")),
            Some(_) => return Err(Invalid::new("exposures", "must be an array")),
        },
        _ => {
            return Err(Invalid::new(
                "body",
                "must be {\"exposures\": [...]} or a JSON array",
            ))
        }
    };
    if items.is_empty() {
        return Err(Invalid::new("exposures", "must not be empty"));
    }
    if items.len() > max_batch {
        return Err(Invalid {
            field: "exposures".into(),
            message: format!(
                "has {} events, more than the limit of {max_batch}",
                items.len()
            ),
            too_large: true,
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| validate(item, &format!("exposures[{i}]."), now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"ds_user_id": "u1", "experiment_id": "e1", "variation_id": "v1",
               "attributes": {"country": "NL"}, "source": "web"})
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T02:33:12.123456Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn invalid(v: Value) -> (String, String) {
        let e = validate(&v, "", now()).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn accepts_a_good_event_with_defaults() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("attributes");
        let e = validate(&v, "", now()).unwrap();
        assert_eq!(e.ds_user_id, "u1");
        assert!(e.attributes.is_empty());
        assert_eq!(e.timestamp, now());
    }

    #[test]
    fn names_the_field() {
        for name in ["ds_user_id", "experiment_id", "variation_id", "source"] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(name);
            assert_eq!(invalid(v).0, name, "missing");
            let mut v = good();
            v[name] = json!("");
            assert_eq!(invalid(v), (name.to_string(), "must not be empty".into()));
            let mut v = good();
            v[name] = json!(42);
            assert_eq!(invalid(v), (name.to_string(), "must be a string".into()));
            let mut v = good();
            v[name] = json!("x".repeat(257));
            assert_eq!(invalid(v).0, name, "too long");
        }
        let mut v = good();
        v["attributes"] = json!([1]);
        assert_eq!(invalid(v).0, "attributes");
        let mut v = good();
        v["timestamp"] = json!("yesterday");
        assert_eq!(invalid(v).0, "timestamp");
        let mut v = good();
        v["timestamp"] = json!(1700000000);
        assert_eq!(invalid(v).0, "timestamp");
        assert_eq!(invalid(json!("x")).0, "body");
    }

    #[test]
    fn long_strings_count_characters_not_bytes() {
        let mut v = good();
        v["ds_user_id"] = json!("é".repeat(256));
        assert!(validate(&v, "", now()).is_ok());
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        let mut v = good();
        v["timestamp"] = json!("2026-11-22T03:33:12.5+01:00");
        let e = validate(&v, "", now()).unwrap();
        assert_eq!(rfc3339(e.timestamp), "2026-11-22T02:33:12.500Z");
    }

    #[test]
    fn batches_name_the_index() {
        let mut bad = good();
        bad["ds_user_id"] = json!("");
        let body = json!({"exposures": [good(), good(), good(), bad]});
        let e = validate_batch(&body, 10, now()).unwrap_err();
        assert_eq!(e.field, "exposures[3].ds_user_id");
        let e = validate_batch(&json!([good(), 5]), 10, now()).unwrap_err();
        assert_eq!(e.field, "exposures[1]");
        assert_eq!(
            validate_batch(&json!([good(), good()]), 10, now())
                .unwrap()
                .len(),
            2
        );
        let e = validate_batch(&json!([good(), good()]), 1, now()).unwrap_err();
        assert!(e.too_large);
        assert_eq!(
            validate_batch(&json!([]), 1, now()).unwrap_err().field,
            "exposures"
        );
        assert_eq!(
            validate_batch(&json!({}), 1, now()).unwrap_err().field,
            "exposures"
        );
    }

    #[test]
    fn message_follows_the_contract() {
        let e = validate(&good(), "", now()).unwrap();
        let id = Uuid::new_v4();
        let v: Value = serde_json::from_slice(&e.to_message(id, now())).unwrap();
        assert_eq!(
            v,
            json!({"exposure_id": id.to_string(), "ds_user_id": "u1", "experiment_id": "e1",
                   "variation_id": "v1", "attributes": {"country": "NL"}, "source": "web",
                   "timestamp": "2026-11-22T02:33:12.123Z",
                   "accepted_at": "2026-11-22T02:33:12.123Z"})
        );
    }
}
