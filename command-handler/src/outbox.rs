//! Publishes outbox rows with the idempotent producer after their transaction committed, then deletes them.
//! On start, and periodically for rows a crashed instance left behind, rows still in the outbox are published
//! again: events are delivered at least once and consumers de-duplicate by (transfer id, iban).

use crate::batch::OutboxRow;
use crate::events::parse_headers;
use bank_core::kafka::{Delivery, Producer};
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;

/// Rows older than this that are still in the outbox were left by an instance that stopped or crashed.
const ORPHAN_AGE_SECS: i64 = 60;
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct Publisher {
    pub pool: PgPool,
    pub producer: Producer,
}

/// Longest payload (and key) of an event Kafka refused as too large: the rest is cut off, and the event carries
/// the original size and SHA-256 in [`ORIGINAL_SIZE`] and [`ORIGINAL_SHA256`] (for the key: [`ORIGINAL_KEY_SIZE`]).
/// Only dead letters can be that large: they carry the bytes of a record someone else produced.
pub const TRUNCATED_BYTES: usize = 64 * 1024;
pub const ORIGINAL_SIZE: &str = "original-size";
pub const ORIGINAL_SHA256: &str = "original-sha256";
pub const ORIGINAL_KEY_SIZE: &str = "original-key-size";

impl Publisher {
    /// Publishes everything in the outbox (left from an earlier run) before the handler starts consuming, page by
    /// page in sequence order (a row that stays behind is never loaded twice here).
    pub async fn drain(&self, shutdown: &CancellationToken) -> anyhow::Result<u64> {
        let mut total = 0;
        let mut after = 0;
        loop {
            let rows = load(&self.pool, None, after).await?;
            let Some(last) = rows.last().map(|r| r.seq) else { break };
            if shutdown.is_cancelled() {
                break;
            }
            after = last;
            total += self.publish(rows, shutdown).await;
        }
        if total > 0 {
            tracing::info!(events = total, "published events left in the outbox by an earlier run");
        }
        Ok(total)
    }

