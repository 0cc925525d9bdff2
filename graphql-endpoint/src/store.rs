//! The gateway's tables (Postgres schema `gateway`): users and their sessions, the transfers users asked for
//! (one per idempotency key), and the projection of `balance_changed` into transactions and account balances.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

pub const SCHEMA: &str = "gateway";

/// Channel of `pg_notify` messages: results of gateway transfers and account creations, for every instance.
pub const CHANNEL: &str = "gateway_events";

pub const MIGRATIONS: &[bank_core::db::Migration] = &[
    (
        1,
        r#"
CREATE TABLE gateway.users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('client', 'employee')),
    creation_id   UUID UNIQUE,
    iban          TEXT UNIQUE,
    account_token TEXT,
    account_error TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON COLUMN gateway.users.creation_id IS 'id of the ConfirmAccountCreation command that opens the account';
COMMENT ON COLUMN gateway.users.account_token IS 'authorises the account''s debits at the command-handler';

CREATE TABLE gateway.sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES gateway.users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry ON gateway.sessions (expires_at);

CREATE TABLE gateway.transfers (
    id              UUID PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES gateway.users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    from_iban       TEXT NOT NULL,
    to_iban         TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    description     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED')),
    reason          TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    UNIQUE (user_id, idempotency_key)
);

CREATE TABLE gateway.transactions (
    seq             BIGSERIAL PRIMARY KEY,
    transfer_id     UUID,
    iban            TEXT NOT NULL,
    new_balance     BIGINT NOT NULL,
    changed_by      BIGINT NOT NULL,
    from_to         TEXT NOT NULL,
    description     TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset    BIGINT NOT NULL
);
-- Redelivered events add nothing: one row per (transfer, account); events without a transfer id by position.
CREATE UNIQUE INDEX transactions_transfer ON gateway.transactions (transfer_id, iban) WHERE transfer_id IS NOT NULL;
CREATE UNIQUE INDEX transactions_position ON gateway.transactions (kafka_partition, kafka_offset) WHERE transfer_id IS NULL;
CREATE INDEX transactions_history ON gateway.transactions (iban, seq DESC);

CREATE TABLE gateway.accounts (
    iban       TEXT PRIMARY KEY,
    a_type     TEXT,
    balance    BIGINT NOT NULL DEFAULT 0,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE gateway.counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO gateway.counters (name, value) VALUES ('accounts', 0), ('transactions', 0), ('transfers', 0);
"#,
    ),
    (
        2,
        r#"
-- The bank's per-account sequence of a balance change (BalanceChanged.seq; 0 for events from before it existed):
-- the projected balance only moves to a change with a higher one, whatever order the events arrive in.
ALTER TABLE gateway.transactions ADD COLUMN account_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gateway.accounts ADD COLUMN balance_seq BIGINT NOT NULL DEFAULT 0;
"#,
    ),
];

/// SHA-256 of a session token: only the hash is stored, so a leaked table grants no session.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Client,
    Employee,
}

/// A signed-in user. `Debug` leaves the account token out.
#[derive(Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub iban: Option<String>,
    pub account_token: Option<String>,
    pub account_error: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("iban", &self.iban)
            .finish()
    }
}

fn user_of(r: &sqlx::postgres::PgRow) -> User {
    User {
        id: r.get("id"),
        username: r.get("username"),
        role: if r.get::<String, _>("role") == "employee" { Role::Employee } else { Role::Client },
        iban: r.get("iban"),
        account_token: r.get("account_token"),
        account_error: r.get("account_error"),
    }
}

const USER_COLUMNS: &str = "u.id, u.username, u.role, u.iban, u.account_token, u.account_error";

/// The user of a live session and when the session expires.
pub async fn user_by_session(
    pool: &PgPool,
    token: &str,
) -> sqlx::Result<Option<(User, chrono::DateTime<chrono::Utc>)>> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, s.expires_at FROM gateway.sessions s JOIN gateway.users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > now()"
    ))
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (user_of(&r), r.get("expires_at"))))
}

/// The command id that opens the account of a user who has none yet and no refusal either.
pub async fn pending_creation(pool: &PgPool, user_id: i64) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT creation_id FROM gateway.users WHERE id = $1 AND iban IS NULL AND account_error IS NULL")
        .bind(user_id)
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
}

pub async fn user_by_id(pool: &PgPool, id: i64) -> sqlx::Result<Option<User>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM gateway.users u WHERE u.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(user_of))
}

/// The user and password hash for a login.
pub async fn credentials(pool: &PgPool, username: &str) -> sqlx::Result<Option<(User, String)>> {
    let row =
        sqlx::query(&format!("SELECT {USER_COLUMNS}, u.password_hash FROM gateway.users u WHERE u.username = $1"))
            .bind(username)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| (user_of(&r), r.get("password_hash"))))
}

