//! The transfers users asked for through the gateway, one per idempotency key.

use crate::status::TransferStatus;
use sqlx::postgres::PgPool;
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

pub struct NewTransfer<'a> {
    pub id: Uuid,
    pub user_id: i64,
    pub idempotency_key: &'a str,
    pub from_iban: &'a str,
    pub to_iban: &'a str,
    pub amount: i64,
    pub description: &'a str,
}

/// Records a transfer under its idempotency key. Returns `(row, true)` when it is new, or the row recorded
/// earlier under the same key with `false`.
pub async fn claim_transfer(pool: &PgPool, t: &NewTransfer<'_>) -> sqlx::Result<(TransferRow, bool)> {
    let inserted: Option<TransferRow> = sqlx::query_as(&format!(
        "INSERT INTO gateway.transfers (id, user_id, idempotency_key, from_iban, to_iban, amount, description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, idempotency_key) DO NOTHING \
         RETURNING {TRANSFER_COLUMNS}"
    ))
    .bind(t.id)
    .bind(t.user_id)
    .bind(t.idempotency_key)
    .bind(t.from_iban)
    .bind(t.to_iban)
    .bind(t.amount)
    .bind(t.description)
    .fetch_optional(pool)
    .await?;
    if let Some(r) = inserted {
        return Ok((r, true));
    }
    let r = sqlx::query_as(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM gateway.transfers WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(t.user_id)
    .bind(t.idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok((r, false))
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
