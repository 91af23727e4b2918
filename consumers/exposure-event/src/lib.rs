//! The exposure event: one definition of what is valid, shared by exposure-api (which accepts
//! events from clients) and exposure-consumer (which writes them to the warehouse), so that an
//! event the API accepted is never sent to the DLQ. See README.md for the contract.
//!
//! - [`from_request`] validates and normalises one event as a client sends it;
//! - [`NewExposure::assign`] gives it its `exposure_id` and `accepted_at`;
//! - [`Exposure::to_wire`] is the Kafka message value, [`parse_wire`] reads it back.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The longest `ds_user_id`, `experiment_id`, `variation_id` and `source`, in bytes of UTF-8.
/// The warehouse columns are `varchar(256)`: Redshift counts bytes, PostgreSQL characters, so
/// bytes is the one rule that fits both.
pub const TEXT_MAX_BYTES: usize = 256;
/// The longest `exposure_id`, in bytes (`varchar(64)`).
pub const EXPOSURE_ID_MAX_BYTES: usize = 64;
/// The largest `attributes`, serialised as compact JSON, in bytes (what Redshift's `SUPER`
/// takes as one string value, and far below the broker's message size limit).
pub const ATTRIBUTES_MAX_BYTES: usize = 65_535;
/// The deepest nesting of arrays and objects inside `attributes` (the object itself is 1).
pub const ATTRIBUTES_MAX_DEPTH: usize = 32;

/// The namespace of the UUIDv5 ids derived from idempotency keys ([`idempotent_id`]).
pub const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0xe8b1_0d78_2234_492c_aeaf_9237_595a_dcf0);

/// Why an event is not valid: the field at fault (`exposures[3].ds_user_id` in a batch) and
/// what is wrong with it. Displayed as `<field> <message>`, e.g. `source is required`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// One exposure as it travels on Kafka and lands in the warehouse (one field per column).
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub exposure_id: String,
    pub ds_user_id: String,
    pub experiment_id: String,
    pub variation_id: String,
    /// The event's `timestamp` (the `ts` column): UTC, whole milliseconds, year 1 to 9999.
    pub ts: DateTime<Utc>,
    /// Always a JSON object.
    pub attributes: Value,
    pub source: String,
    /// When exposure-api accepted the event, for the end-to-end latency metric.
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A valid event as a client sent it, normalised, before it has its id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExposure {
    /// The client's own `exposure_id`, when it sent one.
    pub exposure_id: Option<Uuid>,
    pub ds_user_id: String,
    pub experiment_id: String,
    pub variation_id: String,
    pub ts: DateTime<Utc>,
    pub attributes: Map<String, Value>,
    pub source: String,
}

impl NewExposure {
    /// The event with its id (the client's own one wins over `id`) and acceptance time.
    pub fn assign(self, id: Uuid, accepted_at: DateTime<Utc>) -> Exposure {
        Exposure {
            exposure_id: self.exposure_id.unwrap_or(id).to_string(),
            ds_user_id: self.ds_user_id,
            experiment_id: self.experiment_id,
            variation_id: self.variation_id,
            ts: self.ts,
            attributes: Value::Object(self.attributes),
            source: self.source,
            accepted_at: Some(normalise(accepted_at)),
        }
    }
}

/// The message value: a JSON object with exactly these fields.
#[derive(Serialize)]
struct Wire<'a> {
    exposure_id: &'a str,
    ds_user_id: &'a str,
    experiment_id: &'a str,
    variation_id: &'a str,
    attributes: &'a Value,
    source: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted_at: Option<String>,
}

impl Exposure {
    /// The Kafka message key: `ds_user_id` as UTF-8.
    pub fn key(&self) -> &str {
        &self.ds_user_id
    }

