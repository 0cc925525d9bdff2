//! Idempotency claims, batched: every transfer is first recorded under its user's idempotency key
//! (`gateway.transfers`), and the requests that arrive while a claim statement runs are claimed together by the
//! next one: one `INSERT … ON CONFLICT DO NOTHING` and one commit for all of them instead of one each. Under no
//! load a claim goes alone, at once; under load the batch grows with the queue, so the cost per claim falls as
//! the work grows.
//!
//! A batch that PostgreSQL refuses (a user deleted while their transfer was being claimed breaks the foreign key)
//! is claimed again one by one, at once, so each claim gets its own answer and nobody else's error.

use crate::store::{self, NewTransfer, TransferRow};
use sqlx::postgres::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most claims in one statement.
pub const MAX_BATCH: usize = 256;
/// Claim statements running at once: one runs while the next batch gathers.
pub const WORKERS: usize = 2;

/// A claim's owned fields and where its answer goes.
struct Claim {
    transfer: NewTransfer,
    answer: oneshot::Sender<sqlx::Result<(TransferRow, bool)>>,
}

/// The claim queue of one gateway instance; its workers stop when it is dropped.
pub struct Claims {
    queue: mpsc::Sender<Claim>,
    batches: Arc<AtomicU64>,
}

impl Claims {
    /// Starts the workers on the current runtime.
    pub fn start(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::channel::<Claim>(MAX_BATCH * WORKERS);
        let rx = Arc::new(Mutex::new(rx));
        let batches = Arc::new(AtomicU64::new(0));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), rx.clone(), batches.clone()));
        }
        Self { queue, batches }
    }

    /// Batches claimed so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Records `t` under its idempotency key: `(row, true)` when it is new, or the row recorded earlier under the
    /// same key with `false`.
    pub async fn claim(&self, transfer: NewTransfer) -> sqlx::Result<(TransferRow, bool)> {
        let (answer, answered) = oneshot::channel();
        let claim = Claim { transfer, answer };
        if self.queue.send(claim).await.is_err() {
            return Err(sqlx::Error::PoolClosed);
        }
        answered.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// Takes what is queued (up to [`MAX_BATCH`]) and claims it, until the queue is closed.
async fn work(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Claim>>>, batches: Arc<AtomicU64>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH
                && let Ok(next) = rx.try_recv()
            {
                batch.push(next);
            }
            batch
        };
        batches.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("gateway_claims_per_batch").record(batch.len() as f64);
        answer(&pool, batch).await;
    }
}

async fn answer(pool: &PgPool, batch: Vec<Claim>) {
    let transfers: Vec<&NewTransfer> = batch.iter().map(|c| &c.transfer).collect();
    match store::claim_transfers(pool, &transfers).await {
        Ok(rows) => {
            for (claim, row) in batch.into_iter().zip(rows) {
                let _ = claim.answer.send(Ok(row));
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::debug!(error = %e, claims = batch.len(), "a claim batch was refused; claiming one by one");
            metrics::counter!("gateway_claim_batches_split_total").increment(1);
            futures::future::join_all(batch.into_iter().map(|claim| async move {
                let one = store::claim_transfers(pool, &[&claim.transfer]).await;
                let _ = claim.answer.send(one.map(|mut rows| rows.remove(0)));
            }))
            .await;
        }
        Err(e) => {
            if let Some(claim) = batch.into_iter().next() {
                let _ = claim.answer.send(Err(e));
            }
        }
    }
}
