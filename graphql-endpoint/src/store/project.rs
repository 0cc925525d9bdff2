//! The projection's writes: one transaction per batch of `balance_changed`, account creation and transfer
//! results, idempotent so that a redelivered record adds nothing.

use crate::channel::{CHANNEL, account_notice, transfer_notice};
use crate::status::TransferStatus;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

/// How far ahead of an account's stored `seq` a balance change may be and still move the balance. An account's
/// changes are counted one by one and a batch holds a few thousand at most, so a real change is never that far
/// ahead. An account's first change (nothing stored yet) is taken as it is: after retention, a rebuilt projection
/// starts in the middle of a long history.
pub const MAX_SEQ_JUMP: i64 = 10_000;
/// One decoded `balance_changed` record with its position and timestamp.
#[derive(Debug, Clone)]
pub struct BalanceRecord {
    pub transfer_id: Option<Uuid>,
    pub iban: String,
    pub new_balance: i64,
    pub changed_by: i64,
    pub from_to: String,
    pub description: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub partition: i32,
    pub offset: i64,
    /// `BalanceChanged.seq`: the account's count of balance changes up to this one (0: unknown, older event).
    pub account_seq: i64,
}

/// What one projection batch carries, by topic.
#[derive(Debug, Default)]
pub struct ProjectionBatch {
    pub balances: Vec<BalanceRecord>,
    /// (command id, iban, token, account type)
    pub accounts_opened: Vec<(Uuid, String, String, String)>,
    /// (command id, reason)
    pub accounts_refused: Vec<(Uuid, String)>,
    /// (command id, confirmed, reason)
    pub results: Vec<(Uuid, bool, Option<String>)>,
}

impl ProjectionBatch {
    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
            && self.accounts_opened.is_empty()
            && self.accounts_refused.is_empty()
            && self.results.is_empty()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Projected {
    pub transactions: i64,
    pub transfers: i64,
    pub accounts: i64,
    pub results: i64,
}

/// Applies a batch in one transaction. Idempotent: a redelivered record inserts nothing and counts nothing,
/// so the counters stay exact when Kafka offsets are committed only after this commits.
pub async fn project(pool: &PgPool, batch: &ProjectionBatch) -> sqlx::Result<Projected> {
    let mut tx = pool.begin().await?;
    let mut done = Projected::default();
    if !batch.accounts_opened.is_empty() {
        done.accounts += project_opened(&mut tx, &batch.accounts_opened).await?;
    }
    if !batch.accounts_refused.is_empty() {
        project_refused(&mut tx, &batch.accounts_refused).await?;
    }
    if !batch.balances.is_empty() {
        done.add(&project_balances(&mut tx, &batch.balances).await?);
    }
    if !batch.results.is_empty() {
        done.results += project_results(&mut tx, &batch.results).await?;
    }
    if done.accounts + done.transactions + done.transfers > 0 {
        sqlx::query(
            "UPDATE gateway.counters SET value = value + CASE name WHEN 'accounts' THEN $1 WHEN 'transactions' THEN $2 \
             WHEN 'transfers' THEN $3 ELSE 0 END",
        )
        .bind(done.accounts)
        .bind(done.transactions)
        .bind(done.transfers)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Opened accounts: the account row (its type), the user's IBAN and token, a notice per user. Returns the
/// accounts new to the projection.
async fn project_opened(
    tx: &mut Transaction<'_, Postgres>,
    opened: &[(Uuid, String, String, String)],
) -> sqlx::Result<i64> {
    let (mut ids, mut ibans, mut tokens, mut types) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, iban, token, a_type) in opened {
        ids.push(*id);
        ibans.push(iban.as_str());
        tokens.push(token.as_str());
        types.push(a_type.as_str());
    }
    let r = sqlx::query(&format!(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t(id, iban, token, a_type)), \
         acc AS (INSERT INTO gateway.accounts (iban, a_type) SELECT DISTINCT ON (iban) iban, a_type FROM input \
                 ON CONFLICT (iban) DO UPDATE SET a_type = EXCLUDED.a_type WHERE gateway.accounts.a_type IS NULL \
                 RETURNING (xmax = 0) AS inserted), \
         usr AS (UPDATE gateway.users u SET iban = i.iban, account_token = i.token FROM input i \
                 WHERE u.creation_id = i.id AND u.iban IS NULL RETURNING u.creation_id, u.id) \
         SELECT (SELECT count(*) FROM acc WHERE inserted), \
                (SELECT count({}) FROM usr)",
        account_notice("$5")
    ))
    .bind(&ids)
    .bind(&ibans)
    .bind(&tokens)
    .bind(&types)
    .bind(CHANNEL)
    .fetch_one(&mut **tx)
    .await?;
    r.try_get(0)
}

/// Refused account creations: the user's refusal, a notice per user.
async fn project_refused(tx: &mut Transaction<'_, Postgres>, refused: &[(Uuid, String)]) -> sqlx::Result<()> {
    let (ids, reasons): (Vec<Uuid>, Vec<String>) = refused.iter().cloned().unzip();
    sqlx::query(&format!(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS t(id, reason)), \
         usr AS (UPDATE gateway.users u SET account_error = i.reason FROM input i \
                 WHERE u.creation_id = i.id AND u.iban IS NULL AND u.account_error IS NULL RETURNING u.creation_id, u.id) \
         SELECT count({}) FROM usr",
        account_notice("$3")
    ))
    .bind(&ids)
    .bind(&reasons)
    .bind(CHANNEL)
    .fetch_one(&mut **tx)
    .await?;
    Ok(())
}

