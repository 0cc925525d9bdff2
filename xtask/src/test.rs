//! `cargo xtask test`: installs what is missing, lints, brings the stack up (twice: the second `up` must start
//! nothing), checks `status`, runs the whole test suite against the stack, stops what it started and checks
//! that no process is left behind. Exit code: the tests'.

use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::Paths;
use crate::stack::{self, Endpoints, UpOptions};
use crate::{kafka, proc};

pub struct TestOptions {
    pub lint: bool,
    pub keep_up: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub suites: u32,
}

/// Sums libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
pub fn parse_counts(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines().filter_map(|l| l.trim().strip_prefix("test result: ")) {
        c.suites += 1;
        for part in line.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                let n: u32 = n.parse().unwrap_or(0);
                match what {
                    "passed" => c.passed += n,
                    "failed" => c.failed += n,
                    "ignored" => c.ignored += n,
                    _ => {}
                }
            }
        }
    }
    c
}

fn cargo(paths: &Paths) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(&paths.root);
    c
}

fn banner(s: &str) {
    eprintln!("\n==> {s}");
}

pub fn run(opts: &TestOptions) -> anyhow::Result<i32> {
    let started = Instant::now();
    let paths = Paths::new(false)?;
    std::fs::create_dir_all(&paths.home)?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let mut checks: Vec<(String, bool)> = Vec::new();

    banner("prerequisites");
    let endpoints = Endpoints::resolve(&paths)?;
    stack::ensure_packages(&endpoints)?;

    if opts.lint {
        banner("cargo fmt --check");
        let fmt = cargo(&paths).args(["fmt", "--all", "--check"]).status()?.success();
        checks.push(("cargo fmt --check".into(), fmt));
        banner("cargo clippy --workspace --all-targets -- -D warnings");
        let clippy =
            cargo(&paths).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status()?.success();
        checks.push(("cargo clippy -D warnings".into(), clippy));
    }

    banner("build");
    let up_opts = UpOptions { release: false, quiet_build: false };
    stack::build(&paths, &up_opts)?;
    if !cargo(&paths).args(["test", "--workspace", "--no-run"]).status()?.success() {
        anyhow::bail!("building the tests failed");
    }

    let was_up = stack::status_quiet();
    banner(if was_up { "stack already up: reusing it and leaving it up" } else { "cargo xtask up (cold)" });
    let t = Instant::now();
    let first = stack::up(&UpOptions { quiet_build: true, ..up_opts })?;
    let cold = t.elapsed();
    let pids_before: Vec<_> = stack::load_state()?.components.iter().map(|c| (c.name.clone(), c.pid)).collect();

    banner("cargo xtask up (again: must start nothing)");
    let t = Instant::now();
    let second = stack::up(&UpOptions { quiet_build: true, ..up_opts })?;
    let warm = t.elapsed();
    let pids_after: Vec<_> = stack::load_state()?.components.iter().map(|c| (c.name.clone(), c.pid)).collect();
    checks.push((
        "second `up` starts nothing and keeps every pid".into(),
        second.started.is_empty() && pids_before == pids_after,
    ));

    banner("cargo xtask status");
    checks.push(("`status` reports every component healthy".into(), stack::status()?));

    banner("cargo test --workspace");
    let mut cmd = cargo(&paths);
    cmd.args(["test", "--workspace", "--no-fail-fast"]).stdout(Stdio::piped());
    endpoints.apply(&mut cmd);
    // Resilience tests restart Kafka and PostgreSQL through this binary.
    cmd.env("OPENBANK_XTASK", std::env::current_exe()?);
    if ci {
        cmd.env("CI", "true");
    }
    let mut child = cmd.spawn().context("failed to run cargo test")?;
    let mut output = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        output.push_str(&line);
        output.push('\n');
    }
    let tests_ok = child.wait()?.success();
    let counts = parse_counts(&output);

    banner("pipeline under load, then `cargo xtask audit`");
    checks.push(("the running pipeline handles load and `audit` passes".into(), pipeline_check()?));

    if !endpoints.external_database {
        let dropped = crate::postgres::drop_test_databases(&paths)?;
        eprintln!("dropped {dropped} test databases");
    }

    if !was_up && !opts.keep_up {
        banner("cargo xtask down (must leave no process behind)");
        let before = stack::load_state()?;
        stack::down(false)?;
        let left = stack::leftover_processes(&before);
        let mut ports = vec![kafka::ADDRESS, "localhost:9093"];
        ports.extend(stack::service_addresses());
        let ports_free = ports.iter().all(|a| !proc::port_open(a));
        if !left.is_empty() {
            eprintln!("left behind: {}", left.join(", "));
        }
        checks.push(("`down` leaves no process behind and frees the ports".into(), left.is_empty() && ports_free));
    }

    let failed_checks: Vec<&str> = checks.iter().filter(|(_, ok)| !ok).map(|(n, _)| n.as_str()).collect();
    eprintln!("\n---");
    for (name, ok) in &checks {
        eprintln!("{} {name}", if *ok { "ok  " } else { "FAIL" });
    }
    eprintln!(
        "timings: cold up {:.1}s (kafka start {}), warm up {:.1}s, whole run {:.0}s",
        cold.as_secs_f64(),
        first.kafka_start.map_or_else(|| "reused".into(), |d| format!("{:.1}s", d.as_secs_f64())),
        warm.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let ok = tests_ok && failed_checks.is_empty() && counts.failed == 0 && counts.passed > 0;
    println!(
        "summary: cargo test: {} passed, {} failed, {} ignored in {} suites; xtask checks: {} passed, {} failed; {}",
        counts.passed,
        counts.failed,
        counts.ignored,
        counts.suites,
        checks.len() - failed_checks.len(),
        failed_checks.len(),
        if ok { "OK" } else { "FAILED" }
    );
    Ok(if ok { 0 } else { 1 })
}

/// Raises the heartbeat rate for a while, checks the handler handled commands, then audits the stack.
fn pipeline_check() -> anyhow::Result<bool> {
    const HEARTBEAT: &str = "127.0.0.1:17888";
    const HANDLER: &str = "127.0.0.1:9103";
    let handled = || {
        proc::http(HANDLER, "GET", "/metrics", None)
            .map(|(_, body)| proc::metric_sum(&body, "handler_commands_total"))
            .unwrap_or(0.0)
    };
    let before = handled();
    let previous = proc::http(HEARTBEAT, "GET", "/rate", None).map(|(_, b)| b).unwrap_or_default();
    let (status, _) = proc::http(HEARTBEAT, "PUT", "/rate", Some(r#"{"beats_per_second": 500}"#))
        .context("heartbeat admin endpoint unreachable")?;
    eprintln!("heartbeat rate 500/s for 20 s (PUT /rate answered {status})");
    std::thread::sleep(Duration::from_secs(20));
    let restore = if previous.contains("beats_per_second") { previous } else { r#"{"beats_per_second": 10}"#.into() };
    proc::http(HEARTBEAT, "PUT", "/rate", Some(&restore));
    std::thread::sleep(Duration::from_secs(2));
    let after = handled();
    eprintln!("command-handler handled {:.0} commands during the run", after - before);
    let audit = stack::audit(120)? == 0;
    Ok(status == 200 && after - before >= 5_000.0 && audit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_result_lines() {
        let out = "running 3 tests\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        assert_eq!(parse_counts(out), Counts { passed: 5, failed: 1, ignored: 1, suites: 2 });
        assert_eq!(parse_counts("nothing here"), Counts::default());
    }
}
