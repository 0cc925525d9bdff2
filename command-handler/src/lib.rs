//! Validates commands and applies them to balances in PostgreSQL exactly once.
//!
//! Reads `confirm_money_transfer` and `confirm_account_creation`; writes `money_transfer_confirmed`,
//! `money_transfer_failed`, `balance_changed`, `account_creation_confirmed`, `account_creation_failed` and
//! `dead_letters`. Owns the Postgres schema `bank` (accounts, results, outbox, consumed offsets).
//!
//! Each batch of records is handled in ONE transaction (see [`store`]); the consumed offsets live in that
//! transaction and the consumer seeks to them whenever partitions are assigned, so a crash, a rebalance or a
//! second instance never applies a command twice. Events leave through the outbox (see [`outbox`]).

// A consumer never dies on a record: no unwrap, expect or indexing on outside data outside tests (clippy.toml
// allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod isolate;
pub mod outbox;
pub mod rules;
pub mod store;

use anyhow::Context;
use bank_core::Money;
use bank_core::avro::{ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use clap::Parser;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList as Tpl};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Command, Handler, Incoming, Limits, Topics};
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

pub const MIGRATIONS: &[bank_core::db::Migration] = store::MIGRATIONS;

/// Seeks every assigned partition to the offset stored in Postgres (the source of truth); partitions with no
/// stored offset start from Kafka's committed offset, or the beginning.
pub struct OffsetsContext {
    pool: PgPool,
}

impl ClientContext for OffsetsContext {}

impl ConsumerContext for OffsetsContext {
    fn rebalance(&self, base: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut stored = self.stored_offsets(tpl);
                self.reset_stale(base, &mut stored);
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                for (topic, partition) in &parts {
                    if let Some(next) = stored.get(&(topic.clone(), *partition)) {
                        let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(*next));
                    }
                }
                tracing::info!(partitions = parts.len(), from_postgres = stored.len(), "partitions assigned");
                metrics::counter!("handler_rebalances_total").increment(1);
                if let Err(e) = base.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if let Err(e) = base.unassign() {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = base.unassign();
            }
        }
    }
}

impl OffsetsContext {
    /// A stored offset beyond the end of its partition means the topic was recreated (or its log lost): skipping
    /// to it would silently drop every new command. Start that partition from its beginning instead; commands
    /// seen before are recognised by id and only repeat their stored result.
    fn reset_stale(&self, base: &BaseConsumer<Self>, stored: &mut HashMap<(String, i32), i64>) {
        let mut reset = Vec::new();
        for ((topic, partition), next) in stored.iter_mut() {
            if let Ok((low, high)) = base.fetch_watermarks(topic, *partition, Duration::from_secs(5))
                && *next > high
            {
                tracing::error!(
                    topic,
                    partition,
                    stored = *next,
                    high,
                    "stored offset is beyond the end of the partition (topic recreated?); reading it from the beginning"
                );
                metrics::counter!("handler_stale_offsets_total").increment(1);
                *next = low;
                reset.push((topic.clone(), *partition, low));
            }
        }
        if reset.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let pool = self.pool.clone();
        let update = async move {
            for (topic, partition, low) in reset {
                sqlx::query("UPDATE bank.consumed_offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2")
                    .bind(topic)
                    .bind(partition)
                    .bind(low)
                    .execute(&pool)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Ok(Err(e)) | Err(e) =
            tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(Duration::from_secs(5), update)))
                .map_err(|_| sqlx::Error::PoolTimedOut)
        {
            tracing::error!(error = %e, "could not reset stale stored offsets");
        }
    }

    /// Runs inside librdkafka's rebalance callback, on a runtime worker: block this worker briefly.
    fn stored_offsets(&self, tpl: &TopicPartitionList) -> HashMap<(String, i32), i64> {
        let mut topics: Vec<String> = tpl.elements().iter().map(|e| e.topic().to_owned()).collect();
        topics.sort();
        topics.dedup();
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return HashMap::new() };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            tracing::warn!("not on a multi-threaded runtime; using Kafka's committed offsets");
            return HashMap::new();
        }
        let pool = self.pool.clone();
        let load = async move {
            let mut all = HashMap::new();
            for t in topics {
                for (p, n) in store::stored_offsets(&pool, &t).await? {
                    all.insert((t.clone(), p), n);
                }
            }
            Ok::<_, sqlx::Error>(all)
        };
        match tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(Duration::from_secs(5), load))) {
            Ok(Ok(all)) => all,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read stored offsets; starting from Kafka's committed offsets");
                HashMap::new()
            }
            Err(_) => {
                tracing::warn!("reading stored offsets timed out; starting from Kafka's committed offsets");
                HashMap::new()
            }
        }
    }
}

type HandlerConsumer = StreamConsumer<OffsetsContext>;

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = bank_core::db::connect(&config.database.database_url, config.database.database_max_connections)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    bank_core::db::migrate(&pool, store::SCHEMA, MIGRATIONS).await.context("database migration failed")?;
    store::ensure_company(
        &pool,
        config.company_token.as_deref(),
        Money::from_cents(config.company_opening_cents),
        Money::from_cents(config.default_limit_cents),
    )
    .await
    .context("cannot create the company account")?;

    let prefix = &config.common.topic_prefix;
    let topics = Topics::with_prefix(prefix);
    let brokers = &config.common.kafka_brokers;
    let producer = bank_core::kafka::producer(brokers, "command-handler").context("failed to create producer")?;
    let group = format!("{prefix}{}", config.group);
    let consumer: Arc<HandlerConsumer> = Arc::new(
        bank_core::kafka::consumer_config(brokers, &group, "command-handler")
            .create_with_context(OffsetsContext { pool: pool.clone() })
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
    let lag = tokio::spawn(report_lag(consumer.clone(), shutdown.clone()));
    let handler = Handler::new(pool, codec, topics, config.limits());
    let wait = Duration::from_millis(config.batch_wait_ms);
    let result = consume(&consumer, &handler, config.batch_size as usize, wait, &tx, &shutdown).await;
    drop(tx);
    publishing.await.context("publisher failed")?;
    producer.flush(Duration::from_secs(10)).context("failed to flush events on shutdown")?;
    lag.abort();
    http.await.context("http task failed")??;
    tracing::info!("command-handler stopped");
    result
}

