//! The projection: one consumer group shared by every gateway instance reads `balance_changed`, the account
//! creation results and the transfer results, and writes them to the `gateway` tables in one transaction per
//! batch (see [`store::project`]). Kafka offsets are committed only after that transaction, and every write is
//! idempotent, so a crash or a rebalance repeats records without adding rows or miscounting.

use crate::live::record_of;
use crate::store::{self, ProjectionBatch};
use bank_core::inbound::Inbound;
use bank_core::isolate::{Attempt, Failure, isolate};
use bank_core::kafka::Producer;
use bank_core::kafka::{Source, dead_letter, next_batch};
use bank_core::registry::{Codec, CodecError};
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use bank_core::topics::TopicNames;
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
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
            let Some(done) = self.project_isolating(&mut entries, &shutdown).await else {
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
                        dead: None,
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

    /// Projects `entries` through the poison-isolation engine ([`bank_core::isolate`]): one transaction when all
    /// goes well; a record PostgreSQL refuses (or whose projection panics) is isolated and dead-lettered, the
    /// rest projected in order. `None` when a shutdown interrupted it.
    async fn project_isolating(&self, entries: &mut [Entry], shutdown: &CancellationToken) -> Option<store::Projected> {
        let mut total = store::Projected::default();
        let interrupted = isolate(self, entries, |done: store::Projected| total.add(&done), shutdown).await;
        (!interrupted).then_some(total)
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

/// One decoded record with what is needed to dead-letter it.
struct Entry {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// This record alone.
    batch: ProjectionBatch,
    /// Set when this record was isolated as the one that fails its batch: it is dead-lettered with this error
    /// instead of projected.
    dead: Option<String>,
}

impl Attempt<Entry> for Projection {
    type Output = store::Projected;
    const RETRIES_METRIC: &'static str = "gateway_projection_retries_total";

    fn attempt<'a>(&'a self, part: &'a [Entry]) -> BoxFuture<'a, Result<store::Projected, Failure>> {
        Box::pin(async move {
            let batch = merged(part);
            let done = if batch.is_empty() {
                store::Projected::default()
            } else {
                store::project(&self.pool, &batch).await.map_err(|e| Failure::of_sqlx(&e))?
            };
            // Dead letters after the projection's commit: a retry repeats the projection (idempotent) and at
            // worst a dead letter, never a record.
            for one in part {
                let Some(error) = &one.dead else { continue };
                let source = Source {
                    topic: &one.topic,
                    partition: one.partition,
                    offset: one.offset,
                    key: one.key.as_deref(),
                    payload: one.payload.as_deref(),
                };
                dead_letter(&self.producer, &self.topics.dead_letters, source, error)
                    .await
                    .map_err(|e| Failure::unavailable(format!("dead-lettering failed: {e:#}")))?;
                metrics::counter!("gateway_projection_dead_letters_total").increment(1);
                tracing::error!(%error, topic = %one.topic, partition = one.partition, offset = one.offset, "dead-lettered a record that cannot be projected");
            }
            Ok(done)
        })
    }

    fn poison(&self, item: &mut Entry, failure: &Failure) -> bool {
        if item.dead.is_some() {
            return false;
        }
        item.dead = Some(format!("cannot be projected: {}", failure.message));
        true
    }
}

/// The records of `entries` that are not dead letters, as one batch.
fn merged(entries: &[Entry]) -> ProjectionBatch {
    let mut b = ProjectionBatch::default();
    for e in entries.iter().filter(|e| e.dead.is_none()) {
        b.balances.extend(e.batch.balances.iter().cloned());
        b.accounts_opened.extend(e.batch.accounts_opened.iter().cloned());
        b.accounts_refused.extend(e.batch.accounts_refused.iter().cloned());
        b.results.extend(e.batch.results.iter().cloned());
    }
    b
}
