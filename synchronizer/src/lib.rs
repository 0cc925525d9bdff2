//! One-shot: provisions the stack's Kafka topics and Avro schemas with [`bank_core::provision::sync`] (creates
//! the topics of the wire contract, reconciles existing ones, registers every value schema) and, with
//! `--kafka-acls`, every service principal's ACLs ([`bank_core::principals`]), then exits. Waits for Kafka and the
//! registry with bounded backoff; a second run changes nothing.

use anyhow::Context;
use bank_core::config::CommonArgs;
use bank_core::kafka::Brokers;
use bank_core::kafka_wire::{Acl, Connection};
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

    /// Also create every service principal's Kafka ACLs (needs the super user's credentials; `cargo xtask up` and
    /// docker-compose.yml set it)
    #[arg(long, env = "SYNCHRONIZER_KAFKA_ACLS", default_value_t = false)]
    pub kafka_acls: bool,
}

pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let wait = Duration::from_secs(config.wait_secs);
    let brokers = config.common.kafka();
    let mut report = bank_core::provision::sync(
        &brokers,
        &config.common.schema_registry_url,
        &config.common.topic_prefix,
        config.replication_factor,
        wait,
        TOPICS,
    )
    .await?;
    if config.kafka_acls {
        let acls = bank_core::principals::acls(&config.common.topic_prefix);
        report.acls = acls.len();
        create_acls(brokers, acls).await?;
    }
    Ok(report)
}

/// Creates the ACLs through the first broker that takes them (an existing ACL is no error).
async fn create_acls(brokers: Brokers, acls: Vec<Acl>) -> anyhow::Result<()> {
    let credentials =
        brokers.credentials.clone().context("--kafka-acls needs the super user's KAFKA_SASL_USERNAME and password")?;
    tokio::task::spawn_blocking(move || {
        let mut last = None;
        for server in brokers.servers.split(',') {
            match Connection::open(server.trim(), Some(&credentials), Duration::from_secs(10))
                .and_then(|mut c| c.create_acls(&acls))
            {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e.context(format!("ACLs through {server}"))),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no broker to create the ACLs through")))
    })
    .await?
}
