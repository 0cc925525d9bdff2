//! The decode path of every consumer, from arbitrary bytes. The first byte picks one of the eight record types
//! of the contract; the rest is a Kafka record's value in the Confluent wire format. Its 5-byte header is read
//! by the registry codec's own parser (`split_header`); the Avro body after it is decoded with that record's
//! schema (as the codec does once the registry has answered with it) and typed by `AvroRecord::from_value`.
//!
//! Invariants: nothing panics; the header parser reads exactly `0x00` + a big-endian id; `from_value` accepts a
//! decoded value exactly when it matches the record's schema; a typed record encodes with its schema and decodes
//! back to itself.
#![no_main]

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use bank_core::registry::split_header;
use bank_core::avro::{
    ALL_SCHEMAS, AccountCreationConfirmed, AccountCreationFailed, AvroRecord, BalanceChanged, ConfirmAccountCreation,
    ConfirmMoneyTransfer, Heartbeat, MoneyTransferConfirmed, MoneyTransferFailed,
};
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;
use std::sync::LazyLock;

static SCHEMAS: LazyLock<Vec<Schema>> = LazyLock::new(|| {
    ALL_SCHEMAS.iter().map(|(name, text)| Schema::parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))).collect()
});

fn schema_of<R: AvroRecord>() -> &'static Schema {
    let i = ALL_SCHEMAS.iter().position(|(name, _)| *name == R::FULL_NAME).expect("every record is in ALL_SCHEMAS");
    &SCHEMAS[i]
}

fn decode(schema: &Schema, mut body: &[u8]) -> Option<apache_avro::types::Value> {
    GenericDatumReader::builder(schema).build().expect("the contract's schemas resolve").read_value(&mut body).ok()
}

fn check<R: AvroRecord + PartialEq + Debug>(body: &[u8]) {
    let schema = schema_of::<R>();
    let Some(value) = decode(schema, body) else { return };
    // apache-avro decodes a string cut short by the end of the record as `Null` instead of failing: such a value
    // does not match the schema, and `from_value` must refuse exactly those.
    let record = match (R::from_value(value.clone()), value.validate(schema)) {
        (Ok(record), true) => record,
        (Err(_), false) => return,
        (Ok(record), false) => panic!("{} accepted {value:?}, which its schema does not: {record:?}", R::FULL_NAME),
        (Err(e), true) => panic!("{} refused {value:?}, which its schema accepts: {e}", R::FULL_NAME),
    };
    let bytes = GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(record.to_value()))
        .unwrap_or_else(|e| panic!("{record:?} does not encode with its own schema: {e}"));
    let again = decode(schema, &bytes).unwrap_or_else(|| panic!("{record:?} encoded but does not decode"));
    assert_eq!(R::from_value(again).as_ref(), Ok(&record), "round trip of {}", R::FULL_NAME);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let body = match split_header(payload) {
        Some((id, body)) => {
            assert!(payload.len() >= 5 && payload[0] == 0, "header accepted from {payload:?}");
            assert_eq!(id, u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]));
            assert_eq!(body, &payload[5..]);
            body
        }
        None => {
            assert!(payload.len() < 5 || payload[0] != 0, "header refused from {payload:?}");
            // The services dead-letter such a record; the body is still decoded below, as if its header were valid.
            payload
        }
    };
    match which % 8 {
        0 => check::<Heartbeat>(body),
        1 => check::<ConfirmAccountCreation>(body),
        2 => check::<AccountCreationConfirmed>(body),
        3 => check::<AccountCreationFailed>(body),
        4 => check::<ConfirmMoneyTransfer>(body),
        5 => check::<MoneyTransferConfirmed>(body),
        6 => check::<MoneyTransferFailed>(body),
        _ => check::<BalanceChanged>(body),
    }
});
