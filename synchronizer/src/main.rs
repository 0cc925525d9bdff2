use std::process::ExitCode;
use synchronizer::Config;

#[tokio::main]
async fn main() -> ExitCode {
    // --check-config, --probe and --print-config-vars exit here (bank_core::cli).
    let config: Config = bank_core::cli::parse(|c: &Config| bank_core::cli::check_common(&c.common));
    bank_core::telemetry::init_logging("synchronizer", &config.common.log_format);
    match synchronizer::run(&config).await {
        Ok(report) => {
            tracing::info!(summary = %report, "synchronizer done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "synchronizer failed");
            ExitCode::FAILURE
        }
    }
}