/// Creates a client whose account is still to be opened by `creation_id`; `None` when the name is taken.
pub async fn insert_client(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    creation_id: Uuid,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO gateway.users (username, password_hash, role, creation_id) VALUES ($1, $2, 'client', $3) \
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(creation_id)
    .fetch_optional(pool)
    .await
}

/// What [`upsert_employee`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmployeeUpsert {
    /// The employee exists (now) with the given password; `account_open` tells whether it has its account.
    Ready { user_id: i64, creation_id: Uuid, account_open: bool },
    /// A client holds the name: it is left alone.
    NameOfAClient,
}

/// Creates the configured bank employee, or sets its password hash. Never turns a client into the employee.
pub async fn upsert_employee(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    creation_id: Uuid,
) -> sqlx::Result<EmployeeUpsert> {
    let r = sqlx::query(
        "INSERT INTO gateway.users (username, password_hash, role, creation_id) VALUES ($1, $2, 'employee', $3) \
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
           creation_id = COALESCE(gateway.users.creation_id, EXCLUDED.creation_id) \
         WHERE gateway.users.role = 'employee' \
         RETURNING id, creation_id, iban IS NOT NULL AS account_open",
    )
    .bind(username)
    .bind(password_hash)
    .bind(creation_id)
    .fetch_optional(pool)
    .await?;
    Ok(match r {
        Some(r) => EmployeeUpsert::Ready {
            user_id: r.get("id"),
            creation_id: r.get("creation_id"),
            account_open: r.get("account_open"),
        },
        None => EmployeeUpsert::NameOfAClient,
    })
}

