use schema_registry::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // --check-config, --probe and --print-config-vars exit here (bank_core::cli).
    let config: Config = bank_core::cli::parse(|c: &Config| {
        bank_core::cli::check_database(&c.database)?;
        bank_core::cli::check_log_format(&c.log_format)
    });
    bank_core::telemetry::init_logging("schema-registry", &config.log_format);
    let shutdown = bank_core::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e} (is another registry running? see `cargo xtask status`)",
            config.listen
        )
    })?;
    schema_registry::run(config, listener, shutdown).await
}
