//! Avro encoding and decoding through the schema registry (Confluent wire format: magic byte 0, 4-byte
//! schema id, Avro binary), plus a small REST client for registering schemas.
//!
//! A producer writes with the schema it was built with: the codec looks up the id of the record's own `.avsc`
//! under `<topic>-value` and never encodes with whatever version is latest, so a compatible new version
//! registered by someone else changes nothing for it. A consumer reads any registered writer schema of the
//! record and resolves it to its own (Avro schema resolution: fields it does not know are skipped, fields the
//! writer lacked take their defaults), so old and new writers both decode.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use crate::avro::{ALL_SCHEMAS, AvroRecord, RecordError};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the schema of {record} this build writes is not registered under {subject}")]
    NotRegistered { subject: String, record: &'static str },
    #[error("no schema with id {0} in the registry")]
    UnknownId(u32),
    #[error("record is not in the registry's wire format (magic byte 0 and a 4-byte schema id)")]
    Header,
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("record does not match {expected}: got {actual}")]
    UnexpectedRecord { expected: &'static str, actual: String },
    #[error("record is malformed: {0}")]
    Record(#[from] RecordError),
    #[error("record has no value")]
    Empty,
}

impl CodecError {
    /// The registry was unreachable or failed on its side, or has not got this build's schema yet: retry later
    /// instead of treating the record as poison.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Registry(RegistryError::Unreachable(_)) | Self::NotRegistered { .. } => true,
            Self::Registry(RegistryError::Refused { status, .. }) => *status >= 500,
            _ => false,
        }
    }
}

/// The wire format's header: `Some((schema id, Avro body))` when `bytes` starts with magic byte 0 and an id.
pub fn split_header(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => None,
    }
}

/// The contract's own schemas, parsed once: (full name, schema, canonical form).
static OWN: LazyLock<Vec<(&'static str, Schema, String)>> = LazyLock::new(|| {
    ALL_SCHEMAS
        .iter()
        .filter_map(|(name, text)| {
            let schema = Schema::parse_str(text).ok()?;
            let canonical = schema.canonical_form();
            Some((*name, schema, canonical))
        })
        .collect()
});

fn own<R: AvroRecord>() -> Result<&'static (&'static str, Schema, String), CodecError> {
    // Every contract schema parses (a unit test says so); a record outside the contract has no own schema.
    OWN.iter()
        .find(|(name, ..)| *name == R::FULL_NAME)
        .ok_or(CodecError::UnexpectedRecord { expected: R::FULL_NAME, actual: "a record outside the contract".into() })
}

/// A writer schema fetched by id.
struct Writer {
    schema: Schema,
    full_name: String,
    canonical: String,
}

/// Writer schemas kept at most: the registry's own contents bound them; this bounds a registry filled by others.
const MAX_WRITERS: usize = 1024;

/// One per process, shared by its producers and consumers. It caches the ids of its own schemas and the writer
/// schemas it has read, successes only: a failed lookup (registry down, unknown id) is asked again next time.
pub struct Codec {
    registry: RegistryClient,
    own_ids: RwLock<HashMap<(String, &'static str), u32>>,
    writers: RwLock<HashMap<u32, Arc<Writer>>>,
}

impl Codec {
    pub fn new(registry_url: &str) -> Result<Self, RegistryError> {
        Ok(Self {
            registry: RegistryClient::with_timeout(registry_url, Duration::from_secs(5))?,
            own_ids: RwLock::default(),
            writers: RwLock::default(),
        })
    }

    /// The id of `R`'s own schema under `<topic>-value`.
    async fn own_id<R: AvroRecord>(&self, topic: &str) -> Result<u32, CodecError> {
        let key = (topic.to_owned(), R::FULL_NAME);
        if let Some(id) = self.own_ids.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        let subject = format!("{topic}-value");
        let found = self.registry.lookup_id(&subject, R::SCHEMA).await?;
        let id = found.ok_or(CodecError::NotRegistered { subject, record: R::FULL_NAME })?;
        self.own_ids.write().unwrap_or_else(|e| e.into_inner()).insert(key, id);
        Ok(id)
    }

    /// Encodes `record` with its own schema, under that schema's id in `<topic>-value`.
    pub async fn encode<R: AvroRecord>(&self, topic: &str, record: &R) -> Result<Vec<u8>, CodecError> {
        let id = self.own_id::<R>(topic).await?;
        let (_, schema, _) = own::<R>()?;
        let mut out = Vec::with_capacity(64);
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        GenericDatumWriter::builder(schema).build()?.write_value(&mut out, record.to_value())?;
        Ok(out)
    }

