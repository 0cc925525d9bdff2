//! Validates commands and applies them to balances in PostgreSQL exactly once.
//!
//! Reads `confirm_money_transfer` and `confirm_account_creation`; writes `money_transfer_confirmed`,
//! `money_transfer_failed`, `balance_changed`, `account_creation_confirmed`, `account_creation_failed` and
//! `dead_letters`. Owns the Postgres schema `bank` (accounts, results, outbox, consumed offsets).
//!
//! Each batch of records is handled in ONE transaction (see [`handler`], which plans it with [`plan`], writes it
//! with [`apply`] and [`events`], and advances [`offsets`]; the types every phase shares are in [`batch`]); the consumed offsets live in that
//! transaction and the consumer seeks to them whenever partitions are assigned, so a crash, a rebalance or a
//! second instance never applies a command twice. Events leave through the outbox (see [`outbox`]).

// A consumer never dies on a record: no unwrap, expect or indexing on outside data outside tests (clippy.toml
// allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod apply;
pub mod batch;
pub mod consume;
pub mod events;
pub mod handler;
pub mod isolate;
pub mod offsets;
pub mod outbox;
pub mod plan;
pub mod rules;

use anyhow::Context;
use bank_core::Money;
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use batch::Limits;
use clap::Parser;
use handler::{Handler, Topics};
use rdkafka::consumer::Consumer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Parser)]
#[command(name = "command-handler", about = "Apply commands to balances exactly once")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address of the HTTP endpoints (/health, /ready, /metrics)
    #[arg(long, env = "COMMAND_HANDLER_LISTEN", default_value = bank_core::ports::COMMAND_HANDLER_LISTEN)]
    pub listen: SocketAddr,

    /// Most commands handled in one database transaction
    #[arg(long, env = "COMMAND_HANDLER_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// Longest wait for more commands once a batch has its first, in milliseconds
    #[arg(long, env = "COMMAND_HANDLER_BATCH_WAIT_MS", default_value_t = 2)]
    pub batch_wait_ms: u64,

    /// Consumer group (the topic prefix is put in front)
    #[arg(long, env = "COMMAND_HANDLER_GROUP", default_value = "command-handler")]
    pub group: String,

    /// Largest amount of one transfer, in cents
    #[arg(long, env = "MAX_TRANSFER_CENTS", default_value_t = 100_000_000)]
    pub max_transfer_cents: i64,

    /// Limit of new accounts (lowest allowed balance), in cents
    #[arg(long, env = "DEFAULT_LIMIT_CENTS", default_value_t = -50_000, allow_negative_numbers = true)]
    pub default_limit_cents: i64,

    /// Token of the company account NL66OPEN0000000000 (it pays salaries); random if unset
    #[arg(long, env = "COMPANY_ACCOUNT_TOKEN", hide_env_values = true)]
    pub company_token: Option<String>,

    /// Opening balance of the company account when it is first created, in cents
    #[arg(long, env = "COMPANY_OPENING_BALANCE_CENTS", default_value_t = 100_000_000_000)]
    pub company_opening_cents: i64,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_transfer: Money::from_cents(self.max_transfer_cents),
            default_limit: Money::from_cents(self.default_limit_cents),
        }
    }
}

pub const MIGRATIONS: &[bank_core::db::Migration] = handler::MIGRATIONS;

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = bank_core::db::connect(&config.database.database_url, config.database.database_max_connections)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    bank_core::db::migrate(&pool, handler::SCHEMA, MIGRATIONS).await.context("database migration failed")?;
    apply::ensure_company(
        &pool,
        config.company_token.as_deref(),
        Money::from_cents(config.company_opening_cents),
        Money::from_cents(config.default_limit_cents),
    )
    .await
    .context("cannot create the company account")?;

    let prefix = &config.common.topic_prefix;
    let topics = Topics::with_prefix(prefix);
    let brokers = &config.common.kafka();
    let producer = bank_core::kafka::producer(brokers, "command-handler").context("failed to create producer")?;
    let group = format!("{prefix}{}", config.group);
    let consumer: Arc<consume::HandlerConsumer> = Arc::new(
        bank_core::kafka::consumer_config(brokers, &group, "command-handler")
            .create_with_context(offsets::OffsetsContext { pool: pool.clone() })
            .context("failed to create consumer")?,
    );
    let codec = Codec::new(&config.common.schema_registry_url).context("failed to create the registry codec")?;

    let ready_pool = pool.clone();
    let ready_producer = producer.clone();
    let ready: bank_core::http::ReadyCheck = Arc::new(move || {
        let pool = ready_pool.clone();
        let p = ready_producer.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&pool).await.map_err(|_| "postgres unreachable".to_owned())?;
            bank_core::kafka::reachable(&p).await
        })
    });
    let router = bank_core::http::probe_routes(ready, bank_core::telemetry::metrics());
    tracing::info!(addr = %listener.local_addr()?, group = %group, batch_size = config.batch_size, "command-handler listening");
    let http = tokio::spawn(bank_core::http::serve(listener, router, shutdown.clone()));

    let publisher = outbox::Publisher { pool: pool.clone(), producer: producer.clone() };
    publisher.drain(&shutdown).await.context("cannot publish the outbox")?;
    let (tx, rx) = mpsc::channel(256);
    let publishing = tokio::spawn(publisher.run(rx, shutdown.clone()));

    consumer
        .subscribe(&[&topics.confirm_money_transfer, &topics.confirm_account_creation])
        .context("cannot subscribe")?;
    let lag = tokio::spawn(consume::report_lag(consumer.clone(), shutdown.clone()));
    let handler = Handler::new(pool, codec, topics, config.limits());
    let wait = Duration::from_millis(config.batch_wait_ms);
    let result = consume::consume(&consumer, &handler, config.batch_size as usize, wait, &tx, &shutdown).await;
    drop(tx);
    publishing.await.context("publisher failed")?;
    producer.flush(Duration::from_secs(10)).context("failed to flush events on shutdown")?;
    lag.abort();
    http.await.context("http task failed")??;
    tracing::info!("command-handler stopped");
    result
}

/// Topics the handler consumes, for tools that inspect its progress.
pub fn command_topics(prefix: &str) -> [String; 2] {
    let t = Topics::with_prefix(prefix);
    [t.confirm_money_transfer, t.confirm_account_creation]
}
