use apache_avro::types::Value;

use super::record::{Atype, AvroRecord, Fields, RecordError, id_value};
use crate::ids::CommandId;

macro_rules! schema_file {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/avro/", $name, ".avsc"))
    };
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub beat: i64,
}

impl AvroRecord for Heartbeat {
    const FULL_NAME: &'static str = "nl.openweb.data.Heartbeat";
    const SCHEMA: &'static str = schema_file!("Heartbeat");
    fn to_value(&self) -> Value {
        record(vec![("beat", Value::Long(self.beat))])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { beat: f.long("beat")? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmAccountCreation {
    pub id: CommandId,
    pub a_type: Atype,
}

impl AvroRecord for ConfirmAccountCreation {
    const FULL_NAME: &'static str = "nl.openweb.data.ConfirmAccountCreation";
    const SCHEMA: &'static str = schema_file!("ConfirmAccountCreation");
    fn to_value(&self) -> Value {
        record(vec![("id", id_value(&self.id)), ("a_type", self.a_type.to_value())])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { id: f.id("id")?, a_type: f.atype("a_type")? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCreationConfirmed {
    pub id: CommandId,
    pub iban: String,
    pub token: String,
    pub a_type: Atype,
}

impl AvroRecord for AccountCreationConfirmed {
    const FULL_NAME: &'static str = "nl.openweb.data.AccountCreationConfirmed";
    const SCHEMA: &'static str = schema_file!("AccountCreationConfirmed");
    fn to_value(&self) -> Value {
        record(vec![
            ("id", id_value(&self.id)),
            ("iban", Value::String(self.iban.clone())),
            ("token", Value::String(self.token.clone())),
            ("a_type", self.a_type.to_value()),
        ])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { id: f.id("id")?, iban: f.string("iban")?, token: f.string("token")?, a_type: f.atype("a_type")? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCreationFailed {
    pub id: CommandId,
    pub reason: String,
}

impl AvroRecord for AccountCreationFailed {
    const FULL_NAME: &'static str = "nl.openweb.data.AccountCreationFailed";
    const SCHEMA: &'static str = schema_file!("AccountCreationFailed");
    fn to_value(&self) -> Value {
        record(vec![("id", id_value(&self.id)), ("reason", Value::String(self.reason.clone()))])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { id: f.id("id")?, reason: f.string("reason")? })
    }
}

/// A request to move `amount` cents from `from` to `to`; `cash` on either side is the outside world.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmMoneyTransfer {
    pub id: CommandId,
    pub token: String,
    pub amount: i64,
    pub from: String,
    pub to: String,
    pub description: String,
}

impl std::fmt::Debug for ConfirmMoneyTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmMoneyTransfer")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("amount", &self.amount)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("description", &self.description)
            .finish()
    }
}

impl AvroRecord for ConfirmMoneyTransfer {
    const FULL_NAME: &'static str = "nl.openweb.data.ConfirmMoneyTransfer";
    const SCHEMA: &'static str = schema_file!("ConfirmMoneyTransfer");
    fn to_value(&self) -> Value {
        record(vec![
            ("id", id_value(&self.id)),
            ("token", Value::String(self.token.clone())),
            ("amount", Value::Long(self.amount)),
            ("from", Value::String(self.from.clone())),
            ("to", Value::String(self.to.clone())),
            ("description", Value::String(self.description.clone())),
        ])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self {
            id: f.id("id")?,
            token: f.string("token")?,
            amount: f.long("amount")?,
            from: f.string("from")?,
            to: f.string("to")?,
            description: f.string("description")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyTransferConfirmed {
    pub id: CommandId,
}

impl AvroRecord for MoneyTransferConfirmed {
    const FULL_NAME: &'static str = "nl.openweb.data.MoneyTransferConfirmed";
    const SCHEMA: &'static str = schema_file!("MoneyTransferConfirmed");
    fn to_value(&self) -> Value {
        record(vec![("id", id_value(&self.id))])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { id: f.id("id")? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyTransferFailed {
    pub id: CommandId,
    pub reason: String,
}

impl AvroRecord for MoneyTransferFailed {
    const FULL_NAME: &'static str = "nl.openweb.data.MoneyTransferFailed";
    const SCHEMA: &'static str = schema_file!("MoneyTransferFailed");
    fn to_value(&self) -> Value {
        record(vec![("id", id_value(&self.id)), ("reason", Value::String(self.reason.clone()))])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self { id: f.id("id")?, reason: f.string("reason")? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChanged {
    pub iban: String,
    pub new_balance: i64,
    pub changed_by: i64,
    pub from_to: String,
    pub description: String,
    /// Added by Open Bank (defaulted, last field): the command that caused the change.
    pub transfer_id: Option<CommandId>,
    /// Added by Open Bank (defaulted to 0, last field): the account's count of balance changes up to and
    /// including this one. A consumer keeps the balance with the highest `seq`; 0 means written before `seq`
    /// existed, with no order known.
    pub seq: i64,
}

impl AvroRecord for BalanceChanged {
    const FULL_NAME: &'static str = "nl.openweb.data.BalanceChanged";
    const SCHEMA: &'static str = schema_file!("BalanceChanged");
    fn to_value(&self) -> Value {
        let transfer_id = match &self.transfer_id {
            Some(id) => Value::Union(1, Box::new(id_value(id))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        record(vec![
            ("iban", Value::String(self.iban.clone())),
            ("new_balance", Value::Long(self.new_balance)),
            ("changed_by", Value::Long(self.changed_by)),
            ("from_to", Value::String(self.from_to.clone())),
            ("description", Value::String(self.description.clone())),
            ("transfer_id", transfer_id),
            ("seq", Value::Long(self.seq)),
        ])
    }
    fn from_value(value: Value) -> Result<Self, RecordError> {
        let mut f = Fields::of(Self::FULL_NAME, value)?;
        Ok(Self {
            iban: f.string("iban")?,
            new_balance: f.long("new_balance")?,
            changed_by: f.long("changed_by")?,
            from_to: f.string("from_to")?,
            description: f.string("description")?,
            transfer_id: f.optional_id("transfer_id")?,
            // Absent when written with a schema from before `seq`.
            seq: if f.has("seq") { f.long("seq")? } else { 0 },
        })
    }
}