async fn consume(
    consumer: &HandlerConsumer,
    handler: &Handler,
    max: usize,
    wait: Duration,
    outbox: &mpsc::Sender<Vec<store::OutboxRow>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let mut batch: Vec<Incoming> = Vec::with_capacity(max.min(4096));
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        match first {
            Ok(m) => batch.push(read(handler, &m, shutdown).await),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(read(handler, &m, shutdown).await),
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                Err(_) => break,
            }
        }
        if shutdown.is_cancelled()
            && batch.iter().any(|r| matches!(r.command, Command::Poison(ref e) if e == INTERRUPTED))
        {
            return Ok(());
        }

        let started = Instant::now();
        let size = batch.len();
        let (outcome, interrupted) = handler.handle_isolating(batch, shutdown).await;
        if interrupted && outcome.offsets.is_empty() {
            // Nothing of this batch committed; the next run starts at the stored offsets.
            return Ok(());
        }
        metrics::histogram!("handler_batch_size").record(size as f64);
        metrics::histogram!("handler_batch_seconds").record(started.elapsed().as_secs_f64());
        let count = |outcome: &str, n: u64| {
            metrics::counter!("handler_commands_total", "outcome" => outcome.to_owned()).increment(n)
        };
        count("confirmed", outcome.confirmed);
        count("failed", outcome.failed);
        count("replayed", outcome.replayed);
        count("dead_lettered", outcome.dead_lettered);
        count("skipped", outcome.skipped);
        metrics::counter!("handler_accounts_created_total").increment(outcome.accounts_created);
        for (code, n) in &outcome.refusals {
            metrics::counter!("handler_refusals_total", "code" => *code).increment(*n);
        }
        if !outcome.outbox.is_empty() && outbox.send(outcome.outbox).await.is_err() {
            anyhow::bail!("the outbox publisher stopped");
        }
        // Kafka's committed offsets only mirror Postgres (for lag tooling); Postgres decides on assignment.
        let mut tpl = Tpl::new();
        for ((topic, partition), next) in &outcome.offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "mirroring offsets to Kafka failed");
        }
        if interrupted {
            // The rest of this batch did not commit; the next run starts at the stored offsets.
            return Ok(());
        }
    }
}

const INTERRUPTED: &str = "interrupted by shutdown before it could be decoded";

/// Copies a record and decodes it. A registry outage is waited out; anything else undecodable is poison.
async fn read(handler: &Handler, m: &rdkafka::message::BorrowedMessage<'_>, shutdown: &CancellationToken) -> Incoming {
    let topic = m.topic().to_owned();
    let key = m.key().map(<[u8]>::to_vec);
    let payload = m.payload().map(<[u8]>::to_vec);
    let mut backoff = Duration::from_millis(100);
    let command = loop {
        let decoding = async {
            if topic == handler.topics.confirm_money_transfer {
                handler.codec.decode::<ConfirmMoneyTransfer>(payload.as_deref()).await.map(Command::Transfer)
            } else {
                handler.codec.decode::<ConfirmAccountCreation>(payload.as_deref()).await.map(Command::Creation)
            }
        };
        // A decoder that panics on some bytes must not take the handler down: the record is poison.
        let Ok(decoded) = std::panic::AssertUnwindSafe(decoding).catch_unwind().await else {
            break Command::Poison("decoding the record panicked".to_owned());
        };
        match decoded {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                if shutdown.is_cancelled() {
                    break Command::Poison(INTERRUPTED.to_owned());
                }
                tracing::warn!(error = %e, "schema registry unavailable; retrying");
                handler.codec.forget_failures();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => break Command::Poison(e.to_string()),
        }
    };
    Incoming { topic, partition: m.partition(), offset: m.offset(), key, payload, command }
}

/// Publishes consumer lag per assigned partition every few seconds.
async fn report_lag(consumer: Arc<HandlerConsumer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || -> KafkaResult<Vec<(String, i32, i64)>> {
            let positions = c.position()?;
            let mut out = Vec::new();
            for e in positions.elements() {
                let (_, high) = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))?;
                if let Offset::Offset(pos) = e.offset() {
                    out.push((e.topic().to_owned(), e.partition(), (high - pos).max(0)));
                }
            }
            Ok(out)
        })
        .await;
        if let Ok(Ok(lags)) = lags {
            let mut total = 0;
            for (topic, partition, lag) in lags {
                total += lag;
                metrics::gauge!("handler_consumer_lag", "topic" => topic, "partition" => partition.to_string())
                    .set(lag as f64);
            }
            metrics::gauge!("handler_consumer_lag_total").set(total as f64);
        }
    }
}

/// Topics the handler consumes, for tools that inspect its progress.
pub fn command_topics(prefix: &str) -> [String; 2] {
    let t = Topics::with_prefix(prefix);
    [t.confirm_money_transfer, t.confirm_account_creation]
}