    /// The Kafka message value.
    pub fn to_wire(&self) -> Vec<u8> {
        let wire = Wire {
            exposure_id: &self.exposure_id,
            ds_user_id: &self.ds_user_id,
            experiment_id: &self.experiment_id,
            variation_id: &self.variation_id,
            attributes: &self.attributes,
            source: &self.source,
            timestamp: rfc3339(self.ts),
            accepted_at: self.accepted_at.map(rfc3339),
        };
        // Strings and a JSON value (whose map keys are strings) always serialise.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

/// RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-11-22T02:33:12.123Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time as the contract holds it: whole milliseconds (a leap second becomes the next second).
fn normalise(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Parses an RFC 3339 date-time and normalises it: to UTC, to whole milliseconds. A time whose
/// year in UTC is not 1 to 9999 is refused: it would not print back as RFC 3339 (four digits).
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-11-22T02:33:12.123Z".to_string())?;
    let t = normalise(t.with_timezone(&Utc));
    if !(1..=9999).contains(&t.year()) {
        return Err(format!(
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in UTC, not {}",
            t.to_rfc3339_opts(SecondsFormat::Millis, true)
        ));
    }
    Ok(t)
}

/// The id of the event at `index` of a request sent with the idempotency key `key` by
/// `principal` (who authenticated): a UUIDv5, so the same three always give the same id and
/// two principals' keys never collide.
pub fn idempotent_id(principal: &str, key: &str, index: usize) -> Uuid {
    let name = format!("{}:{principal}{}:{key}{index}", principal.len(), key.len());
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
}

/// Validates and normalises one event as a client sends it (`exposure_id` optional, a UUID;
/// `timestamp` optional, default `now`). `prefix` names the event's place in the request
/// (`""` or `exposures[3].`); unknown fields are ignored.
pub fn from_request(
    value: &Value,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<NewExposure, Invalid> {
    let obj = value.as_object().ok_or_else(|| {
        let f = prefix.trim_end_matches('.');
        Invalid::new(
            if f.is_empty() { "body" } else { f },
            "must be a JSON object",
        )
    })?;
    let exposure_id = match obj.get("exposure_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Uuid::try_parse(s).map_err(|_| {
            Invalid::new(
                format!("{prefix}exposure_id"),
                "must be a UUID, e.g. 0b6c1a9e-4b7e-4d57-9a53-1d1f5a0c7e11",
            )
        })?),
        Some(_) => {
            return Err(Invalid::new(
                format!("{prefix}exposure_id"),
                "must be a UUID string",
            ))
        }
    };
    let ds_user_id = text(obj, prefix, "ds_user_id", TEXT_MAX_BYTES)?;
    let experiment_id = text(obj, prefix, "experiment_id", TEXT_MAX_BYTES)?;
    let variation_id = text(obj, prefix, "variation_id", TEXT_MAX_BYTES)?;
    let source = text(obj, prefix, "source", TEXT_MAX_BYTES)?;
    let attributes = attributes(obj, prefix)?;
    let ts = timestamp(obj, prefix)?.unwrap_or_else(|| normalise(now));
    Ok(NewExposure {
        exposure_id,
        ds_user_id,
        experiment_id,
        variation_id,
        ts,
        attributes,
        source,
    })
}