    async fn writer(&self, id: u32) -> Result<Arc<Writer>, CodecError> {
        if let Some(w) = self.writers.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Arc::clone(w));
        }
        let text = self.registry.schema_by_id(id).await?.ok_or(CodecError::UnknownId(id))?;
        let writer = Arc::new(Writer::parse(&text)?);
        let mut writers = self.writers.write().unwrap_or_else(|e| e.into_inner());
        if writers.len() >= MAX_WRITERS {
            writers.clear();
        }
        writers.insert(id, Arc::clone(&writer));
        Ok(writer)
    }

    /// Decodes Confluent wire-format bytes written with any registered schema of `R`, resolved to `R`'s own.
    pub async fn decode<R: AvroRecord>(&self, bytes: Option<&[u8]>) -> Result<R, CodecError> {
        let bytes = bytes.filter(|b| !b.is_empty()).ok_or(CodecError::Empty)?;
        let (id, body) = split_header(bytes).ok_or(CodecError::Header)?;
        read(&*self.writer(id).await?, body)
    }
}

impl Writer {
    fn parse(text: &str) -> Result<Self, CodecError> {
        let schema = Schema::parse_str(text)?;
        let full_name = match &schema {
            Schema::Record(r) => r.name.fullname(None),
            _ => String::new(),
        };
        Ok(Self { canonical: schema.canonical_form(), schema, full_name })
    }
}

/// Reads an Avro body written with `writer` as an `R`, resolving the writer's schema to `R`'s own when they differ.
fn read<R: AvroRecord>(writer: &Writer, mut body: &[u8]) -> Result<R, CodecError> {
    if writer.full_name != R::FULL_NAME {
        return Err(CodecError::UnexpectedRecord { expected: R::FULL_NAME, actual: writer.full_name.clone() });
    }
    let (_, reader, canonical) = own::<R>()?;
    let value = if writer.canonical == *canonical {
        GenericDatumReader::builder(&writer.schema).build()?.read_value(&mut body)?
    } else {
        GenericDatumReader::builder(&writer.schema).reader_schema(reader).build()?.read_value(&mut body)?
    };
    Ok(R::from_value(value)?)
}

/// Error body of a Confluent-compatible registry.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryErrorBody {
    pub error_code: i64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("schema registry refused (HTTP {status}, code {}): {}", body.error_code, body.message)]
    Refused { status: u16, body: RegistryErrorBody },
}

/// A minimal REST client for the Confluent Schema Registry API.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Debug, Deserialize)]
struct Found {
    id: u32,
    version: i64,
}

