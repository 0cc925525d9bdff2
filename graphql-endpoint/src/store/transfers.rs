//! The transfers users asked for through the gateway, one per idempotency key.

use sqlx::Postgres;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgPool, PgTypeInfo, PgValueRef};
use uuid::Uuid;

// Where a transfer stands: stored in `gateway.transfers.status` as its upper-case name, and the GraphQL enum
// `TransferStatus` (a plain comment, not a doc comment: the committed SDL has no description for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransferStatus {
    Confirmed,
    Failed,
    /// No answer within the wait; the result follows on `transferResults` and `transfer(id)`
    Pending,
}

impl TransferStatus {
    /// The decided status of a result.
    pub fn decided(confirmed: bool) -> Self {
        if confirmed { Self::Confirmed } else { Self::Failed }
    }

    /// The stored form (the column's CHECK constraint lists these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Pending => "PENDING",
        }
    }

    /// The status of a stored form, `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Confirmed, Self::Failed, Self::Pending].into_iter().find(|st| st.as_str() == s)
    }
}

// Stored as TEXT: the column stays a plain text column with a CHECK, so no migration is needed.
impl sqlx::Type<Postgres> for TransferStatus {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for TransferStatus {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for TransferStatus {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for TransferStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Self::parse(s).ok_or_else(|| format!("not a transfer status: {s:?}").into())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_form() {
        for st in [TransferStatus::Confirmed, TransferStatus::Failed, TransferStatus::Pending] {
            assert_eq!(TransferStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(TransferStatus::parse("confirmed"), None);
        assert_eq!(TransferStatus::decided(true), TransferStatus::Confirmed);
        assert_eq!(TransferStatus::decided(false), TransferStatus::Failed);
    }
}
