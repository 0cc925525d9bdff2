//! The real binary stops within 2 s of SIGTERM, also while it is still waiting for its topics to appear (a
//! stack that is starting, or a synchronizer that has not run): a supervisor never has to kill it.

use bank_core::testing::{kafka_env, registry_url, unique_prefix};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn stops_within_two_seconds_of_sigterm_while_waiting_for_its_topics() {
    // A fresh prefix: none of its topics exist, so the generator retries reading offsets with a backoff.
    let mut child = Command::new(env!("CARGO_BIN_EXE_command-generator"))
        .envs(kafka_env())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .env("TOPIC_PREFIX", unique_prefix())
        .env("COMMAND_GENERATOR_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start command-generator");
    let logs = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Wait until it is in its retry loop (two attempts, so it sits in a backoff sleep or a metadata request).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    while retries < 2 {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("command-generator never reported waiting for its topics")
        });
        if line.contains("retrying") {
            retries += 1;
        }
    }
    let sent = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("command-generator still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    assert!(status.success(), "command-generator exited with {status}");
    assert!(took <= Duration::from_secs(2), "command-generator took {took:?} to stop after SIGTERM");
}
