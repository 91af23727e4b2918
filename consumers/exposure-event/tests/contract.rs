//! The contract's promise, as a property: every event the API accepts ([`from_request`]), the
//! consumer's parser ([`parse_wire`]) accepts too, and reads back with the same row values, so
//! it never goes to the DLQ. Inputs: arbitrary unicode, lengths at and around every limit,
//! timestamps at the extremes, NUL and control characters, nested attributes, any JSON value.
//!
//! The property says nothing about a request `from_request` refuses, so the test also counts
//! the accepted ones: each field is mostly a value the contract accepts (many of them exactly
//! at a limit), and sometimes a value on either side of a limit or rule, missing, or any JSON
//! value. That way most requests are accepted, and the edge cases are still tried one field at
//! a time, next to otherwise valid fields, where a `from_request` too lax would let them
//! through.

use std::cell::Cell;

use chrono::{DateTime, Datelike, Utc};
use exposure_event::{
    from_request, parse_wire, rfc3339, Exposure, ATTRIBUTES_MAX_BYTES, ATTRIBUTES_MAX_DEPTH,
    TEXT_MAX_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

/// At least 10,000 cases, in CI as here (`PROPTEST_CASES` may raise it).
const CASES: u32 = 10_000;

/// The smallest share of the cases `from_request` must accept, in percent. It accepts 45 %
/// (44.8 % to 45.8 % over 10 runs); far less means that the generators, or the contract,
/// changed.
const MIN_ACCEPTED_PERCENT: u32 = 30;

/// The smallest share of the cases, in percent, that must be accepted with each kind of edge
/// case counted in [`Edges`] (3.8 % to 31 % each over the same runs).
const MIN_EDGE_PERCENT: u32 = 1;

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

/// One character of 1, 2, 3 or 4 bytes (equally likely) that is not a control character.
fn printable_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::char::range(' ', '~'),
        prop::char::range('\u{a0}', '\u{7ff}'),
        // Surrogates are not characters: proptest draws again when it meets one.
        prop::char::range('\u{800}', '\u{ffff}'),
        prop::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

/// Strings around every byte limit, made of characters of one width, plus arbitrary ones,
/// control characters and NUL included.
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

/// Text the contract accepts in `ds_user_id` and the like: short strings of any width, and
/// strings at or just under [`TEXT_MAX_BYTES`] in characters of one width or of mixed widths.
fn text_ok() -> impl Strategy<Value = String> {
    let short = prop::collection::vec(printable_char(), 1..40);
    let one_width = (prop::sample::select(vec!["a", "é", "€", "🎉"]), 0usize..=3)
        .prop_map(|(c, d)| c.repeat(TEXT_MAX_BYTES / c.len() - d));
    // 100 to 256 characters of 2.5 bytes on average, cut after the last one that fits.
    let mixed = prop::collection::vec(printable_char(), 100..=TEXT_MAX_BYTES).prop_map(|v| {
        let mut s = String::new();
        for c in v {
            if s.len() + c.len_utf8() > TEXT_MAX_BYTES {
                break;
            }
            s.push(c);
        }
        s
    });
    prop_oneof![
        3 => short.prop_map(|v| v.into_iter().collect()),
        1 => one_width,
        1 => mixed,
    ]
    .prop_filter("not blank", |s| !s.trim().is_empty())
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
        offset(),
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
            "9999-12-31T23:59:60Z", "+10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-22",
        ]).prop_map(String::from),
        1 => any::<String>(),
    ]
}

fn offset() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Z".to_string()),
        Just("z".to_string()),
        Just("+00:00".to_string()),
        Just("-00:00".to_string()),
        (prop::sample::select(vec!['+', '-']), 0u32..=23, 0u32..=59)
            .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
    ]
}

