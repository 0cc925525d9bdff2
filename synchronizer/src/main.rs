use clap::Parser;
use std::process::ExitCode;
use synchronizer::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
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