/// Transfer results: the status of each still pending transfer, a notice per decided one. Returns how many
/// were decided.
async fn project_results(
    tx: &mut Transaction<'_, Postgres>,
    results: &[(Uuid, bool, Option<String>)],
) -> sqlx::Result<i64> {
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut reasons = Vec::new();
    for (id, ok, reason) in results {
        ids.push(*id);
        statuses.push(TransferStatus::decided(*ok));
        reasons.push(reason.clone());
    }
    sqlx::query_scalar(&format!(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, status, reason)), \
         upd AS (UPDATE gateway.transfers t SET status = i.status, reason = i.reason, resolved_at = now() \
                 FROM input i WHERE t.id = i.id AND t.status = $5 \
                 RETURNING t.id, t.user_id, t.status, t.reason, t.from_iban, t.to_iban) \
         SELECT count({}) FROM upd",
        transfer_notice("$4")
    ))
    .bind(&ids)
    .bind(&statuses)
    .bind(&reasons)
    .bind(CHANNEL)
    .bind(TransferStatus::Pending)
    .fetch_one(&mut **tx)
    .await
}

impl Projected {
    /// Adds another committed part's counts.
    pub fn add(&mut self, other: &Projected) {
        self.transactions += other.transactions;
        self.transfers += other.transfers;
        self.accounts += other.accounts;
        self.results += other.results;
    }
}

async fn project_balances(tx: &mut Transaction<'_, Postgres>, records: &[BalanceRecord]) -> sqlx::Result<Projected> {
    let mut ids = Vec::with_capacity(records.len());
    let mut ibans = Vec::with_capacity(records.len());
    let mut balances = Vec::with_capacity(records.len());
    let mut changes = Vec::with_capacity(records.len());
    let mut from_to = Vec::with_capacity(records.len());
    let mut descriptions = Vec::with_capacity(records.len());
    let mut at = Vec::with_capacity(records.len());
    let mut partitions = Vec::with_capacity(records.len());
    let mut offsets = Vec::with_capacity(records.len());
    let mut account_seqs = Vec::with_capacity(records.len());
    for r in records {
        ids.push(r.transfer_id);
        ibans.push(r.iban.as_str());
        balances.push(r.new_balance);
        changes.push(r.changed_by);
        from_to.push(r.from_to.as_str());
        descriptions.push(r.description.as_str());
        at.push(r.at);
        partitions.push(r.partition);
        offsets.push(r.offset);
        account_seqs.push(r.account_seq);
    }
    // A confirmed transfer is counted once: by its debit, or by its credit when it came from cash.
    // The balance moves only forward: to a change with a higher account_seq than the stored one; changes without
    // one (0, from before it existed) only move a balance that never had one, in arrival order. A change more than
    // MAX_SEQ_JUMP ahead of the stored one is not a real one (the handler counts one by one; a forged
    // `seq = i64::MAX` would otherwise freeze the balance for good): it is in the history, but moves no balance.
    // (A forged change less far ahead holds the balance back until the real count passes it; only Kafka ACLs, so
    // that nobody but the handler writes `balance_changed`, close that.)
    let row = sqlx::query(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
                                             $7::timestamptz[], $8::int[], $9::bigint[], $10::bigint[]) WITH ORDINALITY \
                        AS t(transfer_id, iban, new_balance, changed_by, from_to, description, at, kafka_partition, kafka_offset, \
                             account_seq, ord)), \
         ins AS (INSERT INTO gateway.transactions (transfer_id, iban, new_balance, changed_by, from_to, description, at, \
                                                   kafka_partition, kafka_offset, account_seq) \
                 SELECT transfer_id, iban, new_balance, changed_by, from_to, description, at, kafka_partition, kafka_offset, \
                        account_seq \
                 FROM input ORDER BY ord \
                 ON CONFLICT DO NOTHING \
                 RETURNING seq, iban, new_balance, changed_by, from_to, account_seq), \
         latest AS (SELECT DISTINCT ON (i.iban) i.iban, i.new_balance, i.seq, i.account_seq FROM ins i \
                    LEFT JOIN gateway.accounts a ON a.iban = i.iban \
                    WHERE a.iban IS NULL OR i.account_seq::numeric <= a.balance_seq::numeric + $11 \
                    ORDER BY i.iban, i.account_seq DESC, i.seq DESC), \
         acc AS (INSERT INTO gateway.accounts (iban, balance, last_seq, balance_seq) \
                 SELECT iban, new_balance, seq, account_seq FROM latest \
                 ON CONFLICT (iban) DO UPDATE SET balance = EXCLUDED.balance, last_seq = EXCLUDED.last_seq, \
                                                  balance_seq = EXCLUDED.balance_seq \
                 WHERE CASE WHEN EXCLUDED.balance_seq > 0 THEN gateway.accounts.balance_seq < EXCLUDED.balance_seq \
                            ELSE gateway.accounts.balance_seq = 0 AND gateway.accounts.last_seq < EXCLUDED.last_seq END \
                 RETURNING (xmax = 0) AS inserted) \
         SELECT (SELECT count(*) FROM ins), \
                (SELECT count(*) FROM ins WHERE changed_by < 0 OR from_to = 'cash'), \
                (SELECT count(*) FROM acc WHERE inserted)",
    )
    .bind(&ids)
    .bind(&ibans)
    .bind(&balances)
    .bind(&changes)
    .bind(&from_to)
    .bind(&descriptions)
    .bind(&at)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&account_seqs)
    .bind(MAX_SEQ_JUMP)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Projected { transactions: row.get(0), transfers: row.get(1), accounts: row.get(2), results: 0 })
}
