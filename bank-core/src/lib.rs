//! Open Bank's shared core: domain types (`Iban`, `Money`, `AccountToken`, `CommandId`), the wire contract
//! (every topic in [`topics::TOPICS`], the Avro records in [`avro`] whose `.avsc` files live in `bank-core/avro/`),
//! Kafka client builders (the services' producer, [`kafka::Producer`], is made again when librdkafka's instance
//! fails for good) and the plumbing every consumer shares ([`kafka::next_batch`] gathers a batch,
//! [`kafka::dead_letter`] sets a record aside with its source in headers, [`retry::Backoff`] paces every retry,
//! [`inbound::Inbound`] types a record by its topic), topic and schema provisioning ([`provision::sync`]),
//! schema-registry encoding, shared config, telemetry, the shutdown token, the `/health` `/ready` `/metrics` HTTP
//! helper, Postgres migrations, the poison-isolation engine every batch consumer runs ([`isolate::isolate`]) and the table of the local stack's ports ([`ports`]).
//!
//! The names of the metrics one service writes and another reads are in [`metric_names`].
//!
//! Features, none on by default: `results` (the `run.json` document of a load-test run), `kafka` (the wire contract, Kafka and registry clients, provisioning), `db`
//! (Postgres pools and migrations), `http` (probes and the Prometheus recorder), `testsuite` (helpers for
//! integration tests; dev-dependencies only). Without features it holds the domain types, config, ports,
//! logging, shutdown and retry, the topic names, who may do what on Kafka ([`principals`]) and the few Kafka
//! requests sent by hand ([`kafka_wire`]: SCRAM login, broker count, CreateAcls), which xtask uses too.
//!
//! Reads and writes no topic or table itself; services do, through these building blocks.

// Outside input (records, HTTP bodies, registry answers) must never panic this crate: no unwrap, expect or
// indexing outside tests (clippy.toml allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "kafka")]
pub mod avro;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod http;
pub mod iban;
pub mod ids;
#[cfg(feature = "kafka")]
pub mod inbound;
#[cfg(feature = "db")]
pub mod isolate;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_wire;
#[cfg(feature = "results")]
pub mod load_test_run;
pub mod metric_names;
pub mod money;
pub mod movement;
pub mod ports;
pub mod principals;
#[cfg(feature = "kafka")]
pub mod producer;
#[cfg(feature = "kafka")]
pub mod provision;
pub mod redact;
pub mod refusal;
#[cfg(feature = "kafka")]
pub mod registry;
pub mod retry;
pub mod rng;
pub mod shutdown;
pub mod stack_env;
pub mod telemetry;
#[cfg(feature = "testsuite")]
pub mod testing;
pub mod token;
pub mod topics;

pub use iban::{CASH, COMPANY_IBAN, Iban, IbanError};
pub use ids::CommandId;
pub use money::{Money, MoneyError};
pub use token::AccountToken;
