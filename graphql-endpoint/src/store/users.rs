//! Users and their sessions.

use crate::channel::{CHANNEL, sessions_notice};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

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

/// Stores a new session of `user_id`. Its expired sessions go at the same time, and so do its oldest live ones
/// beyond `max_sessions - 1` (with a notice, so their websockets end): a user's sessions are bounded.
pub async fn insert_session(
    pool: &PgPool,
    user_id: i64,
    token: &str,
    ttl_secs: i64,
    max_sessions: u32,
) -> sqlx::Result<()> {
    // One login of a user at a time (the user's row is locked), so two at once cannot both keep the cap's last
    // place.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM gateway.users WHERE id = $1 FOR UPDATE").bind(user_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM gateway.sessions WHERE user_id = $1 AND expires_at <= now()")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let ended = sqlx::query(
        "DELETE FROM gateway.sessions WHERE token_hash IN (SELECT token_hash FROM gateway.sessions \
         WHERE user_id = $1 ORDER BY created_at DESC, token_hash OFFSET $2)",
    )
    .bind(user_id)
    .bind(i64::from(max_sessions.max(1)) - 1)
    .execute(&mut *tx)
    .await?;
    if ended.rows_affected() > 0 {
        sqlx::query(&format!("SELECT {} FROM (SELECT $1::bigint AS user_id) AS t", sessions_notice("$2")))
            .bind(user_id)
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO gateway.sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash(token))
    .bind(user_id)
    .bind(ttl_secs as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Ends one session and tells every instance, whose websockets of that user re-check their sessions.
pub async fn delete_session(pool: &PgPool, token: &str) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(&format!(
        "WITH d AS (DELETE FROM gateway.sessions WHERE token_hash = $1 RETURNING user_id) \
         SELECT count({}) FROM d",
        sessions_notice("$2")
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
    sqlx::query(&format!("SELECT {} FROM (SELECT $1::bigint AS user_id) AS t", sessions_notice("$2")))
        .bind(user_id)
        .bind(CHANNEL)
        .execute(pool)
        .await?;
    Ok(n.rows_affected())
}
