//! Exposure events as requests carry them. What makes one event valid, and the Kafka message,
//! belong to consumers/exposure-event (shared with exposure-consumer); this module adds the
//! shape of a batch and its size limit.

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use exposure_event::{from_request, rfc3339, NewExposure};

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

impl From<exposure_event::Invalid> for Invalid {
    fn from(e: exposure_event::Invalid) -> Invalid {
        Invalid::new(e.field, e.message)
    }
}

/// Validates one event (the body of `POST /exposure`).
pub fn validate(value: &Value, now: DateTime<Utc>) -> Result<NewExposure, Invalid> {
    Ok(from_request(value, "", now)?)
}

/// Validates a batch: `{"exposures": [...]}` or a bare array. Every event is checked before
/// any is produced; the first problem is reported.
pub fn validate_batch(
    value: &Value,
    max_batch: usize,
    now: DateTime<Utc>,
) -> Result<Vec<NewExposure>, Invalid> {
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
        .map(|(i, item)| Ok(from_request(item, &format!("exposures[{i}]."), now)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use exposure_event::fixtures::{good, now};
    use serde_json::json;

    #[test]
    fn one_event_follows_the_contract() {
        assert_eq!(validate(&good(), now()).unwrap().ds_user_id, "u1");
        let mut v = good();
        v["ds_user_id"] = json!("é".repeat(129));
        let e = validate(&v, now()).unwrap_err();
        assert_eq!(e.field, "ds_user_id");
        assert!(!e.too_large);
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
}
