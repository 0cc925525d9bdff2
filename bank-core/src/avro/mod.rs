//! The wire contract's Avro records (namespace `nl.openweb.data`). The `.avsc` files in `bank-core/avro/`
//! are the single source of truth; the typed records here convert to and from `apache_avro::types::Value`
//! by field name, so records written with an older schema (without later, defaulted fields) still decode.

mod records;

pub use records::*;

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

/// Every record type of the contract: (full name, schema text).
pub const ALL_SCHEMAS: &[(&str, &str)] = &[
    (Heartbeat::FULL_NAME, Heartbeat::SCHEMA),
    (ConfirmAccountCreation::FULL_NAME, ConfirmAccountCreation::SCHEMA),
    (AccountCreationConfirmed::FULL_NAME, AccountCreationConfirmed::SCHEMA),
    (AccountCreationFailed::FULL_NAME, AccountCreationFailed::SCHEMA),
    (ConfirmMoneyTransfer::FULL_NAME, ConfirmMoneyTransfer::SCHEMA),
    (MoneyTransferConfirmed::FULL_NAME, MoneyTransferConfirmed::SCHEMA),
    (MoneyTransferFailed::FULL_NAME, MoneyTransferFailed::SCHEMA),
    (BalanceChanged::FULL_NAME, BalanceChanged::SCHEMA),
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn every_schema_parses_and_names_match() {
        for (name, text) in ALL_SCHEMAS {
            let schema = Schema::parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            match schema {
                Schema::Record(r) => assert_eq!(r.name.fullname(None), *name),
                other => panic!("{name} is not a record: {other:?}"),
            }
        }
    }

    /// `record` validates against its own schema and reads back as itself; returns its full name.
    fn check<R: AvroRecord + std::fmt::Debug + PartialEq>(record: &R) -> &'static str {
        let schema = Schema::parse_str(R::SCHEMA).unwrap();
        let value = record.to_value();
        assert!(value.validate(&schema), "{} does not validate: {value:?}", R::FULL_NAME);
        assert_eq!(&R::from_value(value).unwrap(), record, "{} does not read back", R::FULL_NAME);
        R::FULL_NAME
    }

    #[test]
    fn records_validate_against_their_schema() {
        let id = CommandId::new();
        let change = BalanceChanged {
            iban: "NL66OPEN0000000000".into(),
            new_balance: 100,
            changed_by: -5,
            from_to: "cash".into(),
            description: "x".into(),
            transfer_id: Some(id),
            seq: 3,
        };
        let checked = [
            check(&Heartbeat { beat: 7 }),
            check(&ConfirmAccountCreation { id, a_type: Atype::Manual }),
            check(&AccountCreationConfirmed {
                id,
                iban: "NL66OPEN0000000000".into(),
                token: "0123456789abcdef0123456789abcdef".into(),
                a_type: Atype::Auto,
            }),
            check(&AccountCreationFailed { id, reason: "no".into() }),
            check(&ConfirmMoneyTransfer {
                id,
                token: "0123456789abcdef0123456789abcdef".into(),
                amount: 1234,
                from: "NL66OPEN0000000000".into(),
                to: "cash".into(),
                description: "rent".into(),
            }),
            check(&MoneyTransferConfirmed { id }),
            check(&MoneyTransferFailed { id, reason: "insufficient funds".into() }),
            check(&change),
            check(&BalanceChanged { transfer_id: None, seq: 0, ..change.clone() }),
        ];
        let mut names: Vec<&str> = checked.to_vec();
        names.sort_unstable();
        names.dedup();
        let mut all: Vec<&str> = ALL_SCHEMAS.iter().map(|(name, _)| *name).collect();
        all.sort_unstable();
        assert_eq!(names, all, "every record of the contract is checked");
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn balance_changed_without_transfer_id_decodes() {
        // Written by the reference's schema, which ends at `description`.
        let old = Value::Record(vec![
            ("iban".into(), Value::String("NL66OPEN0000000000".into())),
            ("new_balance".into(), Value::Long(1)),
            ("changed_by".into(), Value::Long(1)),
            ("from_to".into(), Value::String("cash".into())),
            ("description".into(), Value::String("d".into())),
        ]);
        let decoded = BalanceChanged::from_value(old).unwrap();
        assert_eq!((decoded.transfer_id, decoded.seq), (None, 0));
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        assert_eq!(Heartbeat::from_value(Value::Long(1)), Err(RecordError::NotARecord(Heartbeat::FULL_NAME)));
        let bad_id = Value::Record(vec![("id".into(), Value::Fixed(3, vec![1, 2, 3]))]);
        assert!(matches!(MoneyTransferConfirmed::from_value(bad_id), Err(RecordError::WrongType { field: "id", .. })));
        let missing = Value::Record(vec![]);
        assert_eq!(Heartbeat::from_value(missing), Err(RecordError::Missing("beat")));
    }
}
