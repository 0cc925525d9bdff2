//! The projection: one consumer group shared by every gateway instance reads `balance_changed`, the account
//! creation results and the transfer results, and writes them to the `gateway` tables in one transaction per
//! batch (see [`store::project`]). Kafka offsets are committed only after that transaction, and every write is
//! idempotent, so a crash or a rebalance repeats records without adding rows or miscounting.

use crate::live::record_of;
use crate::store::{self, ProjectionBatch};
use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, BalanceChanged, MoneyTransferConfirmed, MoneyTransferFailed,
};
use bank_core::registry::{Codec, CodecError};
use bank_core::shutdown::CancellationToken;
use bank_core::topics::{self, TopicNames};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The topics the projection reads.
fn consumed(t: &TopicNames) -> [&str; 5] {
    [
        &t.balance_changed,
        &t.account_creation_confirmed,
        &t.account_creation_failed,
        &t.money_transfer_confirmed,
        &t.money_transfer_failed,
    ]
}

pub struct Projection {
    pub pool: PgPool,
    pub codec: std::sync::Arc<Codec>,
    pub producer: FutureProducer,
    pub topics: TopicNames,
    pub batch_size: usize,
    pub batch_wait: Duration,
}

impl Projection {
    pub async fn run(self, consumer: StreamConsumer, shutdown: CancellationToken) -> anyhow::Result<()> {
        consumer.subscribe(&consumed(&self.topics))?;
        while let Some(first) = bank_core::kafka::next_record(&consumer, &shutdown, "projection").await {
            let mut batch = ProjectionBatch::default();
            let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
            let mut count = 0;
            self.add(&mut batch, &first, &shutdown).await?;
            offsets.insert((first.topic().to_owned(), first.partition()), first.offset() + 1);
            count += 1;
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while count < self.batch_size {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(m)) => {
                        self.add(&mut batch, &m, &shutdown).await?;
                        offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                        count += 1;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "projection consumer error"),
                    Err(_) => break,
                }
            }
            if shutdown.is_cancelled() {
                // Nothing of this batch is written; the group's committed offsets repeat it on the next start.
                return Ok(());
            }
            let started = Instant::now();
            let mut backoff = Duration::from_millis(100);
            let done = loop {
                match store::project(&self.pool, &batch).await {
                    Ok(done) => break done,
                    Err(e) => {
                        metrics::counter!("gateway_projection_retries_total").increment(1);
                        tracing::warn!(error = %e, records = count, "projection batch failed; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
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
        batch: &mut ProjectionBatch,
        m: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.decode_into(batch, m).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, "schema registry unavailable; retrying");
                    self.codec.forget_failures();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) if e.is_transient() => return Ok(()),
                Err(e) => {
                    metrics::counter!("gateway_projection_dead_letters_total").increment(1);
                    tracing::warn!(error = %e, topic = m.topic(), partition = m.partition(), offset = m.offset(), "dead-lettering an undecodable record");
                    self.dead_letter(m, &e.to_string()).await?;
                    return Ok(());
                }
            }
        }
    }

    async fn decode_into(&self, batch: &mut ProjectionBatch, m: &BorrowedMessage<'_>) -> Result<(), CodecError> {
        let t = &self.topics;
        let topic = m.topic();
        let payload = m.payload();
        if topic == t.balance_changed {
            let b = self.codec.decode::<BalanceChanged>(payload).await?;
            batch.balances.push(record_of(b, m));
        } else if topic == t.account_creation_confirmed {
            let a = self.codec.decode::<AccountCreationConfirmed>(payload).await?;
            batch.accounts_opened.push((a.id.as_uuid(), a.iban, a.token, a.a_type.symbol().to_owned()));
        } else if topic == t.account_creation_failed {
            let a = self.codec.decode::<AccountCreationFailed>(payload).await?;
            batch.accounts_refused.push((a.id.as_uuid(), a.reason));
        } else if topic == t.money_transfer_confirmed {
            let r = self.codec.decode::<MoneyTransferConfirmed>(payload).await?;
            batch.results.push((r.id.as_uuid(), true, None));
        } else if topic == t.money_transfer_failed {
            let r = self.codec.decode::<MoneyTransferFailed>(payload).await?;
            batch.results.push((r.id.as_uuid(), false, Some(r.reason)));
        }
        Ok(())
    }

    async fn dead_letter(&self, m: &BorrowedMessage<'_>, error: &str) -> anyhow::Result<()> {
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: topics::dead_letter_headers::SOURCE_TOPIC, value: Some(m.topic()) })
            .insert(Header { key: topics::dead_letter_headers::SOURCE_PARTITION, value: Some(&partition) })
            .insert(Header { key: topics::dead_letter_headers::SOURCE_OFFSET, value: Some(&offset) })
            .insert(Header { key: topics::dead_letter_headers::ERROR, value: Some(error) });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topics.dead_letters).headers(headers);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = m.payload() {
            record = record.payload(p);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("cannot dead-letter a record: {e}"))?;
        Ok(())
    }
}
