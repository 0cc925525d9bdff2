//! PostgreSQL pools and migrations. Each service owns one Postgres schema (its tables and its migration
//! ledger live there), so services share a database without sharing tables.
//!
//! The runner is our own because sqlx 0.8 cannot name its ledger table per schema. Like sqlx's, it records a
//! checksum (SHA-256 of the SQL text) with each applied migration and refuses to start when an applied migration's
//! SQL has changed since: the database would no longer match what the code says it holds.

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use std::str::FromStr;
use std::time::Duration;

/// One migration: a version number and its SQL (may hold several statements), normally
/// `(1, include_str!("../migrations/0001_init.sql"))`.
pub type Migration = (i64, &'static str);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration {version} of schema `{schema}` was edited after it was applied (applied checksum {applied}, \
         now {current}); restore its SQL and put the change in a new migration"
    )]
    Edited { schema: String, version: i64, applied: String, current: String },
    #[error("`{0}` is not a plain schema name (lowercase letters and `_` only)")]
    SchemaName(String),
    #[error("migration of schema `{schema}` failed: {source}")]
    Database { schema: String, source: sqlx::Error },
}

/// Connects to `url`. Statements are logged at debug level only (they never carry secrets here).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("open-bank")
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// The checksum recorded for a migration: SHA-256 of its SQL exactly as written.
pub fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies `migrations` in order inside `schema`, once each, serialised across instances by an advisory lock.
/// Refuses (and applies nothing) when a migration applied earlier has different SQL now.
pub async fn migrate(pool: &PgPool, schema: &str, migrations: &[Migration]) -> Result<(), MigrateError> {
    if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(MigrateError::SchemaName(schema.to_owned()));
    }
    run(pool, schema, migrations).await.map_err(|e| match e {
        Failure::Edited { version, applied, current } => {
            MigrateError::Edited { schema: schema.to_owned(), version, applied: hex(&applied), current: hex(&current) }
        }
        Failure::Database(source) => MigrateError::Database { schema: schema.to_owned(), source },
    })
}

enum Failure {
    Edited { version: i64, applied: Vec<u8>, current: Vec<u8> },
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

#[derive(sqlx::FromRow)]
struct Applied {
    version: i64,
    checksum: Option<Vec<u8>>,
}

async fn run(pool: &PgPool, schema: &str, migrations: &[Migration]) -> Result<(), Failure> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("migrate:{schema}"))
        .execute(&mut *tx)
        .await?;
    tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str()).await?;
    tx.execute(
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        .as_str(),
    )
    .await?;
    // Ledgers written before checksums existed get the column; their rows are filled in below.
    tx.execute(format!("ALTER TABLE {schema}.schema_migrations ADD COLUMN IF NOT EXISTS checksum BYTEA").as_str())
        .await?;
    let applied: Vec<Applied> = sqlx::query_as(&format!("SELECT version, checksum FROM {schema}.schema_migrations"))
        .fetch_all(&mut *tx)
        .await?;
    for (version, sql) in migrations {
        let current = checksum(sql);
        match applied.iter().find(|a| a.version == *version) {
            Some(Applied { checksum: Some(recorded), .. }) if *recorded != current => {
                return Err(Failure::Edited { version: *version, applied: recorded.clone(), current });
            }
            Some(Applied { checksum: Some(_), .. }) => {}
            Some(Applied { checksum: None, .. }) => {
                // Applied before checksums were kept: the SQL of today is taken as what was applied.
                sqlx::query(&format!("UPDATE {schema}.schema_migrations SET checksum = $2 WHERE version = $1"))
                    .bind(version)
                    .bind(&current)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                tracing::info!(schema, version, "applying migration");
                tx.execute(*sql).await?;
                sqlx::query(&format!("INSERT INTO {schema}.schema_migrations (version, checksum) VALUES ($1, $2)"))
                    .bind(version)
                    .bind(&current)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
