//! One-shot: provisions the stack's Kafka topics and Avro schemas with [`bank_core::provision::sync`] (creates
//! the topics of the wire contract, reconciles existing ones, registers every value schema), then exits. Waits
//! for Kafka and the registry with bounded backoff; a second run changes nothing.

use bank_core::config::CommonArgs;
use bank_core::topics::TOPICS;
use clap::Parser;
use std::time::Duration;

pub use bank_core::provision::Report;

#[derive(Debug, Clone, Parser)]
#[command(name = "synchronizer", about = "Create/reconcile Open Bank topics and register its schemas")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Wanted replication factor; capped at the number of brokers
    #[arg(long, env = "TOPIC_REPLICATION_FACTOR", default_value_t = 3)]
    pub replication_factor: i32,

    /// How long to wait for Kafka and the registry before giving up
    #[arg(long, env = "SYNCHRONIZER_WAIT_SECS", default_value_t = 60)]
    pub wait_secs: u64,
}

pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let wait = Duration::from_secs(config.wait_secs);
    bank_core::provision::sync(
        &config.common.kafka_brokers,
        &config.common.schema_registry_url,
        &config.common.topic_prefix,
        config.replication_factor,
        wait,
        TOPICS,
    )
    .await
}
