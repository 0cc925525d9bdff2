//! Avro schemas built from the fuzzer's bytes (records, enums, fixed, arrays, maps, unions, logical types, named
//! references, namespaces, aliases and defaults of any JSON type), registered through the schema registry's own
//! request parsing. Arbitrary bytes rarely form a schema; these always have its shape, so the fuzzer spends its
//! time in the schema parser, the canonical form and the compatibility check.
//!
//! Invariants: nothing panics; a refused schema gets 42201; an accepted one's canonical text (what the registry
//! stores and re-reads for every later compatibility check) parses again to the same canonical text; it is
//! compatible with itself at every level.
#![no_main]

use apache_avro::Schema;
use axum::body::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use schema_registry::api;
use schema_registry::schema::{SchemaRequest, parse_schema};
use schema_registry::compat::{self, Level};
use serde_json::{Value, json};

const NAMES: [&str; 8] = ["A", "B", "r", "Uuid", "a.B", "x.y.C", "nl.openweb.data.Heartbeat", "_z9"];
const NAMESPACES: [&str; 5] = ["", "a", "x.y", "nl.openweb.data", "b"];
const FIELDS: [&str; 5] = ["id", "f", "g", "type", "_"];
const SYMBOLS: [&str; 5] = ["AUTO", "MANUAL", "A", "B", "_c"];
const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];
const LEVELS: [Level; 7] = [
    Level::None,
    Level::Backward,
    Level::BackwardTransitive,
    Level::Forward,
    Level::ForwardTransitive,
    Level::Full,
    Level::FullTransitive,
];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

/// A JSON value of any type, for defaults.
fn any_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<bool>()?),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(u.arbitrary::<f64>()?),
        4 => json!(pick(u, &SYMBOLS)?),
        5 => json!(u.arbitrary::<String>()?),
        6 if depth < 3 => {
            Value::Array((0..u.int_in_range(0..=2)?).map(|_| any_value(u, depth + 1)).collect::<Result<_>>()?)
        }
        _ if depth < 3 => {
            let mut m = serde_json::Map::new();
            for _ in 0..u.int_in_range(0..=2)? {
                m.insert(pick(u, &FIELDS)?.to_owned(), any_value(u, depth + 1)?);
            }
            Value::Object(m)
        }
        _ => Value::Null,
    })
}

fn named(u: &mut Unstructured<'_>, kind: &str, defined: &mut Vec<String>) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!(kind));
    let name = pick(u, &NAMES)?;
    m.insert("name".into(), json!(name));
    if u.arbitrary()? {
        m.insert("namespace".into(), json!(pick(u, &NAMESPACES)?));
    }
    if u.ratio(1, 4)? {
        m.insert("aliases".into(), json!([pick(u, &NAMES)?]));
    }
    defined.push(name.to_owned());
    Ok(m)
}

fn any_type(u: &mut Unstructured<'_>, depth: u32, defined: &mut Vec<String>) -> Result<Value> {
    let leaf = depth >= 4;
    Ok(match u.int_in_range(0..=11)? {
        0..=2 => json!(pick(u, &PRIMITIVES)?),
        3 => {
            let logical = [
                json!({"type": "int", "logicalType": "date"}),
                json!({"type": "long", "logicalType": "timestamp-millis"}),
                json!({"type": "string", "logicalType": "uuid"}),
                json!({"type": "bytes", "logicalType": "decimal", "precision": u.int_in_range(0..=40u8)?, "scale": u.int_in_range(0..=40u8)?}),
                json!({"type": "fixed", "name": pick(u, &NAMES)?, "size": u.int_in_range(0..=20u8)?, "logicalType": "decimal", "precision": u.int_in_range(0..=40u8)?}),
                json!({"type": "fixed", "name": pick(u, &NAMES)?, "size": 16, "logicalType": "uuid"}),
                json!({"type": "fixed", "name": pick(u, &NAMES)?, "size": 12, "logicalType": "duration"}),
            ];
            u.choose(&logical)?.clone()
        }
        4 if !defined.is_empty() => json!(u.choose(defined)?.clone()),
        5 => {
            let mut m = named(u, "enum", defined)?;
            let symbols: Vec<&str> = (0..u.int_in_range(0..=3)?).map(|_| pick(u, &SYMBOLS)).collect::<Result<_>>()?;
            m.insert("symbols".into(), json!(symbols));
            if u.arbitrary()? {
                m.insert("default".into(), json!(pick(u, &SYMBOLS)?));
            }
            Value::Object(m)
        }
        6 => {
            let mut m = named(u, "fixed", defined)?;
            m.insert("size".into(), json!(u.int_in_range(0..=20u8)?));
            Value::Object(m)
        }
        7 if !leaf => json!({"type": "array", "items": any_type(u, depth + 1, defined)?}),
        8 if !leaf => json!({"type": "map", "values": any_type(u, depth + 1, defined)?}),
        9 if !leaf => {
            let n = u.int_in_range(1..=3)?;
            Value::Array((0..n).map(|_| any_type(u, depth + 1, defined)).collect::<Result<_>>()?)
        }
        10 | 11 if !leaf => record(u, depth, defined)?,
        _ => json!(pick(u, &PRIMITIVES)?),
    })
}

fn record(u: &mut Unstructured<'_>, depth: u32, defined: &mut Vec<String>) -> Result<Value> {
    let mut m = named(u, "record", defined)?;
    let mut fields = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let mut f = serde_json::Map::new();
        f.insert("name".into(), json!(pick(u, &FIELDS)?));
        f.insert("type".into(), any_type(u, depth + 1, defined)?);
        if u.arbitrary()? {
            f.insert("default".into(), any_value(u, 0)?);
        }
        if u.ratio(1, 4)? {
            f.insert("order".into(), json!(pick(u, &["ascending", "descending", "ignore", "x"])?));
        }
        if u.ratio(1, 4)? {
            f.insert("aliases".into(), json!([pick(u, &FIELDS)?]));
        }
        fields.push(Value::Object(f));
    }
    m.insert("fields".into(), Value::Array(fields));
    Ok(Value::Object(m))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut defined = Vec::new();
    let Ok(schema) = (if u.ratio(3, 4).unwrap_or(true) {
        record(&mut u, 0, &mut defined)
    } else {
        any_type(&mut u, 0, &mut defined)
    }) else {
        return;
    };
    let text = schema.to_string();
    let body = Bytes::from(json!({ "schema": text }).to_string());
    let req: SchemaRequest = api::parse_body(&body).expect("a JSON string in a JSON body");
    let parsed = match parse_schema(&req) {
        Ok(p) => p,
        Err(e) => {
            assert_eq!(e.code, 42201, "schema {text} refused with {}: {}", e.code, e.message);
            return;
        }
    };
    let again = Schema::parse_str(&parsed.canonical)
        .unwrap_or_else(|e| panic!("schema {text}: canonical text {} does not parse again: {e}", parsed.canonical));
    let canonical_again = serde_json::to_string(&again).expect("a parsed schema serialises");
    assert_eq!(canonical_again, parsed.canonical, "schema {text}: canonical text is not stable");
    for level in LEVELS {
        let problems = compat::check(level, &parsed.schema, &[(1, again.clone())]);
        assert!(problems.is_empty(), "schema {text} is incompatible with itself at {level}: {problems:?}");
    }
});
