//! The consumed offsets in `bank.consumed_offsets`, the source of truth of where each partition continues: locked,
//! checked and advanced by every batch transaction, and read by the consumer whenever partitions are assigned.

use crate::batch::Incoming;
use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Next offset to handle per (topic, partition).
pub type Next = BTreeMap<(String, i32), i64>;

#[derive(sqlx::FromRow)]
struct OffsetRow {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// Stored next offsets for the partitions of `topic`.
pub async fn stored_offsets(pool: &PgPool, topic: &str) -> Result<HashMap<i32, i64>, sqlx::Error> {
    let rows: Vec<OffsetRow> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM bank.consumed_offsets WHERE topic = $1")
            .bind(topic)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| (r.partition, r.next_offset)).collect())
}

/// Sets stored offsets back (topic, partition, next offset).
async fn reset_offsets(pool: &PgPool, reset: Vec<(String, i32, i64)>) -> Result<(), sqlx::Error> {
    for (topic, partition, low) in reset {
        sqlx::query(
            "UPDATE bank.consumed_offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2",
        )
        .bind(topic)
        .bind(partition)
        .bind(low)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Columns of an offsets map, for `UNNEST`.
fn columns(offsets: &Next) -> (Vec<&str>, Vec<i32>, Vec<i64>) {
    let mut cols =
        (Vec::with_capacity(offsets.len()), Vec::with_capacity(offsets.len()), Vec::with_capacity(offsets.len()));
    for ((t, p), o) in offsets {
        cols.0.push(t.as_str());
        cols.1.push(*p);
        cols.2.push(*o);
    }
    cols
}

/// Locks the stored offsets of this batch's partitions (in a fixed order, so two instances cannot deadlock),
/// creating the missing ones at the batch's first offset; returns them.
pub async fn lock(tx: &mut Transaction<'_, Postgres>, batch: &[Incoming]) -> anyhow::Result<Next> {
    let mut first = Next::new();
    for r in batch {
        let e = first.entry((r.topic.clone(), r.partition)).or_insert(r.offset);
        *e = (*e).min(r.offset);
    }
    let (ts, ps, os) = columns(&first);
    sqlx::query(
        "INSERT INTO bank.consumed_offsets (topic, partition, next_offset) \
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[]) ON CONFLICT DO NOTHING",
    )
    .bind(&ts)
    .bind(&ps)
    .bind(&os)
    .execute(&mut **tx)
    .await
    .context("insert offsets")?;
    let rows: Vec<OffsetRow> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset FROM bank.consumed_offsets o \
         JOIN UNNEST($1::text[], $2::int[]) u(t, p) ON o.topic = u.t AND o.partition = u.p \
         ORDER BY o.topic, o.partition FOR UPDATE OF o",
    )
    .bind(&ts)
    .bind(&ps)
    .fetch_all(&mut **tx)
    .await
    .context("lock offsets")?;
    Ok(rows.into_iter().map(|r| ((r.topic, r.partition), r.next_offset)).collect())
}

/// Moves each partition's next offset past the records of `batch`.
pub fn advance(batch: &[Incoming], next: &mut Next) {
    for r in batch {
        let e = next.entry((r.topic.clone(), r.partition)).or_insert(r.offset + 1);
        *e = (*e).max(r.offset + 1);
    }
}

/// Stores the next offsets (in the batch's transaction).
pub async fn store(tx: &mut Transaction<'_, Postgres>, next: &Next) -> anyhow::Result<()> {
    let (ts, ps, ns) = columns(next);
    sqlx::query(
        "UPDATE bank.consumed_offsets o SET next_offset = u.n, updated_at = now() \
         FROM UNNEST($1::text[], $2::int[], $3::bigint[]) u(t, p, n) \
         WHERE o.topic = u.t AND o.partition = u.p AND o.next_offset <> u.n",
    )
    .bind(&ts)
    .bind(&ps)
    .bind(&ns)
    .execute(&mut **tx)
    .await
    .context("store offsets")?;
    Ok(())
}

/// Seeks every assigned partition to the offset stored in Postgres (the source of truth); partitions with no
/// stored offset start from Kafka's committed offset, or the beginning.
pub struct OffsetsContext {
    pub pool: PgPool,
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
        let update = async move { reset_offsets(&pool, reset).await };
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
                for (p, n) in stored_offsets(&pool, &t).await? {
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
