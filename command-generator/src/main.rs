use command_generator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // --check-config, --probe and --print-config-vars exit here (bank_core::cli).
    let config: Config = bank_core::cli::parse(|c: &Config| {
        bank_core::cli::check_common(&c.common)?;
        anyhow::ensure!(c.company_token.as_deref() != Some(""), "COMPANY_ACCOUNT_TOKEN is set but empty");
        Ok(())
    });
    bank_core::telemetry::init_logging("command-generator", &config.common.log_format);
    let shutdown = bank_core::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    command_generator::run(config, listener, shutdown).await
}
