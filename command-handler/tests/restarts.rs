//! A broker restart and a PostgreSQL restart in the middle of a stream of commands: the handler retries,
//! resumes and loses nothing; the audit passes. Restarts go through `cargo xtask restart`, so this file
//! runs alone (cargo runs test binaries one after another) and needs the stack of `cargo xtask up`.

mod common;

use common::{Fixture, HandlerProcess, produce_all, stream};
use std::path::PathBuf;
use std::time::Duration;

fn xtask() -> PathBuf {
    if let Ok(p) = std::env::var("OPENBANK_XTASK") {
        return PathBuf::from(p);
    }
    // target/debug/deps/restarts-<hash> → target/debug/xtask
    let exe = std::env::current_exe().unwrap();
    let candidate = exe.parent().and_then(|d| d.parent()).map(|d| d.join("xtask")).unwrap();
    assert!(
        candidate.exists(),
        "the xtask binary is needed to restart Kafka and PostgreSQL: run the tests with `cargo xtask test`"
    );
    candidate
}

async fn restart(component: &'static str) {
    let status =
        tokio::task::spawn_blocking(move || std::process::Command::new(xtask()).args(["restart", component]).status())
            .await
            .unwrap()
            .expect("run xtask restart");
    assert!(status.success(), "`cargo xtask restart {component}` failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_and_database_restarts_mid_stream_lose_nothing() {
    let f = Fixture::new().await;
    let mut handler = HandlerProcess::spawn(&f, 100, "handler");
    let accounts = f.accounts(30).await;
    let commands = stream(&accounts, 6_000, 23);
    let total = (accounts.len() + commands.len()) as i64;
    let chunks: Vec<_> = commands.chunks(300).map(<[_]>::to_vec).collect();

    // Commands keep coming in 20 chunks over about 10 s while Kafka and then PostgreSQL restart.
    let producer = {
        let f = Fixture::attach(&f.prefix, &f.db_url).await;
        tokio::spawn(async move {
            for chunk in chunks {
                produce_all(&f, &chunk).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Restart Kafka once the handler is under way: the first chunk of transfers has results.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while f.results_count().await < accounts.len() as i64 + 300 {
        assert!(std::time::Instant::now() < deadline, "the handler made no progress before the broker restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_kafka = f.results_count().await;
    restart("kafka").await;
    // Restart PostgreSQL once the handler is making progress again after the broker came back.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while f.results_count().await < before_kafka + 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_postgres = f.results_count().await;
    restart("postgres").await;
    producer.await.expect("every command was produced");
    eprintln!("results before the kafka restart: {before_kafka}, before the postgres restart: {before_postgres}");
    assert!(before_kafka < before_postgres, "the handler resumed after the broker restart");
    assert!(before_postgres < total, "the restarts happened mid-stream");

    f.wait_results(total, Duration::from_secs(240)).await;
    let report = f.audit().await;
    assert!(report.passed(), "{report}");
    assert_eq!(f.results_count().await, total, "one result per command");
    assert!(handler.terminate().success(), "the handler survived both restarts and exits cleanly");
}
