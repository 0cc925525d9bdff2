//! Checks the bank's invariants on a running stack; prints one line per check and a summary line last.
//! Exit status 0 only if every check holds.

use anyhow::Context;
use bank_audit::Auditor;
use bank_core::config::{CommonArgs, DatabaseArgs};
use clap::Parser;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "bank-audit", about = "Check the bank's invariants on a running stack")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// Longest wait for the handler to catch up and the outbox to drain, in seconds
    #[arg(long, env = "AUDIT_SETTLE_SECS", default_value_t = 60)]
    settle_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = bank_core::cli::parse(|a: &Args| {
        bank_core::cli::check_common(&a.common)?;
        bank_core::cli::check_database(&a.database)
    });
    let pool = bank_core::db::connect(&args.database.database_url, 2)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL); is the stack up? (`cargo xtask up`)")?;
    let auditor = Auditor {
        pool,
        brokers: args.common.kafka(),
        codec: bank_core::registry::Codec::new(&args.common.schema_registry_url)?,
        prefix: args.common.topic_prefix.clone(),
    };
    let progress = |msg: &str| {
        eprintln!("  .. {msg}");
        let _ = std::io::stderr().flush();
    };
    let report = auditor.run(Duration::from_secs(args.settle_secs), &progress).await?;
    println!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
