//! What every record of the contract is: the [`AvroRecord`] trait, its decoding errors, the field reader the
//! typed records decode with, and the account type they share.

use apache_avro::types::Value;
use std::collections::HashMap;

use crate::ids::CommandId;

/// A typed record of the wire contract.
pub trait AvroRecord: Sized + Send + Sync {
    /// Full name, e.g. `nl.openweb.data.Heartbeat`.
    const FULL_NAME: &'static str;
    /// The `.avsc` text.
    const SCHEMA: &'static str;
    fn to_value(&self) -> Value;
    fn from_value(value: Value) -> Result<Self, RecordError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("expected an avro record for {0}")]
    NotARecord(&'static str),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` has the wrong type: expected {expected}")]
    WrongType { field: &'static str, expected: &'static str },
}

/// The fields of a decoded record, by name.
pub(crate) struct Fields {
    fields: HashMap<String, Value>,
}

impl Fields {
    pub(crate) fn of(record: &'static str, value: Value) -> Result<Self, RecordError> {
        match value {
            Value::Record(fields) => Ok(Self { fields: fields.into_iter().collect() }),
            _ => Err(RecordError::NotARecord(record)),
        }
    }

    fn take(&mut self, field: &'static str) -> Result<Value, RecordError> {
        self.fields.remove(field).ok_or(RecordError::Missing(field))
    }

    /// Whether the record has `field` (a field later schemas added, absent in older records).
    pub(crate) fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub(crate) fn long(&mut self, field: &'static str) -> Result<i64, RecordError> {
        match self.take(field)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            _ => Err(RecordError::WrongType { field, expected: "long" }),
        }
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        match self.take(field)? {
            Value::String(v) => Ok(v),
            _ => Err(RecordError::WrongType { field, expected: "string" }),
        }
    }

    pub(crate) fn id(&mut self, field: &'static str) -> Result<CommandId, RecordError> {
        id_of(field, self.take(field)?)
    }

    /// An optional id: `["null", Uuid]` union, or absent when written with an older schema.
    pub(crate) fn optional_id(&mut self, field: &'static str) -> Result<Option<CommandId>, RecordError> {
        match self.fields.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Union(_, inner)) => match *inner {
                Value::Null => Ok(None),
                other => id_of(field, other).map(Some),
            },
            Some(other) => id_of(field, other).map(Some),
        }
    }

    pub(crate) fn atype(&mut self, field: &'static str) -> Result<Atype, RecordError> {
        match self.take(field)? {
            Value::Enum(_, symbol) => Atype::from_symbol(&symbol),
            Value::String(symbol) => Atype::from_symbol(&symbol),
            _ => None,
        }
        .ok_or(RecordError::WrongType { field, expected: "enum Atype" })
    }
}

fn id_of(field: &'static str, value: Value) -> Result<CommandId, RecordError> {
    match value {
        Value::Fixed(16, bytes) | Value::Bytes(bytes) => {
            CommandId::from_slice(&bytes).map_err(|_| RecordError::WrongType { field, expected: "fixed(16) Uuid" })
        }
        _ => Err(RecordError::WrongType { field, expected: "fixed(16) Uuid" }),
    }
}

pub(crate) fn id_value(id: &CommandId) -> Value {
    Value::Fixed(16, id.as_bytes().to_vec())
}

/// Account type of the reference: `AUTO` accounts are created by the generator, `MANUAL` ones by people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Atype {
    Auto,
    Manual,
}

impl Atype {
    pub const SYMBOLS: [&'static str; 2] = ["AUTO", "MANUAL"];

    pub fn symbol(self) -> &'static str {
        match self {
            Atype::Auto => "AUTO",
            Atype::Manual => "MANUAL",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Self> {
        match symbol {
            "AUTO" => Some(Atype::Auto),
            "MANUAL" => Some(Atype::Manual),
            _ => None,
        }
    }

    pub(crate) fn to_value(self) -> Value {
        Value::Enum(self as u32, self.symbol().to_owned())
    }
}
