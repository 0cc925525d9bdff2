//! A Confluent-compatible schema registry for Avro, stored in PostgreSQL (schema `registry`: tables
//! `schemas`, `subject_versions`, `config`). Serves the REST API on port 8081 (loopback by default) plus
//! `/health`, `/ready`, `/metrics`. Reads and writes no Kafka topic.

// Outside input (records, HTTP bodies, registry answers) must never panic this crate: no unwrap, expect or
// indexing outside tests (clippy.toml allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

// Public only for the fuzz targets (fuzz/), which feed the request parsing arbitrary bytes.
#[doc(hidden)]
pub mod api;
pub mod compat;
mod error;
pub mod schema;
pub mod store;

use axum::Router;
use bank_core::config::DatabaseArgs;
use bank_core::shutdown::CancellationToken;
use clap::Parser;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use error::CONTENT_TYPE;

#[derive(Debug, Clone, Parser)]
#[command(name = "schema-registry", about = "Confluent-compatible Avro schema registry backed by PostgreSQL")]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address to serve the REST API on
    #[arg(long, env = "SCHEMA_REGISTRY_LISTEN", default_value = bank_core::ports::SCHEMA_REGISTRY_LISTEN)]
    pub listen: SocketAddr,

    /// Log output: `text` or `json`
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Creates the registry's tables if needed.
pub async fn migrate(pool: &PgPool) -> Result<(), bank_core::db::MigrateError> {
    bank_core::db::migrate(pool, "registry", store::MIGRATIONS).await
}

/// The full HTTP app: the registry API and the probes.
pub fn app(pool: PgPool) -> Router {
    let ready_pool = pool.clone();
    let ready: bank_core::http::ReadyCheck = Arc::new(move || {
        let pool = ready_pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(|_| "database unreachable".to_owned())
        })
    });
    api::routes(pool).merge(bank_core::http::probe_routes(ready, bank_core::telemetry::metrics()))
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    use anyhow::Context;
    let pool = bank_core::db::connect(&config.database.database_url, config.database.database_max_connections)
        .await
        .context("failed to connect to PostgreSQL (DATABASE_URL)")?;
    migrate(&pool).await.context("failed to migrate the registry tables")?;
    tracing::info!(addr = %listener.local_addr()?, "schema registry listening");
    bank_core::http::serve(listener, app(pool), shutdown).await.context("http server failed")
}
