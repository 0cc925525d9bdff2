//! Turns heartbeats into a realistic mix of account creations and money transfers.
//!
//! Skeleton: configuration and the `/health`, `/ready`, `/metrics` endpoints on port 9102. Its Kafka and
//! Postgres work is not written yet, so `cargo xtask up` does not start it.

use bank_core::config::CommonArgs;
use bank_core::shutdown::CancellationToken;
use clap::Parser;
use std::net::SocketAddr;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Parser)]
#[command(name = "command-generator")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address of the HTTP endpoints
    #[arg(long, env = "COMMAND_GENERATOR_LISTEN", default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, brokers = %config.common.kafka_brokers, "listening");
    let router = bank_core::http::probe_routes(bank_core::http::always_ready(), bank_core::telemetry::metrics());
    Ok(bank_core::http::serve(listener, router, shutdown).await?)
}
