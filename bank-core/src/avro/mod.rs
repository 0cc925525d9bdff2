//! The wire contract's Avro records (namespace `nl.openweb.data`). The `.avsc` files in `bank-core/avro/`
//! are the single source of truth; the typed records here convert to and from `apache_avro::types::Value`
//! by field name, so records written with an older schema (without later, defaulted fields) still decode.

mod record;
mod records;

pub use record::{Atype, AvroRecord, RecordError};
pub use records::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CommandId;
    use apache_avro::Schema;
    use apache_avro::types::Value;

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
