//! Turns heartbeats into a realistic mix of account creations and money transfers.
//!
//! Reads `heartbeat` (consumer group) and `account_creation_confirmed` (all of it, from the beginning, so the
//! accounts it created survive a restart); writes `confirm_account_creation` (keyed by command id) and
//! `confirm_money_transfer` (keyed by the debited account). Owns no table. `/health`, `/ready`, `/metrics`
//! on port 9102.

// A consumer never dies on a record: no unwrap, expect or indexing on outside data outside tests (clippy.toml
// allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod mix;

use anyhow::Context;
use bank_core::avro::{AccountCreationConfirmed, Atype};
use bank_core::config::CommonArgs;
use bank_core::kafka::Producer;
use bank_core::kafka::next_batch;
use bank_core::registry::Codec;
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use bank_core::topics::TopicNames;
use clap::Parser;
use mix::{Generated, Known};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Parser)]
#[command(name = "command-generator", about = "Turn heartbeats into bank commands")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address of the HTTP endpoints (/health, /ready, /metrics)
    #[arg(long, env = "COMMAND_GENERATOR_LISTEN", default_value = bank_core::ports::COMMAND_GENERATOR_LISTEN)]
    pub listen: SocketAddr,

    /// Seed of the command mix: the same seed and heartbeats give the same commands
    #[arg(long, env = "GENERATOR_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Token of the company account (pays salaries); without it no salaries are generated
    #[arg(long, env = "COMPANY_ACCOUNT_TOKEN", hide_env_values = true)]
    pub company_token: Option<String>,

    /// Where a new consumer group starts on `heartbeat`: `latest` (beats from before the generator existed are
    /// skipped) or `earliest`
    #[arg(long, env = "GENERATOR_START_FROM", default_value = "latest", value_parser = ["latest", "earliest"])]
    pub start_from: String,

    /// Consumer group for heartbeats (the topic prefix is put in front)
    #[arg(long, env = "COMMAND_GENERATOR_GROUP", default_value = "command-generator")]
    pub group: String,
}

/// Accounts of type AUTO confirmed so far.
#[derive(Default)]
struct Accounts {
    list: Vec<Known>,
    seen: HashSet<String>,
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let p = &config.common.topic_prefix;
    let t = TopicNames::with_prefix(p);
    let brokers = &config.common.kafka();
    let producer = bank_core::kafka::producer(brokers, "command-generator").context("failed to create producer")?;
    let codec =
        Arc::new(Codec::new(&config.common.schema_registry_url).context("failed to create the registry codec")?);
    if config.company_token.is_none() {
        tracing::warn!("COMPANY_ACCOUNT_TOKEN is not set: no salaries will be generated");
    }

    let ready = bank_core::kafka::ready_check(&producer);
    let router = bank_core::http::probe_routes(ready, bank_core::telemetry::metrics());
    tracing::info!(addr = %listener.local_addr()?, seed = config.seed, "command-generator listening");
    let http = tokio::spawn(bank_core::http::serve(listener, router, shutdown.clone()));

