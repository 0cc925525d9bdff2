//! Open Bank's shared core: domain types (`Iban`, `Money`, `AccountToken`, `CommandId`), the wire contract
//! (every topic in [`topics::TOPICS`], the Avro records in [`avro`] whose `.avsc` files live in `bank-core/avro/`),
//! Kafka client builders and the plumbing every consumer shares ([`kafka::next_batch`] gathers a batch,
//! [`kafka::dead_letter`] sets a record aside with its source in headers, [`retry::Backoff`] paces every retry,
//! [`inbound::Inbound`] types a record by its topic), schema-registry encoding, shared config, telemetry, the shutdown token, the
//! `/health` `/ready` `/metrics` HTTP helper, Postgres migrations and the table of the local stack's ports
//! ([`ports`]).
//!
//! Reads and writes no topic or table itself; services do, through these building blocks.

// Outside input (records, HTTP bodies, registry answers) must never panic this crate: no unwrap, expect or
// indexing outside tests (clippy.toml allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod avro;
pub mod config;
pub mod db;
pub mod http;
pub mod iban;
pub mod ids;
pub mod inbound;
pub mod kafka;
pub mod money;
pub mod ports;
pub mod provision;
pub mod redact;
pub mod refusal;
pub mod registry;
pub mod retry;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod token;
pub mod topics;

pub use iban::{CASH, COMPANY_IBAN, Iban, IbanError};
pub use ids::CommandId;
pub use money::{Money, MoneyError};
pub use token::AccountToken;
