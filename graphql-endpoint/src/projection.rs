//! The projection: one consumer group shared by every gateway instance reads `balance_changed`, the account
//! creation results and the transfer results, and writes them to the `gateway` tables in one transaction per
//! batch (see [`store::project`]). Kafka offsets are committed only after that transaction, and every write is
//! idempotent, so a crash or a rebalance repeats records without adding rows or miscounting.

use crate::live::record_of;
use crate::store::{self, ProjectionBatch};
use bank_core::inbound::Inbound;
use bank_core::kafka::Producer;
use bank_core::kafka::{Source, dead_letter, next_batch};
use bank_core::registry::{Codec, CodecError};
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use bank_core::topics::TopicNames;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::postgres::PgPool;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The topics the projection reads.
fn consumed(t: &TopicNames) -> [&str; 6] {
    [
        &t.balance_changed,
        &t.account_creation_confirmed,
        &t.account_creation_confirmed_manual,
        &t.account_creation_failed,
        &t.money_transfer_confirmed,
        &t.money_transfer_failed,
    ]
}

pub struct Projection {
    pub pool: PgPool,
    pub codec: std::sync::Arc<Codec>,
    pub producer: Producer,
    pub topics: TopicNames,
    pub batch_size: usize,
    pub batch_wait: Duration,
}

