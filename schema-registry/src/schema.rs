//! What the registry accepts as a schema: an Avro schema of bounded size and field count, in the one form it can
//! store and read back as the same schema ([`parse_schema`]). The HTTP layer ([`crate::api`]) hands requests here.

use apache_avro::Schema;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Largest schema text accepted, in bytes (the contract's largest is under 2 kB).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most fields one schema may have, over all its records (the compatibility check grows with their square).
pub const MAX_FIELDS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Value>,
}

/// Fields of `schema`, over all its records, arrays, maps and unions.
pub fn field_count(schema: &Schema) -> usize {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| 1 + field_count(&f.schema)).sum(),
        Schema::Array(a) => field_count(&a.items),
        Schema::Map(m) => field_count(&m.types),
        Schema::Union(u) => u.variants().iter().map(field_count).sum(),
        _ => 0,
    }
}

/// A parsed Avro schema and its canonical text (the identity of a schema, also what the API returns).
pub struct Parsed {
    pub schema: Schema,
    pub canonical: String,
}

/// Canonical form: the parsed schema written back as compact JSON with a stable field order. Unlike Avro's
/// Parsing Canonical Form it keeps defaults and docs, so two schemas that differ only in a default stay distinct.
fn canonical(schema: &Schema) -> Result<String, ApiError> {
    serde_json::to_string(schema).map_err(ApiError::invalid_schema)
}

pub fn parse_schema(req: &SchemaRequest) -> Result<Parsed, ApiError> {
    if req.schema.len() > MAX_SCHEMA_BYTES {
        return Err(ApiError::invalid_schema(format!("longer than {MAX_SCHEMA_BYTES} bytes")));
    }
    match req.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => return Err(ApiError::invalid_schema(format!("unsupported schema type {other}, only AVRO"))),
    }
    if !req.references.is_empty() {
        return Err(ApiError::invalid_schema("schema references are not supported"));
    }
    let schema = Schema::parse_str(&req.schema).map_err(ApiError::invalid_schema)?;
    if field_count(&schema) > MAX_FIELDS {
        return Err(ApiError::invalid_schema(format!("more than {MAX_FIELDS} fields")));
    }
    let text = canonical(&schema)?;
    // The canonical text is what is stored and re-read. apache-avro writes some schemas in a form that reads back
    // as another schema (a named type with an explicit empty namespace inside a namespaced record loses it, and
    // its name and aliases move into the record's namespace): those are refused rather than stored as another.
    let reread = Schema::parse_str(&text).map_err(ApiError::invalid_schema)?;
    if canonical(&reread)? != text {
        return Err(ApiError::invalid_schema(
            "it cannot be stored as it is (a named type with an empty namespace inside a namespaced one?)",
        ));
    }
    Ok(Parsed { schema, canonical: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(schema: &str) -> SchemaRequest {
        SchemaRequest { schema: schema.to_owned(), schema_type: None, references: Vec::new() }
    }

    #[test]
    fn the_contracts_schemas_have_a_stable_canonical_text() {
        for (name, text) in bank_core::avro::ALL_SCHEMAS {
            let parsed = parse_schema(&request(text)).unwrap_or_else(|e| panic!("{name}: {}", e.message));
            let again = parse_schema(&request(&parsed.canonical)).unwrap();
            assert_eq!(again.canonical, parsed.canonical, "{name}");
        }
    }

    /// Found by the `registry_schema` fuzz target: the enum `r` is in the null namespace, but its canonical text
    /// dropped `"namespace": ""` and read back as `nl.openweb.data.r` (alias `nl.openweb.data.A`).
    #[test]
    fn a_schema_whose_canonical_text_reads_back_as_another_is_refused() {
        let schema = r#"{"type":"record","name":"_z9","namespace":"nl.openweb.data","fields":[{"name":"id","type":
            {"type":"enum","name":"r","namespace":"","aliases":["A"],"symbols":[]}}]}"#;
        let e = parse_schema(&request(schema)).err().expect("refused");
        assert_eq!(e.code, 42201, "{}", e.message);
        // The same enum in the record's namespace is fine.
        let inherited = schema.replace(r#""namespace":"","#, "");
        assert!(parse_schema(&request(&inherited)).is_ok());
    }
}
