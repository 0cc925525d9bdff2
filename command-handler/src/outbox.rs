//! Publishes outbox rows with the idempotent producer after their transaction committed, then deletes them.
//! On start, and periodically for rows a crashed instance left behind, rows still in the outbox are published
//! again: events are delivered at least once and consumers de-duplicate by (transfer id, iban).

use crate::store::{OutboxRow, parse_headers};
use bank_core::shutdown::CancellationToken;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;
use sqlx::postgres::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;

/// Rows older than this that are still in the outbox were left by an instance that stopped or crashed.
const ORPHAN_AGE_SECS: i64 = 60;
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct Publisher {
    pub pool: PgPool,
    pub producer: FutureProducer,
}

impl Publisher {
    /// Publishes everything in the outbox (left from an earlier run) before the handler starts consuming.
    pub async fn drain(&self, shutdown: &CancellationToken) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let rows = load(&self.pool, None).await?;
            if rows.is_empty() || shutdown.is_cancelled() {
                if total > 0 {
                    tracing::info!(events = total, "published events left in the outbox by an earlier run");
                }
                return Ok(total);
            }
            total += rows.len() as u64;
            self.publish(rows, shutdown).await;
        }
    }

    /// Publishes the rows each committed batch sends, until the channel closes (the handler stopped).
    pub async fn run(self, mut rx: mpsc::Receiver<Vec<OutboxRow>>, shutdown: CancellationToken) {
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
                self.publish(rows, &shutdown).await;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY && rx.is_empty() {
                last_sweep = tokio::time::Instant::now();
                match load(&self.pool, Some(ORPHAN_AGE_SECS)).await {
                    Ok(orphans) if !orphans.is_empty() => {
                        tracing::warn!(events = orphans.len(), "publishing events left in the outbox");
                        self.publish(orphans, &shutdown).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
                }
            }
        }
    }

    /// Sends `rows` in order, retrying failures until Kafka acknowledged each, then deletes them.
    /// A shutdown stops the retries; rows not acknowledged stay in the outbox for the next run.
    async fn publish(&self, rows: Vec<OutboxRow>, shutdown: &CancellationToken) {
        let mut todo = rows;
        let mut done: Vec<i64> = Vec::with_capacity(todo.len());
        let mut backoff = Duration::from_millis(100);
        while !todo.is_empty() {
            let mut deliveries = Vec::with_capacity(todo.len());
            for row in &todo {
                deliveries.push(self.send(row).await);
            }
            let results = futures::future::join_all(deliveries).await;
            let mut failed = Vec::new();
            for (row, result) in todo.into_iter().zip(results) {
                match result {
                    Ok(Ok(_)) => done.push(row.seq),
                    Ok(Err((e, _))) => {
                        tracing::warn!(topic = %row.topic, error = %e, "event delivery failed; retrying");
                        failed.push(row);
                    }
                    Err(_) => failed.push(row),
                }
            }
            metrics::counter!("handler_events_published_total").increment((done.len()) as u64);
            todo = failed;
            if !todo.is_empty() {
                metrics::counter!("handler_event_delivery_retries_total").increment(todo.len() as u64);
                if shutdown.is_cancelled() {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Deleting is bookkeeping: if it fails the rows are published once more later, which consumers tolerate.
        let mut attempts = 0;
        while let Err(e) =
            sqlx::query("DELETE FROM bank.outbox WHERE seq = ANY($1)").bind(&done).execute(&self.pool).await
        {
            attempts += 1;
            if attempts >= 20 || shutdown.is_cancelled() {
                tracing::warn!(error = %e, "could not delete published events from the outbox; they will be sent again");
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn send(&self, row: &OutboxRow) -> rdkafka::producer::DeliveryFuture {
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
                Ok(delivery) => return delivery,
                Err((e, _)) => {
                    // Local queue full: let librdkafka drain it.
                    tracing::debug!(error = %e, "producer queue full");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

/// Up to 10,000 outbox rows in order; with `older_than_secs`, only rows at least that old.
async fn load(pool: &PgPool, older_than_secs: Option<i64>) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, topic, key, payload, headers FROM bank.outbox \
         WHERE $1::bigint IS NULL OR created_at < now() - make_interval(secs => $1::bigint) ORDER BY seq LIMIT 10000",
    )
    .bind(older_than_secs)
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
