//! Throughput of handler + Kafka + PostgreSQL: commands per second with batch size 1 and with the default
//! batch size. Not a timed test: it prints its measurements.
//!
//! `cargo bench -p command-handler --bench pipeline` against the stack of `cargo xtask up`.
//! BENCH_COMMANDS (default 50000) and BENCH_COMMANDS_SINGLE (default 3000) set the stream lengths.

#[path = "../tests/common/mod.rs"]
mod common;

use clap::Parser;
use common::{Fixture, produce_all, stream};
use std::time::{Duration, Instant};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let default_batch = command_handler::Config::parse_from(["command-handler"]).batch_size;
        let runs = [(1, setting("BENCH_COMMANDS_SINGLE", 3_000)), (default_batch, setting("BENCH_COMMANDS", 50_000))];
        let mut lines = Vec::new();
        for (batch, n) in runs {
            let (rate, p50) = measure(batch, n).await;
            let line = format!("batch size {batch:>5}: {n} commands, {rate:>8.0} commands/s (mean batch {p50:.1} ms)");
            eprintln!("{line}");
            lines.push(line);
        }
        println!("\nhandler + kafka + postgres on this machine:");
        for l in lines {
            println!("  {l}");
        }
    });
}

/// Creates accounts, stops the handler, queues `n` commands, then times a fresh handler draining them.
async fn measure(batch: u32, n: usize) -> (f64, f64) {
    let f = Fixture::new().await;
    let handler = f.spawn_handler(batch).await;
    let accounts = f.accounts(100).await;
    handler.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commands = stream(&accounts, n, 42);
    eprintln!("batch size {batch}: producing {n} commands");
    produce_all(&f, &commands).await;

    let (sum0, count0) = batch_stats();
    let base = f.results_count().await;
    let total = base + n as i64;
    let handler = f.spawn_handler(batch).await;
    // Time from the first handled command (after the consumer group formed) to the last event published.
    let mut started = None;
    let mut last_report = Instant::now();
    loop {
        let have = f.results_count().await;
        if started.is_none() && have > base {
            started = Some((Instant::now(), have));
        }
        if have >= total {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {} / {n} handled", have - base);
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.outbox").fetch_one(&f.pool).await.unwrap();
        if outbox == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (t0, at_start) = started.expect("progress was seen");
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = (total - at_start) as f64 / elapsed;
    let (sum1, count1) = batch_stats();
    let mean_ms = if count1 > count0 { (sum1 - sum0) / (count1 - count0) * 1000.0 } else { 0.0 };
    handler.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    (rate, mean_ms)
}

/// Sum and count of batch durations (seconds) recorded so far in this process.
fn batch_stats() -> (f64, f64) {
    let body = bank_core::telemetry::metrics().render();
    let get = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("handler_batch_seconds_sum"), get("handler_batch_seconds_count"))
}
