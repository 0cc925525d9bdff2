//! What happens now, per instance: one Kafka consumer reads every partition of `balance_changed` from the end
//! and fans the records out to this instance's subscribers, and counts confirmed transfers per second. (The
//! results of gateway transfers and account creations arrive through Postgres instead: see [`crate::results`].)

use crate::fanout::Fanout;
use crate::limits::SUBSCRIBER_BUFFER;
use crate::lock::lock;
use crate::store::BalanceRecord;
use bank_core::avro::BalanceChanged;
use bank_core::clock::{unix_millis, unix_secs};
use bank_core::registry::Codec;
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Hub {
    /// Balance changes by IBAN
    pub transactions: Fanout<String, BalanceRecord>,
    rate: Mutex<VecDeque<(u64, u64)>>,
    /// (received at, delay) in milliseconds of the newest balance changes, at most [`MAX_DELAYS`].
    delays: Mutex<VecDeque<(i64, u64)>>,
    live_assigned: AtomicBool,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            transactions: Fanout::new(SUBSCRIBER_BUFFER),
            rate: Mutex::default(),
            delays: Mutex::default(),
            live_assigned: AtomicBool::new(false),
        }
    }
}

const RATE_WINDOW_SECS: u64 = 10;
/// Delays of balance changes kept for the pipeline view, and for how long.
const MAX_DELAYS: usize = 1024;
const DELAY_WINDOW_MS: i64 = 60_000;

impl Hub {
    /// The Kafka consumer has its partitions.
    pub fn ready(&self) -> Result<(), String> {
        if !self.live_assigned.load(Ordering::Relaxed) {
            return Err("live consumer not assigned yet".into());
        }
        Ok(())
    }

    fn count_transfer(&self, now_sec: u64) {
        let mut rate = lock(&self.rate);
        match rate.back_mut() {
            Some((sec, n)) if *sec == now_sec => *n += 1,
            _ => rate.push_back((now_sec, 1)),
        }
        while rate.front().is_some_and(|(sec, _)| *sec + RATE_WINDOW_SECS < now_sec) {
            rate.pop_front();
        }
    }

    /// Confirmed transfers per second over the last ten whole seconds, as seen on `balance_changed`.
    pub fn transfers_per_second(&self) -> f64 {
        let now = unix_secs();
        let rate = lock(&self.rate);
        let n: u64 = rate.iter().filter(|(sec, _)| *sec < now && *sec + RATE_WINDOW_SECS >= now).map(|(_, n)| n).sum();
        n as f64 / RATE_WINDOW_SECS as f64
    }

    /// Notes how long a balance change took from its Kafka timestamp (`stamp_ms`) to its arrival (`now_ms`).
    pub fn note_delay(&self, stamp_ms: i64, now_ms: i64) {
        let delay = u64::try_from(now_ms.saturating_sub(stamp_ms)).unwrap_or(0);
        let mut delays = lock(&self.delays);
        delays.push_back((now_ms, delay));
        while delays.len() > MAX_DELAYS {
            delays.pop_front();
        }
    }

    /// Delays (ms) of the newest balance changes: the last minute's, at most [`MAX_DELAYS`].
    pub fn recent_delays(&self) -> Vec<u64> {
        let since = unix_millis().saturating_sub(DELAY_WINDOW_MS);
        lock(&self.delays).iter().filter(|(at, _)| *at >= since).map(|(_, d)| *d).collect()
    }
}

/// A confirmed transfer shows once on `balance_changed`: as its debit, or as its credit when paid in cash.
pub fn counts_as_transfer(changed_by: i64, from_to: &str) -> bool {
    changed_by < 0 || from_to == bank_core::CASH
}

pub fn decode_time(m: &impl Message) -> chrono::DateTime<chrono::Utc> {
    m.timestamp().to_millis().and_then(chrono::DateTime::from_timestamp_millis).unwrap_or_else(chrono::Utc::now)
}

/// `text` as PostgreSQL can store it: a NUL byte (valid UTF-8, refused by PostgreSQL's text type) becomes U+FFFD.
/// The gateway refuses such descriptions itself; a record produced by anyone else is still projected whole.
pub fn storable(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text }
}

pub fn record_of(b: BalanceChanged, m: &impl Message) -> BalanceRecord {
    BalanceRecord {
        transfer_id: b.transfer_id.map(|i| i.as_uuid()),
        iban: b.iban,
        new_balance: b.new_balance,
        changed_by: b.changed_by,
        from_to: storable(b.from_to),
        description: storable(b.description),
        at: decode_time(m),
        partition: m.partition(),
        offset: m.offset(),
        account_seq: b.seq,
    }
}

/// Reads `topic` from the end of every partition and broadcasts each balance change.
pub async fn run_transactions(
    hub: Arc<Hub>,
    consumer: StreamConsumer,
    codec: Arc<Codec>,
    topic: String,
    shutdown: CancellationToken,
) {
    let consumer = Arc::new(consumer);
    let mut backoff = Backoff::new(Duration::from_millis(200));
    loop {
        let c = consumer.clone();
        let t = topic.clone();
        let assigned = tokio::task::spawn_blocking(move || assign_at_end(&c, &t)).await;
        match assigned {
            Ok(Ok(n)) => {
                tracing::info!(partitions = n, topic = %topic, "live feed assigned at the end of every partition");
                break;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot assign the live feed yet; retrying"),
            Err(e) => tracing::warn!(error = %e, "assigning the live feed failed; retrying"),
        }
        if !backoff.sleep_or_cancelled(&shutdown).await {
            return;
        }
    }
    hub.live_assigned.store(true, Ordering::Relaxed);
    while let Some(m) = bank_core::kafka::next_record(consumer.as_ref(), &shutdown, "live feed").await {
        match codec.decode::<BalanceChanged>(m.payload()).await {
            Ok(b) => {
                let record = record_of(b, &m);
                if let Some(stamp) = m.timestamp().to_millis() {
                    hub.note_delay(stamp, unix_millis());
                }
                if counts_as_transfer(record.changed_by, &record.from_to) {
                    hub.count_transfer(unix_secs());
                }
                metrics::counter!("gateway_live_events_total").increment(1);
                // No subscriber is not an error.
                let iban = record.iban.clone();
                hub.transactions.publish(&iban, record);
            }
            Err(e) => {
                metrics::counter!("gateway_live_undecodable_total").increment(1);
                tracing::warn!(error = %e, partition = m.partition(), offset = m.offset(), "live feed skips an undecodable record");
            }
        }
    }
}

fn assign_at_end(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<usize> {
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} has no partitions (not provisioned yet?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        // An explicit offset: records produced between now and the first fetch are not skipped.
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        tpl.add_partition_offset(topic, *p, Offset::Offset(high))?;
    }
    consumer.assign(&tpl)?;
    Ok(partitions.len())
}
