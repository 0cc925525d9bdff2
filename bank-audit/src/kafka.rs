//! Reading the bank's topics without blocking the runtime: metadata and watermarks of a topic are fetched in
//! one blocking task per topic, records are read with an async consumer.

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

const GROUP: &str = "open-bank-audit";

/// How long reading a topic may go without a record before it is given up.
const STALL: Duration = Duration::from_secs(30);

/// A partition and its low and high watermarks.
#[derive(Debug, Clone, Copy)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// A record's partition, offset and payload.
pub type Located = (i32, i64, Option<Vec<u8>>);

/// Every partition of `topic` with its watermarks. A transient failure (a broker connection lost, a leader
/// moving) is tried again, up to five times a second apart.
pub async fn watermarks(brokers: &bank_core::kafka::Brokers, topic: &str) -> anyhow::Result<Vec<Watermarks>> {
    let mut attempts = 0;
    loop {
        match watermarks_once(brokers, topic).await {
            Err(e)
                if attempts < 5
                    && e.downcast_ref::<rdkafka::error::KafkaError>().is_some_and(bank_core::kafka::is_transient) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            done => return done,
        }
    }
}

async fn watermarks_once(brokers: &bank_core::kafka::Brokers, topic: &str) -> anyhow::Result<Vec<Watermarks>> {
    let (brokers, topic) = (brokers.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Watermarks>> {
        let c: BaseConsumer = bank_core::kafka::consumer_config(&brokers, GROUP, GROUP).create()?;
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).context("kafka metadata")?;
        // A topic this principal may not describe (or that is not there) is an error, never an empty topic.
        if let Some(e) = md.topics().iter().find_map(|t| t.error()) {
            anyhow::bail!("cannot read {topic}: {}", rdkafka::types::RDKafkaErrorCode::from(e));
        }
        let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = c.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
                Ok(Watermarks { partition, low, high })
            })
            .collect()
    })
    .await
    .context("reading watermarks panicked")?
}

/// Payloads of `topic` from the beginning up to (not including) the offset in `until` per partition.
pub async fn read_until(
    brokers: &bank_core::kafka::Brokers,
    topic: &str,
    until: &HashMap<i32, i64>,
) -> anyhow::Result<Vec<Located>> {
    let mut tpl = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for w in watermarks(brokers, topic).await? {
        let end = until.get(&w.partition).copied().unwrap_or(0);
        if end > w.low {
            tpl.add_partition_offset(topic, w.partition, Offset::Beginning)?;
            remaining.insert(w.partition, end);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    let c: StreamConsumer = bank_core::kafka::consumer_config(brokers, GROUP, GROUP).create()?;
    c.assign(&tpl)?;
    let mut idle_until = tokio::time::Instant::now() + STALL;
    // A broker connection lost or a leader moving (a broker restarted shortly before) is carried on from: librdkafka
    // reconnects. The stall deadline still bounds it.
    let mut last_transient: Option<String> = None;
    while !remaining.is_empty() {
        let m = match tokio::time::timeout_at(idle_until, c.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if bank_core::kafka::is_transient(&e) => {
                last_transient = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            Err(_) => match last_transient {
                Some(e) => anyhow::bail!(
                    "reading {topic} stalled with partitions {:?} unread; the last error: {e}",
                    remaining.keys().collect::<Vec<_>>()
                ),
                None => anyhow::bail!(
                    "reading {topic} stalled with partitions {:?} unread: their handled offsets are beyond what Kafka holds (was the topic recreated while the database was kept?)",
                    remaining.keys().collect::<Vec<_>>()
                ),
            },
        };
        if let Some(end) = remaining.get(&m.partition()).copied() {
            idle_until = tokio::time::Instant::now() + STALL;
            if m.offset() < end {
                out.push((m.partition(), m.offset(), m.payload().map(<[u8]>::to_vec)));
            }
            if m.offset() + 1 >= end {
                remaining.remove(&m.partition());
            }
        }
    }
    Ok(out)
}
