//! The exactly-once guarantee under failure: a handler killed with SIGKILL mid-stream, and two handler
//! instances sharing the partitions through rebalances. After each, the audit must pass.

mod common;

use common::{Fixture, HandlerProcess, produce_all, stream};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_applies_every_command_exactly_once() {
    let f = Fixture::new().await;
    let mut first = HandlerProcess::spawn(&f, 50, "first");
    let accounts = f.accounts(40).await;
    let commands = stream(&accounts, 8_000, 7);
    let total = (accounts.len() + commands.len()) as i64;
    produce_all(&f, &commands).await;

    // Kill as soon as a good part, but not all, of the stream is handled.
    let target = accounts.len() as i64 + 1_000;
    let mut waited = 0;
    while f.results_count().await < target && waited < 6_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    first.kill_9();
    let at_kill = f.results_count().await;
    eprintln!("killed with {at_kill} of {total} commands handled");
    assert!(at_kill < total, "the handler finished before it could be killed; the test proves nothing");

    let mut second = HandlerProcess::spawn(&f, 50, "second");
    f.wait_results(total, Duration::from_secs(180)).await;
    let report = f.audit().await;
    assert!(report.passed(), "{report}");
    assert_eq!(f.results_count().await, total, "one result per command");
    assert!(second.terminate().success(), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_handle_each_command_once() {
    let f = Fixture::new().await;
    let mut a = HandlerProcess::spawn(&f, 100, "a");
    let accounts = f.accounts(40).await;
    let commands = stream(&accounts, 6_000, 11);
    let total = (accounts.len() + commands.len()) as i64;
    let (first_half, second_half) = commands.split_at(3_000);
    produce_all(&f, first_half).await;
    // The second instance joins mid-stream: partitions move while batches are in flight.
    let b = HandlerProcess::spawn(&f, 100, "b");
    produce_all(&f, second_half).await;
    f.wait_results(accounts.len() as i64 + 4_500, Duration::from_secs(120)).await;
    let handled_by_a = a.handled().await;
    // ... and the first leaves before the end: its partitions move to the second.
    assert!(a.terminate().success(), "graceful shutdown exits 0");
    f.wait_results(total, Duration::from_secs(180)).await;
    let handled_by_b = b.handled().await;
    eprintln!("instance a handled {handled_by_a}, instance b {handled_by_b} of {total} commands");
    assert!(handled_by_a > 0.0 && handled_by_b > 0.0, "both instances took part");

    let report = f.audit().await;
    assert!(report.passed(), "{report}");
    assert_eq!(f.results_count().await, total, "one result per command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_passes_while_commands_keep_arriving() {
    // A running bank is never empty at one instant (the heartbeat, users): the audit settles on what was written
    // before it started and checks that, while commands keep coming.
    let f = Fixture::new().await;
    let handler = f.spawn_handler(50).await;
    let accounts = f.accounts(20).await;
    let commands = stream(&accounts, 200_000, 23);
    let during = std::sync::atomic::AtomicUsize::new(0);
    let auditing = std::sync::atomic::AtomicBool::new(false);
    let produce = async {
        for chunk in commands.chunks(20) {
            if auditing.load(std::sync::atomic::Ordering::SeqCst) {
                during.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
            }
            produce_all(&f, chunk).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let audit = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        auditing.store(true, std::sync::atomic::Ordering::SeqCst);
        f.audit().await
    };
    let report = tokio::select! {
        report = audit => report,
        () = produce => panic!("the commands ran out before the audit ended; the test proves nothing"),
    };
    let during = during.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{during} commands produced while the audit ran");
    assert!(during > 0, "commands kept arriving during the audit");
    assert!(report.passed(), "{report}");
    handler.cancel();
}