/// Parses and checks a message value, with the same rules as [`from_request`] (and any
/// `exposure_id` of at most 64 bytes, as producers other than exposure-api may use). A bad
/// `accepted_at` is ignored: it is informational.
pub fn parse_wire(payload: &[u8]) -> Result<Exposure, Invalid> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Invalid::new("value", format!("is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Invalid::new("value", "is not a JSON object"));
    };
    let exposure_id = text(&obj, "", "exposure_id", EXPOSURE_ID_MAX_BYTES)?;
    let ds_user_id = text(&obj, "", "ds_user_id", TEXT_MAX_BYTES)?;
    let experiment_id = text(&obj, "", "experiment_id", TEXT_MAX_BYTES)?;
    let variation_id = text(&obj, "", "variation_id", TEXT_MAX_BYTES)?;
    let source = text(&obj, "", "source", TEXT_MAX_BYTES)?;
    let attributes = Value::Object(attributes(&obj, "")?);
    let ts = timestamp(&obj, "")?.ok_or_else(|| Invalid::new("timestamp", "is required"))?;
    let accepted_at = match obj.get("accepted_at") {
        Some(Value::String(s)) => parse_timestamp(s).ok(),
        _ => None,
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

/// The `timestamp` field, parsed and normalised as [`parse_timestamp`] does; `None` when it is
/// absent or null.
fn timestamp(obj: &Map<String, Value>, prefix: &str) -> Result<Option<DateTime<Utc>>, Invalid> {
    let invalid = |m: String| Invalid::new(format!("{prefix}timestamp"), m);
    match obj.get("timestamp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(s).map(Some).map_err(invalid),
        Some(_) => Err(invalid("must be an RFC 3339 date-time string".into())),
    }
}

/// A required, non-blank string of at most `max` bytes without control characters.
fn text(obj: &Map<String, Value>, prefix: &str, name: &str, max: usize) -> Result<String, Invalid> {
    let invalid = |m: String| Invalid::new(format!("{prefix}{name}"), m);
    match obj.get(name) {
        None | Some(Value::Null) => Err(invalid("is required".into())),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid("must not be empty".into())),
        Some(Value::String(s)) if s.len() > max => Err(invalid(format!(
            "must be at most {max} bytes of UTF-8, not {}",
            s.len()
        ))),
        Some(Value::String(s)) => match s.char_indices().find(|(_, c)| c.is_control()) {
            Some((at, c)) => Err(invalid(format!(
                "must not contain control characters (U+{:04X} at byte {at})",
                u32::from(c)
            ))),
            None => Ok(s.clone()),
        },
        Some(_) => Err(invalid("must be a string".into())),
    }
}

/// `attributes`: missing or `null` is `{}`; otherwise an object without NUL characters (which
/// PostgreSQL's `jsonb` cannot hold) in any key or string, nested at most
/// [`ATTRIBUTES_MAX_DEPTH`] deep, of at most [`ATTRIBUTES_MAX_BYTES`] as JSON.
fn attributes(obj: &Map<String, Value>, prefix: &str) -> Result<Map<String, Value>, Invalid> {
    let field = format!("{prefix}attributes");
    let map = match obj.get("attributes") {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Invalid::new(field, "must be a JSON object")),
    };
    let whole = Value::Object(map.clone());
    if depth(&whole) > ATTRIBUTES_MAX_DEPTH {
        return Err(Invalid::new(
            field,
            format!("must not nest arrays and objects more than {ATTRIBUTES_MAX_DEPTH} deep"),
        ));
    }
    if has_nul(&whole) {
        return Err(Invalid::new(
            field,
            "must not contain NUL characters (U+0000)",
        ));
    }
    let size = serde_json::to_vec(&whole)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > ATTRIBUTES_MAX_BYTES {
        return Err(Invalid::new(
            field,
            format!("must be at most {ATTRIBUTES_MAX_BYTES} bytes as JSON, not {size}"),
        ));
    }
    Ok(map.clone())
}