pub async fn delete_user(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM gateway.users WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

pub async fn insert_session(pool: &PgPool, user_id: i64, token: &str, ttl_secs: i64) -> sqlx::Result<()> {
    // Expired sessions of the same user go at the same time, so the table does not grow without bound.
    sqlx::query("DELETE FROM gateway.sessions WHERE user_id = $1 AND expires_at <= now()")
        .bind(user_id)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO gateway.sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash(token))
    .bind(user_id)
    .bind(ttl_secs as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// The notice that a user's sessions changed (one ended, or all of them): every instance re-checks the
/// sessions behind its open websockets of that user (see `live`).
const SESSIONS_NOTICE: &str = "pg_notify($2, json_build_object('kind', 'sessions', 'id', '00000000-0000-0000-0000-000000000000', \
                               'user', user_id)::text)";

/// Ends one session and tells every instance.
pub async fn delete_session(pool: &PgPool, token: &str) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(&format!(
        "WITH d AS (DELETE FROM gateway.sessions WHERE token_hash = $1 RETURNING user_id) \
         SELECT count({SESSIONS_NOTICE}) FROM d"
    ))
    .bind(token_hash(token))
    .bind(CHANNEL)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// Ends every session of a user (password or role changed) and tells every instance; returns how many ended.
pub async fn delete_sessions_of(pool: &PgPool, user_id: i64) -> sqlx::Result<u64> {
    let n = sqlx::query("DELETE FROM gateway.sessions WHERE user_id = $1").bind(user_id).execute(pool).await?;
    sqlx::query(&format!("SELECT {SESSIONS_NOTICE} FROM (SELECT $1::bigint AS user_id) AS t"))
        .bind(user_id)
        .bind(CHANNEL)
        .execute(pool)
        .await?;
    Ok(n.rows_affected())
}

/// A transfer a user asked for through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    pub id: Uuid,
    pub from_iban: String,
    pub to_iban: String,
    pub amount: i64,
    pub description: String,
    pub status: String,
    pub reason: Option<String>,
}

fn transfer_of(r: &sqlx::postgres::PgRow) -> TransferRow {
    TransferRow {
        id: r.get("id"),
        from_iban: r.get("from_iban"),
        to_iban: r.get("to_iban"),
        amount: r.get("amount"),
        description: r.get("description"),
        status: r.get("status"),
        reason: r.get("reason"),
    }
}

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
    let inserted = sqlx::query(
        "INSERT INTO gateway.transfers (id, user_id, idempotency_key, from_iban, to_iban, amount, description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, idempotency_key) DO NOTHING \
         RETURNING id, from_iban, to_iban, amount, description, status, reason",
    )
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
        return Ok((transfer_of(&r), true));
    }
    let r = sqlx::query(
        "SELECT id, from_iban, to_iban, amount, description, status, reason FROM gateway.transfers \
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(t.user_id)
    .bind(t.idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok((transfer_of(&r), false))
}

pub async fn transfer(pool: &PgPool, user_id: i64, id: Uuid) -> sqlx::Result<Option<TransferRow>> {
    let r = sqlx::query(
        "SELECT id, from_iban, to_iban, amount, description, status, reason FROM gateway.transfers \
         WHERE user_id = $1 AND id = $2",
    )
    .bind(user_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(r.as_ref().map(transfer_of))
}

/// Records a result the gateway learnt first hand (the projection may have recorded it already).
pub async fn resolve_transfer(pool: &PgPool, id: Uuid, confirmed: bool, reason: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE gateway.transfers SET status = $2, reason = $3, resolved_at = now() WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(id)
    .bind(if confirmed { "CONFIRMED" } else { "FAILED" })
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

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
        let (mut ids, mut ibans, mut tokens, mut types) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, iban, token, a_type) in &batch.accounts_opened {
            ids.push(*id);
            ibans.push(iban.as_str());
            tokens.push(token.as_str());
            types.push(a_type.as_str());
        }
        let r = sqlx::query(
            "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t(id, iban, token, a_type)), \
             acc AS (INSERT INTO gateway.accounts (iban, a_type) SELECT DISTINCT ON (iban) iban, a_type FROM input \
                     ON CONFLICT (iban) DO UPDATE SET a_type = EXCLUDED.a_type WHERE gateway.accounts.a_type IS NULL \
                     RETURNING (xmax = 0) AS inserted), \
             usr AS (UPDATE gateway.users u SET iban = i.iban, account_token = i.token FROM input i \
                     WHERE u.creation_id = i.id AND u.iban IS NULL RETURNING u.creation_id, u.id) \
             SELECT (SELECT count(*) FROM acc WHERE inserted), \
                    (SELECT count(pg_notify($5, json_build_object('kind', 'account', 'id', creation_id, 'user', id)::text)) FROM usr)",
        )
        .bind(&ids)
        .bind(&ibans)
        .bind(&tokens)
        .bind(&types)
        .bind(CHANNEL)
        .fetch_one(&mut *tx)
        .await?;
        done.accounts += r.get::<i64, _>(0);
    }
    if !batch.accounts_refused.is_empty() {
        let (ids, reasons): (Vec<Uuid>, Vec<String>) = batch.accounts_refused.iter().cloned().unzip();
        sqlx::query(
            "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS t(id, reason)), \
             usr AS (UPDATE gateway.users u SET account_error = i.reason FROM input i \
                     WHERE u.creation_id = i.id AND u.iban IS NULL AND u.account_error IS NULL RETURNING u.creation_id, u.id) \
             SELECT count(pg_notify($3, json_build_object('kind', 'account', 'id', creation_id, 'user', id)::text)) FROM usr",
        )
        .bind(&ids)
        .bind(&reasons)
        .bind(CHANNEL)
        .fetch_one(&mut *tx)
        .await?;
    }
    if !batch.balances.is_empty() {
        done.add(&project_balances(&mut tx, &batch.balances).await?);
    }
    if !batch.results.is_empty() {
        let mut ids = Vec::new();
        let mut confirmed = Vec::new();
        let mut reasons = Vec::new();
        for (id, ok, reason) in &batch.results {
            ids.push(*id);
            confirmed.push(*ok);
            reasons.push(reason.clone());
        }
        let n: i64 = sqlx::query_scalar(
            "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::bool[], $3::text[]) AS t(id, confirmed, reason)), \
             upd AS (UPDATE gateway.transfers t SET status = CASE WHEN i.confirmed THEN 'CONFIRMED' ELSE 'FAILED' END, \
                       reason = i.reason, resolved_at = now() \
                     FROM input i WHERE t.id = i.id AND t.status = 'PENDING' \
                     RETURNING t.id, t.user_id, t.status, t.reason) \
             SELECT count(pg_notify($4, json_build_object('kind', 'transfer', 'id', id, 'user', user_id, \
                                                          'status', status, 'reason', reason)::text)) FROM upd",
        )
        .bind(&ids)
        .bind(&confirmed)
        .bind(&reasons)
        .bind(CHANNEL)
        .fetch_one(&mut *tx)
        .await?;
        done.results += n;
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

impl Projected {
    fn add(&mut self, other: &Projected) {
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
    // one (0, from before it existed) only move a balance that never had one, in arrival order.
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
         latest AS (SELECT DISTINCT ON (iban) iban, new_balance, seq, account_seq FROM ins \
                    ORDER BY iban, account_seq DESC, seq DESC), \
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
    .fetch_one(&mut **tx)
    .await?;
    Ok(Projected { transactions: row.get(0), transfers: row.get(1), accounts: row.get(2), results: 0 })
}
