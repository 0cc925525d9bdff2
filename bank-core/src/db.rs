//! PostgreSQL pools and migrations. Each service owns one Postgres schema (its tables and its migration
//! ledger live there), so services share a database without sharing tables.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use std::str::FromStr;
use std::time::Duration;

/// One migration: a version number and its SQL (may hold several statements).
pub type Migration = (i64, &'static str);

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

/// Applies `migrations` in order inside `schema`, once each, serialised across instances by an advisory lock.
pub async fn migrate(pool: &PgPool, schema: &str, migrations: &[Migration]) -> Result<(), sqlx::Error> {
    assert!(schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "schema names are plain identifiers");
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
    let applied: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT version FROM {schema}.schema_migrations")).fetch_all(&mut *tx).await?;
    for (version, sql) in migrations {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(schema, version, "applying migration");
        tx.execute(*sql).await?;
        sqlx::query(&format!("INSERT INTO {schema}.schema_migrations (version) VALUES ($1)"))
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
