use clap::Parser;
use command_generator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    bank_core::telemetry::init_logging("command-generator", &config.common.log_format);
    let shutdown = bank_core::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    command_generator::run(config, listener, shutdown).await
}