    /// Publishes the rows each committed batch sends, until the channel closes (the handler stopped). Deleting
    /// what Kafka acknowledged is left to a task of its own, so the next rows go out without waiting for the
    /// database; it finishes its deletes before this returns.
    pub async fn run(self, mut rx: mpsc::Receiver<Vec<OutboxRow>>, shutdown: CancellationToken) {
        let (published, to_delete) = mpsc::channel::<Vec<i64>>(DELETE_QUEUE);
        let deleter = tokio::spawn(deleter(self.pool.clone(), to_delete, shutdown.clone()));
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let first = tokio::select! {
                chunk = rx.recv() => chunk,
                () = tokio::time::sleep(SWEEP_EVERY) => Some(Vec::new()),
            };
            let Some(mut rows) = first else { break };
            while let Ok(more) = rx.try_recv() {
                rows.extend(more);
            }
            if !rows.is_empty() {
                let done = self.send_all(rows, &shutdown).await;
                // A full queue (the database far behind) holds publishing back: the outbox stays bounded.
                if published.send(done).await.is_err() {
                    tracing::warn!("outbox deleter stopped; published events stay in the outbox and are sent again");
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY && rx.is_empty() {
                last_sweep = tokio::time::Instant::now();
                match load(&self.pool, Some(ORPHAN_AGE_SECS), 0).await {
                    Ok(orphans) if !orphans.is_empty() => {
                        tracing::warn!(events = orphans.len(), "publishing events left in the outbox");
                        self.publish(orphans, &shutdown).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
                }
            }
        }
        drop(published);
        let _ = deleter.await;
    }

    /// Sends `rows` in order, retrying failures until Kafka acknowledged each, then deletes them. Returns how
    /// many Kafka acknowledged (each counted once in `handler_events_published_total`). A shutdown stops the
    /// retries; rows not acknowledged stay in the outbox for the next run.
    pub async fn publish(&self, rows: Vec<OutboxRow>, shutdown: &CancellationToken) -> u64 {
        let done = self.send_all(rows, shutdown).await;
        delete(&self.pool, &done, shutdown).await;
        done.len() as u64
    }

    /// Sends `rows` in order, retrying failures until Kafka acknowledged each (or shutdown); returns the sequence
    /// numbers of the acknowledged rows.
    async fn send_all(&self, rows: Vec<OutboxRow>, shutdown: &CancellationToken) -> Vec<i64> {
        let mut todo = rows;
        let mut done: Vec<i64> = Vec::with_capacity(todo.len());
        let mut backoff = Backoff::new(Duration::from_millis(100));
        while !todo.is_empty() {
            let mut sent = Vec::with_capacity(todo.len());
            let mut deliveries = Vec::with_capacity(todo.len());
            let mut failed = Vec::new();
            for row in todo {
                match self.send(&row, shutdown).await {
                    Ok(delivery) => {
                        sent.push(row);
                        deliveries.push(delivery);
                    }
                    Err(e) => failed.push(after_failure(row, &e)),
                }
            }
            let results = futures::future::join_all(deliveries).await;
            for (row, result) in sent.into_iter().zip(results) {
                match result {
                    Ok(Ok(_)) => {
                        metrics::counter!("handler_events_published_total").increment(1);
                        done.push(row.seq);
                    }
                    Ok(Err((e, _))) => failed.push(after_failure(row, &e)),
                    Err(_) => failed.push(row),
                }
            }
            todo = failed;
            if !todo.is_empty() {
                metrics::counter!("handler_event_delivery_retries_total").increment(todo.len() as u64);
                if shutdown.is_cancelled() {
                    break;
                }
                if !backoff.sleep_or_cancelled(shutdown).await {
                    break;
                }
            }
        }
        done
    }

    /// Hands one row to the producer, waiting while its local queue is full (until shutdown). Any other error is
    /// returned.
    async fn send(&self, row: &OutboxRow, shutdown: &CancellationToken) -> KafkaResult<Delivery> {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &row.headers {
            headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&row.topic).headers(headers.clone());
            if let Some(k) = &row.key {
                record = record.key(k);
            }
            if let Some(p) = &row.payload {
                record = record.payload(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((e, _))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) && !shutdown.is_cancelled() =>
                {
                    // Local queue full: let librdkafka drain it.
                    tracing::debug!(error = %e, "producer queue full");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// Deletes of published rows waiting for the database, in batches (one per publishing round).
const DELETE_QUEUE: usize = 64;

/// Deletes published rows as their sequence numbers arrive, a round's worth (or all that queued up) at a time,
/// until the channel closes.
async fn deleter(pool: PgPool, mut rx: mpsc::Receiver<Vec<i64>>, shutdown: CancellationToken) {
    while let Some(mut seqs) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            seqs.extend(more);
        }
        delete(&pool, &seqs, &shutdown).await;
    }
}

/// Deleting is bookkeeping: if it fails the rows are published once more later, which consumers tolerate.
async fn delete(pool: &PgPool, seqs: &[i64], shutdown: &CancellationToken) {
    if seqs.is_empty() {
        return;
    }
    let mut attempts = 0;
    while let Err(e) = sqlx::query("DELETE FROM bank.outbox WHERE seq = ANY($1)").bind(seqs).execute(pool).await {
        attempts += 1;
        if attempts >= 20 || shutdown.is_cancelled() {
            tracing::warn!(error = %e, "could not delete published events from the outbox; they will be sent again");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The row to try again after `e`: cut to size if Kafka refused it as too large (once), otherwise unchanged.
fn after_failure(row: OutboxRow, e: &KafkaError) -> OutboxRow {
    let too_large = e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge);
    if too_large && !row.headers.iter().any(|(k, _)| k == ORIGINAL_SIZE) {
        let size = row.payload.as_ref().map_or(0, Vec::len);
        tracing::error!(topic = %row.topic, size, "event too large for Kafka; publishing it truncated");
        metrics::counter!("handler_events_truncated_total").increment(1);
        truncated(row)
    } else {
        tracing::warn!(topic = %row.topic, error = %e, "event delivery failed; retrying");
        row
    }
}

/// `row` with its payload and key cut to [`TRUNCATED_BYTES`], the original size and hash in headers.
pub fn truncated(mut row: OutboxRow) -> OutboxRow {
    let payload = row.payload.take().unwrap_or_default();
    let hash: String = Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    row.headers.push((ORIGINAL_SIZE.to_owned(), payload.len().to_string()));
    row.headers.push((ORIGINAL_SHA256.to_owned(), hash));
    row.payload = Some(payload.into_iter().take(TRUNCATED_BYTES).collect());
    if let Some(key) = row.key.take_if(|k| k.len() > TRUNCATED_BYTES) {
        row.headers.push((ORIGINAL_KEY_SIZE.to_owned(), key.len().to_string()));
        row.key = Some(key.into_iter().take(TRUNCATED_BYTES).collect());
    }
    row
}

/// Up to 1,000 outbox rows in order, after sequence number `after`; with `older_than_secs`, only rows at least
/// that old.
async fn load(pool: &PgPool, older_than_secs: Option<i64>, after: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, topic, key, payload, headers FROM bank.outbox \
         WHERE seq > $2 AND ($1::bigint IS NULL OR created_at < now() - make_interval(secs => $1::bigint)) \
         ORDER BY seq LIMIT 1000",
    )
    .bind(older_than_secs)
    .bind(after)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| OutboxRow {
            seq: r.get(0),
            topic: r.get(1),
            key: r.get(2),
            payload: r.get(3),
            headers: parse_headers(r.get::<Option<String>, _>(4).as_deref()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: Vec<u8>, key: Vec<u8>) -> OutboxRow {
        OutboxRow {
            seq: 1,
            topic: "t".into(),
            key: Some(key),
            payload: Some(payload),
            headers: vec![("h".into(), "v".into())],
        }
    }

    #[test]
    fn truncation_keeps_a_prefix_the_size_and_the_hash() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let t = truncated(row(payload.clone(), b"k".to_vec()));
        let p = t.payload.clone().unwrap();
        assert_eq!(p.len(), TRUNCATED_BYTES);
        assert_eq!(&payload[..TRUNCATED_BYTES], &p[..]);
        assert_eq!(t.key.as_deref(), Some(&b"k"[..]));
        let h: std::collections::HashMap<_, _> = t.headers.into_iter().collect();
        assert_eq!(h["h"], "v");
        assert_eq!(h[ORIGINAL_SIZE], "200000");
        assert_eq!(h[ORIGINAL_SHA256].len(), 64);
        assert!(!h.contains_key(ORIGINAL_KEY_SIZE));
    }

    #[test]
    fn an_oversized_key_is_cut_too() {
        let t = truncated(row(vec![1], vec![7; TRUNCATED_BYTES + 1]));
        assert_eq!(t.key.unwrap().len(), TRUNCATED_BYTES);
        assert!(t.headers.contains(&(ORIGINAL_KEY_SIZE.to_owned(), (TRUNCATED_BYTES + 1).to_string())));
    }

    #[test]
    fn only_size_errors_truncate_and_only_once() {
        let big = row(vec![0; TRUNCATED_BYTES * 2], b"k".to_vec());
        let other = after_failure(big.clone(), &KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopic));
        assert_eq!(other.payload, big.payload);
        let size = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let once = after_failure(big, &size);
        assert_eq!(once.payload.as_ref().map(Vec::len), Some(TRUNCATED_BYTES));
        let twice = after_failure(once.clone(), &size);
        assert_eq!(twice.headers, once.headers, "not truncated again");
    }
}