    // Known accounts: everything on account_creation_confirmed, then live updates.
    let accounts = Arc::new(RwLock::new(Accounts::default()));
    let (caught_up_tx, mut caught_up) = watch::channel(false);
    let loader = {
        let consumer: StreamConsumer =
            bank_core::kafka::consumer(brokers, &format!("{p}command-generator-accounts"), "command-generator")?;
        let Some(highs) = watermarks(&consumer, &t.account_creation_confirmed, &shutdown).await? else {
            http.await.context("http task failed")??;
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for p in highs.keys() {
            tpl.add_partition_offset(&t.account_creation_confirmed, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl).context("cannot read account_creation_confirmed")?;
        tokio::spawn(follow_accounts(consumer, codec.clone(), accounts.clone(), highs, caught_up_tx, shutdown.clone()))
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        r = caught_up.wait_for(|c| *c) => { r.context("account loader stopped")?; }
    }
    tracing::info!(
        accounts = accounts.read().unwrap_or_else(PoisonError::into_inner).list.len(),
        "known accounts loaded"
    );

    let consumer: StreamConsumer =
        bank_core::kafka::consumer_config(brokers, &format!("{p}{}", config.group), "command-generator")
            .set("auto.offset.reset", &config.start_from)
            .create()?;
    consumer.subscribe(&[&t.heartbeat]).context("cannot subscribe to heartbeat")?;
    let result = generate(&config, &t, &consumer, &producer, &codec, &accounts, &shutdown).await;
    // Bounded so that the process stops within 2 s of SIGTERM; commands not flushed are generated again from
    // the same heartbeats (their offsets were not committed), with the same ids.
    if let Err(e) = producer.flush(Duration::from_secs(1)) {
        tracing::warn!(error = %e, "commands not flushed on shutdown; they are generated again on restart");
    }
    loader.abort();
    http.await.context("http task failed")??;
    result
}

/// The partitions' high watermarks, retried while Kafka or the topic is not there yet; `None` on shutdown.
async fn watermarks(
    consumer: &StreamConsumer,
    topic: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<HashMap<i32, i64>>> {
    let mut backoff = Backoff::new(Duration::from_millis(200));
    let mut attempts = 0;
    loop {
        match try_watermarks(consumer, topic) {
            Ok(found) => return Ok(Some(found)),
            Err(e) if attempts < 60 => {
                attempts += 1;
                tracing::warn!(topic, error = %e, "cannot read the topic's offsets yet (is Kafka up, has the synchronizer run?); retrying");
                if !backoff.sleep_or_cancelled(shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_watermarks(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    // Short: this blocks the task, and a shutdown must not wait for it.
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(1))?;
    let parts: Vec<i32> =
        md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    anyhow::ensure!(!parts.is_empty(), "topic {topic} does not exist");
    let mut out = HashMap::new();
    for p in parts {
        out.insert(p, consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?.1);
    }
    Ok(out)
}

async fn follow_accounts(
    consumer: StreamConsumer,
    codec: Arc<Codec>,
    accounts: Arc<RwLock<Accounts>>,
    highs: HashMap<i32, i64>,
    caught_up: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut behind: HashMap<i32, i64> = highs.into_iter().filter(|(_, h)| *h > 0).collect();
    if behind.is_empty() {
        let _ = caught_up.send(true);
    }
    loop {
        let Some(m) = bank_core::kafka::next_record(&consumer, &shutdown, "account_creation_confirmed").await else {
            return;
        };
        match codec.decode::<AccountCreationConfirmed>(m.payload()).await {
            Ok(a) if a.a_type == Atype::Auto => {
                let mut acc = accounts.write().unwrap_or_else(PoisonError::into_inner);
                if acc.seen.insert(a.iban.clone()) {
                    acc.list.push(Known { iban: a.iban, token: a.token });
                    metrics::gauge!("generator_known_accounts").set(acc.list.len() as f64);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, offset = m.offset(), "skipping an undecodable account confirmation"),
        }
        if behind.get(&m.partition()).is_some_and(|h| m.offset() + 1 >= *h) {
            behind.remove(&m.partition());
            if behind.is_empty() {
                let _ = caught_up.send(true);
            }
        }
    }
}

async fn generate(
    config: &Config,
    t: &TopicNames,
    consumer: &StreamConsumer,
    producer: &Producer,
    codec: &Codec,
    accounts: &RwLock<Accounts>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let Some(batch) = next_batch(consumer, shutdown, "heartbeat", 2000, Duration::from_millis(5)).await else {
            return Ok(());
        };
        let beats: Vec<_> = batch.iter().map(|m| m.detach()).collect();
        drop(batch);
        let mut commands = Vec::with_capacity(beats.len());
        {
            let acc = accounts.read().unwrap_or_else(PoisonError::into_inner);
            for m in &beats {
                if let Err(e) = codec_check(m.payload()) {
                    tracing::warn!(error = %e, offset = m.offset(), "skipping a malformed heartbeat");
                    continue;
                }
                // The position on the topic, not the beat number: heartbeat restarts its count, offsets never repeat
                // on one topic. The record's timestamp tells a recreated topic's records from the old one's.
                let beat = u64::try_from(m.offset()).unwrap_or(0);
                let written = m.timestamp().to_millis().and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
                let company = config.company_token.as_deref();
                commands.push(mix::command(config.seed, written, beat, &acc.list, company));
            }
        }
        let mut deliveries = Vec::with_capacity(commands.len());
        for g in &commands {
            let (topic, payload) = match g {
                Generated::Creation(c) => {
                    (&t.confirm_account_creation, codec.encode(&t.confirm_account_creation, c).await)
                }
                Generated::Transfer(c) => (&t.confirm_money_transfer, codec.encode(&t.confirm_money_transfer, c).await),
            };
            let payload = payload.context("failed to encode a command")?;
            let key = g.key();
            loop {
                let record: FutureRecord<'_, str, [u8]> =
                    FutureRecord::to(topic).key(key.as_str()).payload(payload.as_slice());
                match producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err(_) if shutdown.is_cancelled() => return Ok(()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            metrics::counter!(bank_core::metric_names::GENERATOR_COMMANDS, "kind" => g.kind()).increment(1);
        }
        let delivered = tokio::select! {
            // Not committed: the heartbeats are read again after a restart and yield the same command ids.
            () = shutdown.cancelled() => return Ok(()),
            d = futures::future::join_all(deliveries) => d,
        };
        let failed = delivered.iter().filter(|d| !matches!(d, Ok(Ok(_)))).count();
        if failed > 0 {
            // Do not commit: the heartbeats are read again and yield the same command ids.
            metrics::counter!("generator_delivery_errors_total").increment(failed as u64);
            anyhow::bail!("{failed} commands could not be delivered");
        }
        let mut next: HashMap<i32, i64> = HashMap::new();
        for m in &beats {
            let e = next.entry(m.partition()).or_default();
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(&t.heartbeat, partition, Offset::Offset(offset))?;
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "committing heartbeat offsets failed");
        }
    }
}

/// A heartbeat only needs to be a record; its content is not used beyond that.
fn codec_check(payload: Option<&[u8]>) -> Result<(), &'static str> {
    match payload {
        Some(p) if p.len() > 5 && p.first() == Some(&0) => Ok(()),
        _ => Err("not a Confluent wire-format record"),
    }
}