/// 0 for a scalar, 1 for an empty array or object, and so on.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A valid request event and a fixed clock, for the tests of this crate and of the workloads
/// that use it (their dev-dependency turns on the `fixtures` feature).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    /// An event as a client sends it, valid by every rule.
    pub fn good() -> Value {
        json!({"ds_user_id": "u1", "experiment_id": "e1", "variation_id": "v1",
               "attributes": {"country": "NL"}, "source": "web"})
    }

    /// The clock the tests read: 2026-11-22T02:33:12.123456Z.
    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T02:33:12.123456Z")
            .expect("a valid timestamp")
            .with_timezone(&Utc)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{good, now};
    use super::*;
    use serde_json::json;

    fn invalid(v: Value) -> (String, String) {
        let e = from_request(&v, "", now()).unwrap_err();
        (e.field, e.message)
    }

    fn with(k: &str, v: Value) -> Value {
        let mut e = good();
        e[k] = v;
        e
    }

    #[test]
    fn accepts_a_good_event_with_defaults() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("attributes");
        let e = from_request(&v, "", now()).unwrap();
        assert_eq!(e.ds_user_id, "u1");
        assert!(e.attributes.is_empty());
        assert_eq!(
            rfc3339(e.ts),
            "2026-11-22T02:33:12.123Z",
            "now, to the millisecond"
        );
        assert_eq!(e.exposure_id, None);
    }

    #[test]
    fn names_the_field() {
        for name in ["ds_user_id", "experiment_id", "variation_id", "source"] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(name);
            assert_eq!(invalid(v), (name.to_string(), "is required".into()));
            assert_eq!(
                invalid(with(name, json!(" "))),
                (name.to_string(), "must not be empty".into())
            );
            assert_eq!(
                invalid(with(name, json!(42))),
                (name.to_string(), "must be a string".into())
            );
            assert_eq!(invalid(with(name, json!("x".repeat(257)))).0, name);
        }
        assert_eq!(invalid(with("attributes", json!([1]))).0, "attributes");
        assert_eq!(
            invalid(with("timestamp", json!("yesterday"))).0,
            "timestamp"
        );
        assert_eq!(
            invalid(with("timestamp", json!(1_700_000_000))).0,
            "timestamp"
        );
        assert_eq!(
            invalid(with("exposure_id", json!("not-a-uuid"))).0,
            "exposure_id"
        );
        assert_eq!(invalid(json!("x")).0, "body");
        let e = from_request(&json!(1), "exposures[2].", now()).unwrap_err();
        assert_eq!(e.field, "exposures[2]");
        let e = from_request(&with("source", json!("")), "exposures[2].", now()).unwrap_err();
        assert_eq!(e.to_string(), "exposures[2].source must not be empty");
    }

    /// The API once counted characters and the consumer bytes: 129 × "é" (258 bytes) passed
    /// the API and went to the DLQ.
    #[test]
    fn lengths_are_bytes_of_utf8() {
        assert!(from_request(&with("ds_user_id", json!("é".repeat(128))), "", now()).is_ok());
        let (field, message) = invalid(with("ds_user_id", json!("é".repeat(129))));
        assert_eq!(field, "ds_user_id");
        assert_eq!(message, "must be at most 256 bytes of UTF-8, not 258");
        assert!(from_request(&with("source", json!("x".repeat(256))), "", now()).is_ok());
    }

    /// The API once let NUL characters through, which PostgreSQL cannot store.
    #[test]
    fn nul_and_control_characters_are_refused() {
        for s in ["a\u{0}b", "a\u{7}", "\u{1b}[31m", "a\u{7f}", "a\u{85}b"] {
            let (field, message) = invalid(with("variation_id", json!(s)));
            assert_eq!(field, "variation_id", "{s:?}");
            assert!(message.contains("control characters"), "{s:?}: {message}");
        }
        assert!(from_request(
            &with("variation_id", json!("emoji 🎉 and ünïcode")),
            "",
            now()
        )
        .is_ok());
        for attrs in [
            json!({"a": "\u{0}"}),
            json!({"a\u{0}": 1}),
            json!({"a": [{"b": ["\u{0}"]}]}),
        ] {
            assert_eq!(invalid(with("attributes", attrs)).0, "attributes");
        }
        // Control characters other than NUL are fine inside attributes, and so is the text
        // `\u0000` (a backslash and five characters).
        let ok = with("attributes", json!({"a": "tab\there", "b": "\\u0000"}));
        assert!(from_request(&ok, "", now()).is_ok());
    }

    /// `9999-12-31T23:59:59-01:00` is in year 10000 in UTC; it was accepted and re-serialised
    /// with a five-digit year, which the consumer could not parse.
    #[test]
    fn timestamps_are_utc_milliseconds_within_four_digit_years() {
        let ts =
            |s: &str| from_request(&with("timestamp", json!(s)), "", now()).map(|e| rfc3339(e.ts));
        for (given, stored) in [
            ("2026-11-22T03:33:12.5+01:00", "2026-11-22T02:33:12.500Z"),
            ("2026-11-22T02:33:12.123999Z", "2026-11-22T02:33:12.123Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
            ("2016-12-31T23:59:60.5Z", "2017-01-01T00:00:00.500Z"),
        ] {
            assert_eq!(ts(given).unwrap(), stored, "{given}");
        }
        for bad in [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+00:01",
            "0000-06-01T00:00:00Z",
        ] {
            let e = ts(bad).unwrap_err();
            assert_eq!(e.field, "timestamp", "{bad}");
            assert!(e.message.contains("9999-12-31"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn attributes_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..ATTRIBUTES_MAX_DEPTH - 1 {
            deep = json!([deep]);
        }
        assert!(from_request(&with("attributes", json!({ "d": deep })), "", now()).is_ok());
        let (field, message) = invalid(with("attributes", json!({ "d": [deep] })));
        assert_eq!(field, "attributes");
        assert!(message.contains("deep"), "{message}");
        let pad = "x".repeat(ATTRIBUTES_MAX_BYTES - 8);
        assert!(from_request(&with("attributes", json!({ "p": pad })), "", now()).is_ok());
        let (field, message) = invalid(with("attributes", json!({ "p": format!("{pad}x") })));
        assert_eq!(field, "attributes");
        assert!(message.contains("65535 bytes"), "{message}");
    }

    #[test]
    fn a_clients_exposure_id_is_kept_in_canonical_form() {
        let v = with("exposure_id", json!("0B6C1A9E4B7E4D579A531D1F5A0C7E11"));
        let e = from_request(&v, "", now())
            .unwrap()
            .assign(Uuid::new_v4(), now());
        assert_eq!(e.exposure_id, "0b6c1a9e-4b7e-4d57-9a53-1d1f5a0c7e11");
    }

    #[test]
    fn idempotent_ids_depend_on_principal_key_and_index() {
        let id = idempotent_id("key:k1", "order-7", 0);
        assert_eq!(id, idempotent_id("key:k1", "order-7", 0));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, idempotent_id("key:k2", "order-7", 0));
        assert_ne!(id, idempotent_id("key:k1", "order-7", 1));
        assert_ne!(id, idempotent_id("key:k1", "order-8", 0));
        // No ambiguity in how the parts are joined.
        assert_ne!(idempotent_id("a", "b1", 0), idempotent_id("a", "b", 10));
        assert_ne!(idempotent_id("a:", "b", 0), idempotent_id("a", ":b", 0));
    }

    #[test]
    fn the_wire_format_round_trips() {
        let id = Uuid::new_v4();
        let e = from_request(&good(), "", now()).unwrap().assign(id, now());
        let v: Value = serde_json::from_slice(&e.to_wire()).unwrap();
        assert_eq!(
            v,
            json!({"exposure_id": id.to_string(), "ds_user_id": "u1", "experiment_id": "e1",
                   "variation_id": "v1", "attributes": {"country": "NL"}, "source": "web",
                   "timestamp": "2026-11-22T02:33:12.123Z",
                   "accepted_at": "2026-11-22T02:33:12.123Z"})
        );
        assert_eq!(parse_wire(&e.to_wire()).unwrap(), e);
        assert_eq!(e.key(), "u1");
    }

    #[test]
    fn wire_poison_says_what_is_wrong() {
        let wire = |v: Value| parse_wire(v.to_string().as_bytes()).map_err(|e| e.to_string());
        assert!(parse_wire(b"{not json")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        assert_eq!(wire(json!([1])).unwrap_err(), "value is not a JSON object");
        let e = from_request(&good(), "", now())
            .unwrap()
            .assign(Uuid::new_v4(), now());
        let good_wire: Value = serde_json::from_slice(&e.to_wire()).unwrap();
        for f in [
            "exposure_id",
            "ds_user_id",
            "experiment_id",
            "variation_id",
            "source",
            "timestamp",
        ] {
            let mut v = good_wire.clone();
            v.as_object_mut().unwrap().remove(f);
            assert_eq!(wire(v).unwrap_err(), format!("{f} is required"));
        }
        let mut v = good_wire.clone();
        v["exposure_id"] = json!("x".repeat(65));
        assert!(wire(v).unwrap_err().contains("at most 64 bytes"));
        // Foreign producers may use ids that are not UUIDs.
        let mut v = good_wire.clone();
        v["exposure_id"] = json!("order-17");
        assert_eq!(wire(v).unwrap().exposure_id, "order-17");
        let mut v = good_wire.clone();
        v["accepted_at"] = json!("soon");
        assert_eq!(wire(v).unwrap().accepted_at, None);
    }
}
