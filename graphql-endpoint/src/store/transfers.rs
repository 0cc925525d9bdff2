//! The transfers users asked for through the gateway, one per idempotency key.

use crate::status::TransferStatus;
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// A transfer a user asked for through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TransferRow {
    pub id: Uuid,
    pub from_iban: String,
    pub to_iban: String,
    pub amount: i64,
    pub description: String,
    pub status: TransferStatus,
    pub reason: Option<String>,
}

const TRANSFER_COLUMNS: &str = "id, from_iban, to_iban, amount, description, status, reason";

/// A transfer to record under its idempotency key.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub id: Uuid,
    pub user_id: i64,
    pub idempotency_key: String,
    pub from_iban: String,
    pub to_iban: String,
    pub amount: i64,
    pub description: String,
}

/// Records transfers under their idempotency keys in one statement and one commit. Returns, in the order of `ts`,
/// `(row, true)` for each new one, or the row recorded earlier under the same key with `false` (also for the
/// second of two claims with one key in `ts`).
pub async fn claim_transfers(pool: &PgPool, ts: &[&NewTransfer]) -> sqlx::Result<Vec<(TransferRow, bool)>> {
    let mut ids = Vec::with_capacity(ts.len());
    let mut users = Vec::with_capacity(ts.len());
    let mut keys = Vec::with_capacity(ts.len());
    let mut froms = Vec::with_capacity(ts.len());
    let mut tos = Vec::with_capacity(ts.len());
    let mut amounts = Vec::with_capacity(ts.len());
    let mut descriptions = Vec::with_capacity(ts.len());
    for t in ts {
        ids.push(t.id);
        users.push(t.user_id);
        keys.push(t.idempotency_key.as_str());
        froms.push(t.from_iban.as_str());
        tos.push(t.to_iban.as_str());
        amounts.push(t.amount);
        descriptions.push(t.description.as_str());
    }
    // In input order, so that of two claims with one key the first is the one recorded.
    let inserted: Vec<TransferRow> = sqlx::query_as(&format!(
        "INSERT INTO gateway.transfers (id, user_id, idempotency_key, from_iban, to_iban, amount, description) \
         SELECT id, user_id, idempotency_key, from_iban, to_iban, amount, description \
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[]) \
              WITH ORDINALITY AS t(id, user_id, idempotency_key, from_iban, to_iban, amount, description, ord) \
         ORDER BY ord \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING \
         RETURNING {TRANSFER_COLUMNS}"
    ))
    .bind(&ids)
    .bind(&users)
    .bind(&keys)
    .bind(&froms)
    .bind(&tos)
    .bind(&amounts)
    .bind(&descriptions)
    .fetch_all(pool)
    .await?;
    let mut fresh: HashMap<Uuid, TransferRow> = inserted.into_iter().map(|r| (r.id, r)).collect();
    let repeats: Vec<&NewTransfer> = ts.iter().copied().filter(|t| !fresh.contains_key(&t.id)).collect();
    let mut earlier: HashMap<(i64, String), TransferRow> = HashMap::new();
    if !repeats.is_empty() {
        let users: Vec<i64> = repeats.iter().map(|t| t.user_id).collect();
        let keys: Vec<&str> = repeats.iter().map(|t| t.idempotency_key.as_str()).collect();
        let rows: Vec<ClaimedRow> = sqlx::query_as(&format!(
            "SELECT user_id AS claim_user, idempotency_key AS claim_key, {TRANSFER_COLUMNS} FROM gateway.transfers \
             WHERE (user_id, idempotency_key) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))"
        ))
        .bind(&users)
        .bind(&keys)
        .fetch_all(pool)
        .await?;
        earlier = rows.into_iter().map(|r| ((r.claim_user, r.claim_key), r.row)).collect();
    }
    ts.iter()
        .map(|t| match fresh.remove(&t.id) {
            Some(row) => Ok((row, true)),
            None => earlier
                .get(&(t.user_id, t.idempotency_key.clone()))
                .map(|row| (row.clone(), false))
                .ok_or_else(|| sqlx::Error::Protocol(format!("transfer claim {} neither recorded nor found", t.id))),
        })
        .collect()
}

/// A recorded transfer with the key it was claimed under.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    claim_user: i64,
    claim_key: String,
    #[sqlx(flatten)]
    row: TransferRow,
}

pub async fn transfer(pool: &PgPool, user_id: i64, id: Uuid) -> sqlx::Result<Option<TransferRow>> {
    sqlx::query_as(&format!("SELECT {TRANSFER_COLUMNS} FROM gateway.transfers WHERE user_id = $1 AND id = $2"))
        .bind(user_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Whether the projection applied transfer `id` to the balance of `iban` (its line in that account's history).
pub async fn balance_projected(pool: &PgPool, id: Uuid, iban: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM gateway.transactions WHERE transfer_id = $1 AND iban = $2)")
        .bind(id)
        .bind(iban)
        .fetch_one(pool)
        .await
}

/// Records a result the gateway learnt first hand (the projection may have recorded it already).
pub async fn resolve_transfer(pool: &PgPool, id: Uuid, confirmed: bool, reason: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE gateway.transfers SET status = $2, reason = $3, resolved_at = now() WHERE id = $1 AND status = $4",
    )
    .bind(id)
    .bind(TransferStatus::decided(confirmed))
    .bind(reason)
    .bind(TransferStatus::Pending)
    .execute(pool)
    .await?;
    Ok(())
}
