//! What the queries read: histories, balances, the account list and the counters.

use super::project::BalanceRecord;
use sqlx::Row;
use sqlx::postgres::PgPool;

/// A projected balance change: the record and its place in the history (`seq`, the cursor).
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub seq: i64,
    pub record: BalanceRecord,
}

/// Newest first, `limit` rows older than `before_seq`.
pub async fn history(
    pool: &PgPool,
    iban: &str,
    before_seq: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<TransactionRow>> {
    let rows = sqlx::query(
        "SELECT seq, transfer_id, iban, new_balance, changed_by, from_to, description, at, kafka_partition, kafka_offset, \
         account_seq FROM gateway.transactions WHERE iban = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
    )
    .bind(iban)
    .bind(before_seq.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| TransactionRow {
            seq: r.get("seq"),
            record: BalanceRecord {
                transfer_id: r.get("transfer_id"),
                iban: r.get("iban"),
                new_balance: r.get("new_balance"),
                changed_by: r.get("changed_by"),
                from_to: r.get("from_to"),
                description: r.get("description"),
                at: r.get("at"),
                partition: r.get("kafka_partition"),
                offset: r.get("kafka_offset"),
                account_seq: r.get("account_seq"),
            },
        })
        .collect())
}

pub async fn balance(pool: &PgPool, iban: &str) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar("SELECT balance FROM gateway.accounts WHERE iban = $1")
        .bind(iban)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0))
}

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub iban: String,
    pub a_type: Option<String>,
    pub balance: i64,
}

/// Accounts ordered by IBAN, `limit` after `after_iban`.
pub async fn accounts(pool: &PgPool, after_iban: Option<&str>, limit: i64) -> sqlx::Result<Vec<AccountRow>> {
    let rows = sqlx::query("SELECT iban, a_type, balance FROM gateway.accounts WHERE iban > $1 ORDER BY iban LIMIT $2")
        .bind(after_iban.unwrap_or(""))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| AccountRow { iban: r.get("iban"), a_type: r.get("a_type"), balance: r.get("balance") })
        .collect())
}

pub async fn counters(pool: &PgPool) -> sqlx::Result<std::collections::HashMap<String, i64>> {
    let rows = sqlx::query("SELECT name, value FROM gateway.counters").fetch_all(pool).await?;
    Ok(rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect())
}
