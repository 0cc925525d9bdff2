//! GraphQL gateway: accounts, sessions, money transfers and live transactions; serves the web UI.
//!
//! `POST /graphql`, websocket `/graphql/ws` (graphql-transport-ws and the legacy graphql-ws), GraphiQL at
//! `/graphiql`, `/health`, `/ready`, `/metrics`, and the built frontend at `/`.
//!
//! Sends `confirm_account_creation` and `confirm_money_transfer`; reads `balance_changed` twice: once through
//! the shared projection group (into the `gateway` tables, see [`projection`]) and once per instance from the
//! end (the live feed of subscriptions, see [`live`]). Owns the Postgres schema `gateway`.
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod cache;
pub mod channel;
pub mod claims;
pub mod config;
pub mod error;
pub mod fanout;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod live;
pub mod load_tests;
pub mod lock;
pub mod password;
pub mod pipeline;
pub mod projection;
pub mod results;
pub mod schema;
pub mod service;
pub mod session_cache;
pub mod socket;
pub mod status;
pub mod store;
pub mod validate;

pub use config::Config;
pub use http::{router, token_from_init};
pub use service::{Service, start};

use bank_core::shutdown::CancellationToken;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves the gateway on `listener` until `shutdown`; then stops its background work and flushes the producer.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (service, tasks) = start(&config, &shutdown).await?;
    let router = router(service.clone(), &config);
    tracing::info!(addr = %listener.local_addr()?, "graphql-endpoint listening");
    let served = bank_core::http::serve_with(listener, router, shutdown.clone(), config.connection_limits()).await;
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let _ = service.gateway.producer.flush(Duration::from_secs(10));
    tracing::info!("graphql-endpoint stopped");
    Ok(served?)
}
