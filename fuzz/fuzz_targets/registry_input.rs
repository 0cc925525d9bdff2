//! The schema registry's outside input: request bodies (`{"schema": ..., "schemaType": ..., "references": ...}`
//! and `{"compatibility": ...}`), schema texts and version path segments, from arbitrary bytes.
//!
//! Invariants: nothing panics; a refused body or schema gets the documented error code (400 for JSON that is
//! not the request, 42201 for an invalid schema, 42203 for a compatibility level, 42202 for a version); an
//! accepted schema's canonical text parses again to the same canonical text (the registry stores that text and
//! re-reads it on every compatibility check); a schema is compatible with itself at every level; checking it
//! against the contract's schemas answers.
#![no_main]

use apache_avro::Schema;
use axum::body::Bytes;
use bank_core::avro::ALL_SCHEMAS;
use libfuzzer_sys::fuzz_target;
use schema_registry::api::{self, VersionRef};
use schema_registry::schema::{SchemaRequest, parse_schema};
use schema_registry::compat::{self, Level};
use std::sync::LazyLock;

const LEVELS: [Level; 7] = [
    Level::None,
    Level::Backward,
    Level::BackwardTransitive,
    Level::Forward,
    Level::ForwardTransitive,
    Level::Full,
    Level::FullTransitive,
];

static CONTRACT: LazyLock<Vec<(i32, Schema)>> = LazyLock::new(|| {
    ALL_SCHEMAS.iter().zip(1..).map(|((_, text), v)| (v, Schema::parse_str(text).expect("contract schema"))).collect()
});

fn check_schema(req: &SchemaRequest) {
    let parsed = match parse_schema(req) {
        Ok(p) => p,
        Err(e) => {
            assert_eq!(e.code, 42201, "schema refused with {}: {}", e.code, e.message);
            return;
        }
    };
    let again = Schema::parse_str(&parsed.canonical)
        .unwrap_or_else(|e| panic!("canonical text {} does not parse again: {e}", parsed.canonical));
    let canonical_again = serde_json::to_string(&again).expect("a parsed schema serialises");
    assert_eq!(canonical_again, parsed.canonical, "canonical text is not stable");
    for level in LEVELS {
        let problems = compat::check(level, &parsed.schema, &[(1, again.clone())]);
        assert!(problems.is_empty(), "{} is incompatible with itself at {level}: {problems:?}", parsed.canonical);
        let _ = compat::check(level, &parsed.schema, &CONTRACT);
    }
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    match api::parse_body::<SchemaRequest>(&body) {
        Ok(req) => check_schema(&req),
        Err(e) => assert_eq!(e.code, 400, "body refused with {}: {}", e.code, e.message),
    }
    match api::parse_level(&body) {
        Ok(level) => assert_eq!(level.as_str().parse::<Level>(), Ok(level)),
        Err(e) => assert!([400, 42203].contains(&e.code), "level refused with {}: {}", e.code, e.message),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The same bytes as a schema text, without the JSON envelope around it.
        check_schema(&SchemaRequest { schema: text.to_owned(), schema_type: None, references: Vec::new() });
        match api::parse_version(text) {
            Ok(VersionRef::Latest) => assert!(text == "latest" || text == "-1"),
            Ok(VersionRef::Number(n)) => assert!(n >= 1 && text.parse::<i32>() == Ok(n)),
            Err(e) => assert_eq!(e.code, 42202, "version refused with {}: {}", e.code, e.message),
        }
    }
});