/// RFC 3339 date-times the contract accepts (but for the few that an offset moves out of
/// years 1 to 9999): years 1 and 9999 often, days that every month has, leap seconds.
fn timestamp_ok() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(1u32), Just(9999), 1u32..=9999],
        1u32..=12,
        1u32..=28,
        0u32..=23,
        0u32..=59,
        prop_oneof![4 => 0u32..=59, 1 => Just(60)],
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        offset(),
        prop::sample::select(vec!['T', 't', ' ']),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off, t)| {
            format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// Any JSON value, nested, with keys and strings from `strings` and numbers of every kind.
fn json_of(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        strings.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(strings.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Any JSON value, with strings from [`text`].
fn json() -> BoxedStrategy<Value> {
    json_of(text().boxed())
}

/// Strings from [`text`] with every NUL replaced by U+0001: what attributes may hold, control
/// characters included.
fn attribute_text() -> BoxedStrategy<String> {
    text().prop_map(|s| s.replace('\0', "\u{1}")).boxed()
}

/// `{"d": …}` nested `levels` deep in all, with `inner` at the bottom.
fn nest(inner: Value, levels: usize, arrays: bool) -> Value {
    let mut v = inner;
    for _ in 1..levels {
        v = if arrays {
            Value::Array(vec![v])
        } else {
            Value::Object(Map::from_iter([("k".to_string(), v)]))
        };
    }
    Value::Object(Map::from_iter([("d".to_string(), v)]))
}

/// `{key: "ccc…"}` of [`ATTRIBUTES_MAX_BYTES`] as JSON, give or take a few characters (`d`
/// each), with unicode keys and characters that JSON escapes.
fn big(d: impl Strategy<Value = i64>) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["p", "ключ", "🔑"]),
        prop::sample::select(vec!['a', 'é', '€', '🎉', '\u{1}', '\t', '"', '\u{7f}']),
        d,
    )
        .prop_map(|(key, c, d)| {
            let width = serde_json::to_string(&c.to_string()).map_or(0, |s| s.len() - 2);
            let around = serde_json::json!({ key: "" }).to_string().len();
            let n = ((ATTRIBUTES_MAX_BYTES - around) / width) as i64 + d;
            Value::Object(Map::from_iter([(
                key.to_string(),
                Value::String(c.to_string().repeat(n as usize)),
            )]))
        })
}