impl RegistryClient {
    pub fn new(base: &str) -> Result<Self, RegistryError> {
        Self::with_timeout(base, Duration::from_secs(10))
    }

    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder().timeout(timeout).no_proxy().build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), http })
    }

    async fn send<T: for<'de> Deserialize<'de>>(&self, req: reqwest::RequestBuilder) -> Result<T, RegistryError> {
        let resp = req.header("content-type", CONTENT_TYPE).header("accept", CONTENT_TYPE).send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.json().await?);
        }
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text)
            .unwrap_or(RegistryErrorBody { error_code: i64::from(status.as_u16()), message: text });
        Err(RegistryError::Refused { status: status.as_u16(), body })
    }

    /// Registers `schema` under `subject`; returns the global schema id (the same id when already registered).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base, subject);
        let body = serde_json::json!({ "schema": schema });
        Ok(self.send::<IdBody>(self.http.post(url).json(&body)).await?.id)
    }

    async fn find(&self, subject: &str, schema: &str) -> Result<Option<Found>, RegistryError> {
        let url = format!("{}/subjects/{}", self.base, subject);
        let body = serde_json::json!({ "schema": schema });
        match self.send::<Found>(self.http.post(url).json(&body)).await {
            Ok(f) => Ok(Some(f)),
            Err(RegistryError::Refused { body, .. }) if body.error_code == 40401 || body.error_code == 40403 => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks `schema` up under `subject`: `Ok(Some(version))` if registered there.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<i64>, RegistryError> {
        Ok(self.find(subject, schema).await?.map(|f| f.version))
    }

    /// Looks `schema` up under `subject`: `Ok(Some(global schema id))` if registered there.
    pub async fn lookup_id(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        Ok(self.find(subject, schema).await?.map(|f| f.id))
    }

    /// The latest live version under `subject`: `(global schema id, schema text)`, `Ok(None)` if there is none.
    pub async fn latest(&self, subject: &str) -> Result<Option<(u32, String)>, RegistryError> {
        #[derive(Deserialize)]
        struct Version {
            id: u32,
            schema: String,
        }
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        match self.send::<Version>(self.http.get(url)).await {
            Ok(v) => Ok(Some((v.id, v.schema))),
            Err(RegistryError::Refused { body, .. }) if body.error_code == 40401 || body.error_code == 40402 => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The schema text registered under global id `id`, `Ok(None)` if there is none.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Text {
            schema: String,
        }
        match self.send::<Text>(self.http.get(format!("{}/schemas/ids/{id}", self.base))).await {
            Ok(t) => Ok(Some(t.schema)),
            Err(RegistryError::Refused { body, .. }) if body.error_code == 40403 => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.send(self.http.get(format!("{}/subjects", self.base))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::{MoneyTransferConfirmed, MoneyTransferFailed};
    use crate::ids::CommandId;

    #[test]
    fn the_header_is_magic_byte_zero_and_a_big_endian_id() {
        assert_eq!(split_header(&[0, 0, 0, 1, 2, 9, 9]), Some((258, &[9u8, 9][..])));
        assert_eq!(split_header(&[0, 0, 0, 0, 7]), Some((7, &[][..])));
        assert_eq!(split_header(&[1, 0, 0, 0, 7, 1]), None);
        assert_eq!(split_header(&[0, 0, 0, 7]), None);
        assert_eq!(split_header(&[]), None);
    }

    #[test]
    fn every_contract_schema_parses_once() {
        assert_eq!(OWN.len(), ALL_SCHEMAS.len());
    }

    /// `MoneyTransferFailed`'s own schema plus one field with a default: the spec's evolution rule.
    fn evolved_failed() -> String {
        let mut v: serde_json::Value = serde_json::from_str(MoneyTransferFailed::SCHEMA).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "retry_after", "type": "long", "default": 0}));
        v.to_string()
    }

    fn write(schema: &Schema, value: apache_avro::types::Value) -> Vec<u8> {
        GenericDatumWriter::builder(schema).build().unwrap().write_value_to_vec(value).unwrap()
    }

    #[test]
    fn a_newer_writer_with_a_defaulted_field_reads_as_our_record() {
        let record = MoneyTransferFailed { id: CommandId::new(), reason: "insufficient funds".into() };
        let newer = Writer::parse(&evolved_failed()).unwrap();
        let apache_avro::types::Value::Record(mut fields) = record.to_value() else { panic!("a record") };
        fields.push(("retry_after".into(), apache_avro::types::Value::Long(30)));
        let body = write(&newer.schema, apache_avro::types::Value::Record(fields));
        assert_eq!(read::<MoneyTransferFailed>(&newer, &body).unwrap(), record);
    }

    #[test]
    fn our_writer_reads_back_and_a_newer_reader_fills_the_default() {
        let record = MoneyTransferFailed { id: CommandId::new(), reason: "unknown account".into() };
        let ours = Writer::parse(MoneyTransferFailed::SCHEMA).unwrap();
        let body = write(&ours.schema, record.to_value());
        assert_eq!(read::<MoneyTransferFailed>(&ours, &body).unwrap(), record);
        // What a newer build reading our bytes sees: its own field, with its default.
        let newer = Schema::parse_str(&evolved_failed()).unwrap();
        let value = GenericDatumReader::builder(&ours.schema)
            .reader_schema(&newer)
            .build()
            .unwrap()
            .read_value(&mut body.as_slice())
            .unwrap();
        let apache_avro::types::Value::Record(fields) = value else { panic!("a record") };
        assert!(fields.contains(&("retry_after".into(), apache_avro::types::Value::Long(0))));
    }

    #[test]
    fn another_records_writer_is_refused() {
        let other = Writer::parse(MoneyTransferConfirmed::SCHEMA).unwrap();
        let body = write(&other.schema, MoneyTransferConfirmed { id: CommandId::new() }.to_value());
        assert!(matches!(read::<MoneyTransferFailed>(&other, &body), Err(CodecError::UnexpectedRecord { .. })));
    }
}