impl Projection {
    pub async fn run(self, consumer: StreamConsumer, shutdown: CancellationToken) -> anyhow::Result<()> {
        consumer.subscribe(&consumed(&self.topics))?;
        while let Some(records) = next_batch(&consumer, &shutdown, "projection", self.batch_size, self.batch_wait).await
        {
            let mut entries: Vec<Entry> = Vec::new();
            let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
            let count = records.len();
            for m in &records {
                self.add(&mut entries, m, &shutdown).await?;
                offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            }
            if shutdown.is_cancelled() {
                // Nothing of this batch is written; the group's committed offsets repeat it on the next start.
                return Ok(());
            }
            let started = Instant::now();
            let Some(done) = self.project_isolating(&entries, &shutdown).await? else {
                // Parts may be written; they are idempotent and add nothing when repeated on the next start.
                return Ok(());
            };
            metrics::histogram!("gateway_projection_batch_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("gateway_projection_records_total").increment(count as u64);
            metrics::counter!("gateway_projection_transactions_total").increment(done.transactions as u64);
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
            }
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                // Harmless: the records are projected again after a restart and add nothing.
                tracing::warn!(error = %e, "committing projection offsets failed");
            }
        }
        Ok(())
    }

    /// Decodes one record into the batch. A registry outage is waited out; an undecodable record is dead-lettered.
    async fn add(
        &self,
        entries: &mut Vec<Entry>,
        m: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        loop {
            let mut batch = ProjectionBatch::default();
            match self.decode_into(&mut batch, m).await {
                Ok(()) => {
                    entries.push(Entry {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        batch,
                    });
                    return Ok(());
                }
                Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, "schema registry unavailable; retrying");
                    backoff.sleep().await;
                }
                Err(e) if e.is_transient() => return Ok(()),
                Err(e) => {
                    metrics::counter!("gateway_projection_dead_letters_total").increment(1);
                    tracing::warn!(error = %e, topic = m.topic(), partition = m.partition(), offset = m.offset(), "dead-lettering an undecodable record");
                    dead_letter(&self.producer, &self.topics.dead_letters, Source::of(m), &e.to_string()).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Projects `entries` in one transaction when all goes well. A batch that fails for a reason outside its
    /// records (PostgreSQL unreachable, a deadlock) is retried as a whole as long as it takes; one that fails
    /// because PostgreSQL refuses a value of a record (a data exception or a constraint, SQLSTATE 22xxx/23xxx)
    /// is retried [`RECORD_ATTEMPTS`] times, then split in halves, projected in order, until the failing record is
    /// alone: it is dead-lettered with the error and the rest is projected. `None` when a shutdown interrupted it.
    async fn project_isolating(
        &self,
        entries: &[Entry],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<store::Projected>> {
        let mut total = store::Projected::default();
        let mut queue: VecDeque<Range<usize>> = VecDeque::new();
        queue.push_back(0..entries.len());
        while let Some(range) = queue.pop_front() {
            let Some(part) = entries.get(range.clone()) else { continue };
            let batch = merged(part);
            let mut backoff = Backoff::new(Duration::from_millis(100));
            let mut record_failures = 0;
            loop {
                let e = match store::project(&self.pool, &batch).await {
                    Ok(done) => {
                        total.transactions += done.transactions;
                        total.transfers += done.transfers;
                        total.accounts += done.accounts;
                        total.results += done.results;
                        break;
                    }
                    Err(e) => e,
                };
                let caused_by_record = caused_by_record(&e);
                let reason = if caused_by_record { "record" } else { "unavailable" };
                metrics::counter!("gateway_projection_retries_total", "reason" => reason).increment(1);
                tracing::warn!(error = %e, records = part.len(), reason, "projection batch failed");
                if caused_by_record {
                    record_failures += 1;
                    if record_failures >= RECORD_ATTEMPTS {
                        if let [one] = part {
                            metrics::counter!("gateway_projection_dead_letters_total").increment(1);
                            tracing::error!(error = %e, topic = %one.topic, partition = one.partition, offset = one.offset, "dead-lettering a record that cannot be projected");
                            let error = format!("cannot be projected: {e}");
                            let source = Source {
                                topic: &one.topic,
                                partition: one.partition,
                                offset: one.offset,
                                key: one.key.as_deref(),
                                payload: one.payload.as_deref(),
                            };
                            dead_letter(&self.producer, &self.topics.dead_letters, source, &error).await?;
                        } else {
                            let mid = range.start + range.len() / 2;
                            queue.push_front(mid..range.end);
                            queue.push_front(range.start..mid);
                        }
                        break;
                    }
                }
                if !backoff.sleep_or_cancelled(shutdown).await {
                    return Ok(None);
                }
            }
        }
        Ok(Some(total))
    }

    async fn decode_into(&self, batch: &mut ProjectionBatch, m: &BorrowedMessage<'_>) -> Result<(), CodecError> {
        // The consumer subscribes only to the projected topics; anything else adds nothing.
        let Some(kind) = self.topics.kind_of(m.topic()) else { return Ok(()) };
        match Inbound::decode(&self.codec, kind, m.payload()).await? {
            Inbound::BalanceChanged(b) => batch.balances.push(record_of(b, m)),
            Inbound::AccountCreationConfirmed(a) => {
                batch.accounts_opened.push((a.id.as_uuid(), a.iban, a.token, a.a_type.symbol().to_owned()));
            }
            Inbound::AccountCreationFailed(a) => batch.accounts_refused.push((a.id.as_uuid(), a.reason)),
            Inbound::MoneyTransferConfirmed(r) => batch.results.push((r.id.as_uuid(), true, None)),
            Inbound::MoneyTransferFailed(r) => batch.results.push((r.id.as_uuid(), false, Some(r.reason))),
            Inbound::Heartbeat(_) | Inbound::ConfirmAccountCreation(_) | Inbound::ConfirmMoneyTransfer(_) => {}
        }
        Ok(())
    }
}

/// Attempts of a batch (or part of one) that PostgreSQL refused because of a record, before it is split.
pub const RECORD_ATTEMPTS: u32 = 2;

/// One decoded record with what is needed to dead-letter it.
struct Entry {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// This record alone.
    batch: ProjectionBatch,
}

fn merged(entries: &[Entry]) -> ProjectionBatch {
    let mut b = ProjectionBatch::default();
    for e in entries {
        b.balances.extend(e.batch.balances.iter().cloned());
        b.accounts_opened.extend(e.batch.accounts_opened.iter().cloned());
        b.accounts_refused.extend(e.batch.accounts_refused.iter().cloned());
        b.results.extend(e.batch.results.iter().cloned());
    }
    b
}

/// PostgreSQL refused a value (SQLSTATE class 22, data exception, or 23, integrity constraint): retrying the same
/// records cannot succeed.
fn caused_by_record(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}