/// Attributes the contract accepts: objects of any JSON inside, control characters but NUL
/// included; nested exactly to the depth limit or one short of it; at the size limit or a
/// few characters short of it.
fn attributes_ok() -> impl Strategy<Value = Value> {
    let deep = (json_of(attribute_text()), 0usize..=1, any::<bool>()).prop_map(
        |(inner, short, arrays)| {
            let levels = (ATTRIBUTES_MAX_DEPTH - short).saturating_sub(depth(&inner));
            nest(inner, levels, arrays)
        },
    );
    prop_oneof![
        6 => prop::collection::btree_map(attribute_text(), json_of(attribute_text()), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        2 => deep,
        2 => big(-3i64..=0),
    ]
}

/// Attributes on either side of every limit: any value, objects nested around the depth
/// limit, objects around the size limit, NUL characters.
fn attributes() -> impl Strategy<Value = Value> {
    let deep = (
        ATTRIBUTES_MAX_DEPTH - 2..=ATTRIBUTES_MAX_DEPTH + 1,
        json(),
        any::<bool>(),
    )
        .prop_map(|(levels, v, arrays)| nest(v, levels, arrays));
    prop_oneof![
        6 => prop::collection::btree_map(text(), json(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        2 => deep,
        1 => big(-3i64..=3),
        1 => json(),
    ]
}

/// Client ids the contract accepts: `null` or a UUID in any form `uuid` parses.
fn exposure_id_ok() -> impl Strategy<Value = Value> {
    let uuid = any::<u128>().prop_map(Uuid::from_u128);
    prop_oneof![
        1 => Just(Value::Null),
        4 => uuid.clone().prop_map(|u| Value::String(u.to_string())),
        1 => uuid.clone().prop_map(|u| Value::String(u.simple().to_string().to_uppercase())),
        1 => uuid.clone().prop_map(|u| Value::String(u.braced().to_string())),
        1 => uuid.prop_map(|u| Value::String(u.urn().to_string())),
    ]
}

/// A field: mostly a value from `ok`; sometimes one from `edge`, missing, or any JSON value.
fn field(
    ok: BoxedStrategy<Value>,
    edge: BoxedStrategy<Value>,
) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        34 => ok.prop_map(Some),
        4 => edge.prop_map(Some),
        1 => Just(None),
        1 => json().prop_map(Some),
    ]
}

fn request() -> impl Strategy<Value = Value> {
    let s = || {
        field(
            text_ok().prop_map(Value::String).boxed(),
            text().prop_map(Value::String).boxed(),
        )
    };
    let event = (
        s(),
        s(),
        s(),
        s(),
        field(attributes_ok().boxed(), attributes().boxed()),
        field(
            timestamp_ok().prop_map(Value::String).boxed(),
            timestamp().prop_map(Value::String).boxed(),
        ),
        field(
            exposure_id_ok().boxed(),
            text().prop_map(Value::String).boxed(),
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
    prop_oneof![19 => event, 1 => json()]
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// 0 for a scalar, 1 for an empty array or object, and so on (as the contract counts).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn has_control(v: &Value) -> bool {
    let control = |s: &str| s.chars().any(char::is_control);
    match v {
        Value::String(s) => control(s),
        Value::Array(items) => items.iter().any(has_control),
        Value::Object(m) => m.iter().any(|(k, v)| control(k) || has_control(v)),
        _ => false,
    }
}

/// How many accepted cases had each kind of edge case.
#[derive(Default)]
struct Edges {
    accepted: Cell<u32>,
    /// A text field within 3 bytes of [`TEXT_MAX_BYTES`], with characters of 2 to 4 bytes.
    text_at_limit_multibyte: Cell<u32>,
    /// A timestamp in year 1 or 9999.
    extreme_year: Cell<u32>,
    /// A timestamp with second 60.
    leap_second: Cell<u32>,
    /// Attributes exactly [`ATTRIBUTES_MAX_DEPTH`] deep.
    attributes_at_depth_limit: Cell<u32>,
    /// Attributes within 32 bytes of [`ATTRIBUTES_MAX_BYTES`].
    attributes_at_size_limit: Cell<u32>,
    /// A control character in a key or string of the attributes.
    control_in_attributes: Cell<u32>,
    /// The client's own `exposure_id`.
    client_id: Cell<u32>,
}

impl Edges {
    fn count(&self, body: &Value, e: &Exposure) {
        let add = |c: &Cell<u32>, yes: bool| c.set(c.get() + u32::from(yes));
        add(&self.accepted, true);
        add(
            &self.text_at_limit_multibyte,
            [&e.ds_user_id, &e.experiment_id, &e.variation_id, &e.source]
                .iter()
                .any(|s| s.len() + 3 >= TEXT_MAX_BYTES && s.len() > s.chars().count()),
        );
        add(&self.extreme_year, [1, 9999].contains(&e.ts.year()));
        let ts = body.get("timestamp").and_then(Value::as_str).unwrap_or("");
        add(&self.leap_second, ts.get(17..19) == Some("60"));
        add(
            &self.attributes_at_depth_limit,
            depth(&e.attributes) == ATTRIBUTES_MAX_DEPTH,
        );
        add(
            &self.attributes_at_size_limit,
            e.attributes.to_string().len() + 32 >= ATTRIBUTES_MAX_BYTES,
        );
        add(&self.control_in_attributes, has_control(&e.attributes));
        add(
            &self.client_id,
            body.get("exposure_id").is_some_and(Value::is_string),
        );
    }
}

#[test]
fn every_event_the_api_accepts_the_consumer_writes_unchanged() {
    let config = config();
    let cases = config.cases;
    let edges = Edges::default();
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &(
            request(),
            -62_135_596_800_000i64..=253_402_300_799_999,
            any::<u128>(),
        ),
        |(body, now, id)| {
            // The request as the client sent it: through the client's JSON text, as over HTTP.
            let body: Value = serde_json::from_str(&body.to_string()).expect("JSON text re-parses");
            let Ok(event) = from_request(&body, "", at(now)) else {
                return Ok(());
            };
            let accepted: Exposure = event.assign(Uuid::from_u128(id), at(now));
            let wire = accepted.to_wire();
            let read = parse_wire(&wire);
            prop_assert_eq!(
                read.as_ref(),
                Ok(&accepted),
                "wire: {}",
                String::from_utf8_lossy(&wire)
            );
            // Row values as the warehouse takes them: the timestamp prints back in the wire's
            // format, and text fits its column in bytes (Redshift) and characters (PostgreSQL).
            prop_assert_eq!(rfc3339(accepted.ts).len(), 24);
            for s in [
                &accepted.ds_user_id,
                &accepted.experiment_id,
                &accepted.variation_id,
                &accepted.source,
            ] {
                prop_assert!(s.len() <= TEXT_MAX_BYTES && !s.contains('\0'));
            }
            prop_assert!(accepted.exposure_id.len() <= 64);
            prop_assert!(!accepted.attributes.to_string().contains('\0'));
            edges.count(&body, &accepted);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let accepted = edges.accepted.get();
    eprintln!("from_request accepted {accepted} of {cases} cases");
    assert!(
        accepted * 100 >= cases * MIN_ACCEPTED_PERCENT,
        "from_request accepted {accepted} of {cases} cases, under {MIN_ACCEPTED_PERCENT} %: \
         the property held for too few; see which fields it refuses and tune their generators"
    );
    for (name, count) in [
        (
            "a text field at its limit in multi-byte characters",
            &edges.text_at_limit_multibyte,
        ),
        ("a timestamp in year 1 or 9999", &edges.extreme_year),
        ("a leap second", &edges.leap_second),
        (
            "attributes at the depth limit",
            &edges.attributes_at_depth_limit,
        ),
        (
            "attributes at the size limit",
            &edges.attributes_at_size_limit,
        ),
        (
            "control characters in attributes",
            &edges.control_in_attributes,
        ),
        ("a client's exposure_id", &edges.client_id),
    ] {
        let count = count.get();
        eprintln!("  {count} with {name}");
        assert!(
            count * 100 >= cases * MIN_EDGE_PERCENT,
            "{count} of {cases} cases were accepted with {name}, under {MIN_EDGE_PERCENT} %: \
             tune its generator"
        );
    }
}
