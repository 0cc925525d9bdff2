//! Avro encoding and decoding through the schema registry (Confluent wire format: magic byte 0, 4-byte
//! schema id, Avro binary), plus a small REST client for registering schemas.

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::Deserialize;
use std::time::Duration;

use crate::avro::{AvroRecord, RecordError};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("schema registry or avro error: {0}")]
    Registry(#[from] SRCError),
    #[error("record does not match {expected}: got {actual}")]
    UnexpectedRecord { expected: &'static str, actual: String },
    #[error("record is malformed: {0}")]
    Record(#[from] RecordError),
    #[error("record has no value")]
    Empty,
}

impl CodecError {
    /// The registry was unreachable or failed on its side: retry later instead of treating the record as poison.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Registry(e) => e.retriable || e.to_string().contains("status 5"),
            _ => false,
        }
    }
}

/// One encoder and one decoder per process; both cache schemas by subject and id.
pub struct Codec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl Codec {
    pub fn new(registry_url: &str) -> Result<Self, SRCError> {
        let settings =
            || SrSettings::new_builder(registry_url.to_owned()).set_timeout(Duration::from_secs(5)).no_proxy().build();
        Ok(Self { encoder: AvroEncoder::new(settings()?), decoder: AvroDecoder::new(settings()?) })
    }

    /// Encodes `record` with the latest schema registered for `<topic>-value`.
    pub async fn encode<R: AvroRecord>(&self, topic: &str, record: &R) -> Result<Vec<u8>, CodecError> {
        let strategy = SubjectNameStrategy::TopicNameStrategy(topic.to_owned(), false);
        Ok(self.encoder.encode_value(record.to_value(), &strategy).await?)
    }

    /// Drops cached failures so the next call asks the registry again (after it was down, for example).
    pub fn forget_failures(&self) {
        self.encoder.remove_errors_from_cache();
        self.decoder.remove_errors_from_cache();
    }

    /// Decodes Confluent wire-format bytes written with any registered schema of `R`.
    pub async fn decode<R: AvroRecord>(&self, bytes: Option<&[u8]>) -> Result<R, CodecError> {
        if bytes.is_none_or(<[u8]>::is_empty) {
            return Err(CodecError::Empty);
        }
        let decoded = self.decoder.decode(bytes).await?;
        let actual = decoded.name.as_ref().map(|n| n.fullname(None)).unwrap_or_default();
        if actual != R::FULL_NAME {
            return Err(CodecError::UnexpectedRecord { expected: R::FULL_NAME, actual });
        }
        Ok(R::from_value(decoded.value)?)
    }
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

impl RegistryClient {
    pub fn new(base: &str) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build()?;
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

    /// Looks `schema` up under `subject`: `Ok(Some(version))` if registered there.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<i64>, RegistryError> {
        #[derive(Deserialize)]
        struct Found {
            version: i64,
        }
        let url = format!("{}/subjects/{}", self.base, subject);
        let body = serde_json::json!({ "schema": schema });
        match self.send::<Found>(self.http.post(url).json(&body)).await {
            Ok(f) => Ok(Some(f.version)),
            Err(RegistryError::Refused { body, .. }) if body.error_code == 40401 || body.error_code == 40403 => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.send(self.http.get(format!("{}/subjects", self.base))).await
    }
}
