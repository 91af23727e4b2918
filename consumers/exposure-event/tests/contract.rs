//! The contract's promise, as a property: every event the API accepts ([`from_request`]), the
//! consumer's parser ([`parse_wire`]) accepts too, and reads back with the same row values, so
//! it never goes to the DLQ. Inputs: arbitrary unicode, lengths at and around every limit,
//! timestamps at the extremes, NUL and control characters, nested attributes, any JSON value.

use chrono::{DateTime, Utc};
use exposure_event::{
    from_request, parse_wire, rfc3339, Exposure, ATTRIBUTES_MAX_BYTES, ATTRIBUTES_MAX_DEPTH,
    TEXT_MAX_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};
use uuid::Uuid;

/// At least 10,000 cases, in CI as here (`PROPTEST_CASES` may raise it).
const CASES: u32 = 10_000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .map_or(CASES, |c: u32| c.max(CASES));
    Config {
        cases,
        // The failing case is printed; no regression file is written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// One character of 1 to 4 bytes, or a control character.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        1 => prop::sample::select(vec!['a', 'é', '€', '🎉', ' ', '\u{0}', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}', '\u{feff}']),
    ]
}

/// Strings around every byte limit, made of characters of one width, plus arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    let around = |limit: usize| {
        (prop::sample::select(vec!["a", "é", "€", "🎉"]), -3i64..=3).prop_map(move |(c, d)| {
            let n = (limit / c.len()) as i64 + d;
            c.repeat(n.max(0) as usize)
        })
    };
    prop_oneof![
        4 => prop::collection::vec(any_char(), 0..40).prop_map(|v| v.into_iter().collect()),
        3 => around(TEXT_MAX_BYTES),
        1 => around(64),
        1 => (around(TEXT_MAX_BYTES), any_char(), any::<prop::sample::Index>()).prop_map(|(s, c, at)| {
            let mut chars: Vec<char> = s.chars().collect();
            let i = at.index(chars.len() + 1);
            chars.insert(i, c);
            chars.into_iter().collect()
        }),
        1 => Just(String::new()),
        1 => "[ \t\n\u{a0}\u{3000}]{1,4}",
        2 => any::<String>(),
    ]
}

/// RFC 3339 date-times from their parts, extremes included, and strings that are not.
fn timestamp() -> impl Strategy<Value = String> {
    let parts = (
        prop_oneof![Just(0u32), Just(1), Just(9999), 0u32..=9999],
        1u32..=12,
        1u32..=31,
        0u32..=23,
        0u32..=59,
        prop_oneof![0u32..=59, Just(60)],
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            Just("+00:00".to_string()),
            Just("-00:00".to_string()),
            (prop::sample::select(vec!['+', '-']), 0u32..=23, 0u32..=59)
                .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
        ],
        prop::sample::select(vec!['T', 't', ' ']),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off, t)| {
            format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{off}")
        });
    prop_oneof![
        6 => parts,
        1 => prop::sample::select(vec![
            "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.9999999+00:00",
            "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", "0001-01-01T00:59:59+01:00",
            "0000-12-31T23:59:59-00:01", "1970-01-01T00:00:00Z", "2016-12-31T23:59:60.999Z",
            "+10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-22",
        ]).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Any JSON value, nested, with strings from [`text`] and numbers of every kind.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Attributes: any value, objects nested around the depth limit, objects around the size
/// limit.
fn attributes() -> impl Strategy<Value = Value> {
    let deep = (
        ATTRIBUTES_MAX_DEPTH - 2..=ATTRIBUTES_MAX_DEPTH + 1,
        json(),
        any::<bool>(),
    )
        .prop_map(|(levels, mut v, arrays)| {
            for _ in 1..levels {
                v = if arrays {
                    Value::Array(vec![v])
                } else {
                    Value::Object(Map::from_iter([("k".to_string(), v)]))
                };
            }
            Value::Object(Map::from_iter([("d".to_string(), v)]))
        });
    let big = (-3i64..=3, prop::sample::select(vec!["a", "é", "🎉"])).prop_map(|(d, c)| {
        // {"p":"…"} is 8 bytes around the padding.
        let n = ((ATTRIBUTES_MAX_BYTES - 8) / c.len()) as i64 + d;
        Value::Object(Map::from_iter([(
            "p".to_string(),
            Value::String(c.repeat(n as usize)),
        )]))
    });
    prop_oneof![
        6 => prop::collection::btree_map(text(), json(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        2 => deep,
        1 => big,
        1 => json(),
    ]
}

/// A field: missing, a value of its kind, or any JSON value.
fn field(kind: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        8 => kind.prop_map(Some),
        1 => json().prop_map(Some),
    ]
}

fn request() -> impl Strategy<Value = Value> {
    let s = || text().prop_map(Value::String).boxed();
    let event = (
        field(s()),
        field(s()),
        field(s()),
        field(s()),
        field(attributes().boxed()),
        field(timestamp().prop_map(Value::String).boxed()),
        field(
            prop_oneof![
                any::<u128>().prop_map(|n| Value::String(Uuid::from_u128(n).to_string())),
                any::<u128>().prop_map(|n| Value::String(Uuid::from_u128(n).simple().to_string())),
                text().prop_map(Value::String),
            ]
            .boxed(),
        ),
        prop::collection::btree_map(text(), json(), 0..3),
    )
        .prop_map(|(user, exp, var, source, attrs, ts, id, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [
                ("ds_user_id", user),
                ("experiment_id", exp),
                ("variation_id", var),
                ("source", source),
                ("attributes", attrs),
                ("timestamp", ts),
                ("exposure_id", id),
            ] {
                match v {
                    Some(v) => m.insert(k.to_string(), v),
                    None => m.remove(k),
                };
            }
            Value::Object(m)
        });
    prop_oneof![9 => event, 1 => json()]
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_event_the_api_accepts_the_consumer_writes_unchanged(
        // The request as the client sent it: through the client's JSON text, as over HTTP.
        body in request(),
        now in -62_135_596_800_000i64..=253_402_300_799_999,
        id in any::<u128>(),
    ) {
        let body: Value = serde_json::from_str(&body.to_string()).expect("JSON text re-parses");
        if let Ok(event) = from_request(&body, "", at(now)) {
            let accepted: Exposure = event.assign(Uuid::from_u128(id), at(now));
            let wire = accepted.to_wire();
            let read = parse_wire(&wire);
            prop_assert_eq!(read.as_ref(), Ok(&accepted), "wire: {}", String::from_utf8_lossy(&wire));
            // Row values as the warehouse takes them: the timestamp prints back in the wire's
            // format, and text fits its column in bytes (Redshift) and characters (PostgreSQL).
            prop_assert_eq!(rfc3339(accepted.ts).len(), 24);
            for s in [&accepted.ds_user_id, &accepted.experiment_id, &accepted.variation_id, &accepted.source] {
                prop_assert!(s.len() <= TEXT_MAX_BYTES && !s.contains('\0'));
            }
            prop_assert!(accepted.exposure_id.len() <= 64);
            prop_assert!(!accepted.attributes.to_string().contains('\0'));
        }
    }
}
