//! `cargo xtask test`: installs what is missing, lints, brings the stack up (twice: the second `up` must start
//! nothing), checks `status`, runs the whole test suite against the stack, stops what it started and checks
//! that no process is left behind. Exit code: the tests'.

use anyhow::Context;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cmd::down::{down, leftover_processes};
use crate::cmd::status::{status, status_quiet};
use crate::cmd::up::{UpOptions, up};
use crate::component::Layer;
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::stack;
use crate::state::State;
use crate::{http, proc, setup};

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

/// The named checks of a run, each passed or failed.
type Checks = Vec<(String, bool)>;

pub fn run(opts: &TestOptions) -> anyhow::Result<i32> {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    crate::crash::allow_core_dumps();
    let paths = Paths::new(false)?;
    paths.ensure_home()?;
    let mut checks: Checks = Vec::new();

    banner("prerequisites");
    let endpoints = Endpoints::resolve(&paths)?;
    setup::ensure_packages(&endpoints)?;
    if opts.lint {
        lint(&paths, &mut checks)?;
    }

    banner("build");
    setup::build(&paths, false, false)?;
    if !cargo(&paths).args(["test", "--workspace", "--no-run"]).status()?.success() {
        anyhow::bail!("building the tests failed");
    }

    banner("docker compose: the files checked against the code (what a real run cannot show)");
    checks.extend(crate::compose::checks(&paths));

    let was_up = status_quiet();
    let ups = up_twice(&paths, was_up, &mut checks)?;
    // Where `up` placed everything (a port another program holds moves).
    let endpoints = Endpoints::resolve(&paths)?;

    banner("cargo xtask status");
    checks.push(("`status` reports every component healthy".into(), status()?));

    banner("cargo test --workspace");
    let (tests_ok, counts) = cargo_test(&paths, &endpoints)?;

    banner("a short load test (run and pipeline), checked");
    checks.push((
        "a short load test records every transfer and writes its results".into(),
        crate::cmd::load_test::check(&paths)?,
    ));

    banner("pipeline under load, then `cargo xtask audit`");
    checks.push(("the running pipeline handles load and `audit` passes".into(), pipeline_check(&paths, &endpoints)?));

    banner("frontend: ESLint, tsc, Vitest and browser tests against the running stack");
    let frontend = match crate::frontend::test(&paths, &endpoints.graphql_url()) {
        Ok((frontend_checks, counts)) => {
            checks.extend(frontend_checks);
            counts
        }
        Err(e) => {
            eprintln!("FAIL frontend: {e:#}");
            checks.push(("frontend: tests ran".into(), false));
            crate::frontend::Counts::default()
        }
    };

    banner("faults: a 60 s chaos run, then two command-handler instances under crossing transfers");
    match crate::cmd::chaos::ci_checks() {
        Ok(fault_checks) => checks.extend(fault_checks),
        Err(e) => {
            eprintln!("FAIL faults: {e:#}");
            checks.push(("fault tests ran".into(), false));
        }
    }

    banner("fuzz: every cargo-fuzz target of fuzz/ for a bounded time");
    let fuzz = crate::fuzz::run(&paths, crate::fuzz::SECONDS_PER_TARGET).unwrap_or_else(|e| {
        eprintln!("FAIL fuzz: {e:#}");
        crate::fuzz::Summary::default()
    });
    checks.push(("fuzz targets run without a finding".into(), fuzz.ok()));

    banner("the native path as an unprivileged user, every default port taken by the stack above");
    let mut nonroot_ups = None;
    if crate::postgres::is_root() {
        match crate::cmd::nonroot::run(&paths) {
            Ok(outcome) => {
                checks.extend(outcome.checks);
                nonroot_ups = outcome.cold_up.zip(outcome.warm_up);
            }
            Err(e) => {
                eprintln!("FAIL non-root: {e:#}");
                checks.push(("the non-root test ran".into(), false));
            }
        }
    } else if ci() {
        eprintln!("FAIL non-root: CI runs `cargo xtask test` as root, which the test needs to create its user");
        checks.push(("the non-root test ran".into(), false));
    } else {
        eprintln!("skipped: creating the test's user needs root (and this run already is the non-root path)");
    }

    // A core is a service that died of a signal (the fault tests' kill -9s leave none): the chaos run reports its
    // own; this catches one from any other step.
    let crashes = crate::crash::report(&paths.root, &paths.logs(), started_at);
    checks.push((
        format!(
            "no service died of a signal{}",
            if crashes.is_empty() { String::new() } else { format!(": {}", crashes.join("; ")) }
        ),
        crashes.is_empty(),
    ));

    if !endpoints.external_database {
        let dropped = crate::postgres::drop_test_databases(&paths)?;
        eprintln!("dropped {dropped} test databases");
    }
    if !was_up && !opts.keep_up {
        down_check(&paths, &mut checks)?;
    }

    // After the native stack is down: the compose stack publishes the same ports (8888, 17888).
    banner("docker compose up, for real: the whole bank in containers, from the committed files, no .env");
    let mut compose = None;
    if was_up || opts.keep_up {
        if ci() {
            eprintln!("FAIL compose-up: the native stack is up and holds the ports the compose stack publishes");
            checks.push(("compose-up ran".into(), false));
        } else {
            eprintln!("skipped: the native stack stays up and holds 8888 (run `cargo xtask compose-up` after `down`)");
        }
    } else {
        match crate::cmd::compose_up::run(&paths) {
            Ok(outcome) => {
                compose = outcome.build.zip(outcome.healthy);
                checks.extend(outcome.checks);
            }
            Err(e) => {
                eprintln!("FAIL compose-up: {e:#}");
                checks.push(("compose-up ran".into(), false));
            }
        }
    }

    let failed = checks.iter().filter(|(_, ok)| !ok).count();
    eprintln!("\n---");
    for (name, ok) in &checks {
        eprintln!("{} {name}", if *ok { "ok  " } else { "FAIL" });
    }
    eprintln!(
        "timings: cold up {:.1}s (kafka start {}), warm up {:.1}s, {}, {}, whole run {:.0}s",
        ups.cold.as_secs_f64(),
        ups.kafka_start.map_or_else(|| "reused".into(), |d| format!("{:.1}s", d.as_secs_f64())),
        ups.warm.as_secs_f64(),
        nonroot_ups.map_or_else(
            || "no non-root up".to_owned(),
            |(cold, warm)| format!(
                "non-root up {:.1}s (first, with its build), {:.1}s (after down)",
                cold.as_secs_f64(),
                warm.as_secs_f64()
            )
        ),
        compose.map_or_else(
            || "no compose run".to_owned(),
            |(build, healthy)| format!(
                "compose build {:.0}s, first compose up to healthy {:.1}s",
                build.as_secs_f64(),
                healthy.as_secs_f64()
            )
        ),
        started.elapsed().as_secs_f64()
    );
    let ok = tests_ok
        && frontend.failed == 0
        && frontend.passed > 0
        && failed == 0
        && counts.failed == 0
        && counts.passed > 0;
    println!(
        "summary: cargo test: {} passed, {} failed, {} ignored in {} suites; frontend: {} passed, {} failed; {fuzz}; xtask checks: {} passed, {} failed; {}",
        counts.passed,
        counts.failed,
        counts.ignored,
        counts.suites,
        frontend.passed,
        frontend.failed,
        checks.len() - failed,
        failed,
        if ok { "OK" } else { "FAILED" }
    );
    Ok(if ok { 0 } else { 1 })
}

fn lint(paths: &Paths, checks: &mut Checks) -> anyhow::Result<()> {
    banner("cargo fmt --check");
    let fmt = cargo(paths).args(["fmt", "--all", "--check"]).status()?.success();
    checks.push(("cargo fmt --check".into(), fmt));
    banner("cargo clippy --workspace --all-targets -- -D warnings");
    let clippy =
        cargo(paths).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status()?.success();
    checks.push(("cargo clippy -D warnings".into(), clippy));
    Ok(())
}

/// How long the two `up`s took.
struct Ups {
    cold: Duration,
    warm: Duration,
    kafka_start: Option<Duration>,
}

/// `up`, then `up` again, which must start nothing and keep every pid.
fn up_twice(paths: &Paths, was_up: bool, checks: &mut Checks) -> anyhow::Result<Ups> {
    let opts = UpOptions { release: false, quiet_build: true, ..Default::default() };
    let pids = || -> Vec<(String, Option<u32>)> {
        State::load(&paths.state_file()).components.iter().map(|c| (c.name.clone(), c.pid)).collect()
    };
    banner(if was_up { "stack already up: reusing it and leaving it up" } else { "cargo xtask up (cold)" });
    let t = Instant::now();
    let first = up(&opts)?;
    let cold = t.elapsed();
    let pids_before = pids();

    banner("cargo xtask up (again: must start nothing)");
    let t = Instant::now();
    let second = up(&opts)?;
    let warm = t.elapsed();
    checks.push((
        "second `up` starts nothing and keeps every pid".into(),
        second.started.is_empty() && pids_before == pids(),
    ));
    Ok(Ups { cold, warm, kafka_start: first.kafka_start })
}

/// `cargo test --workspace` against the stack, its output passed through and counted.
fn cargo_test(paths: &Paths, endpoints: &Endpoints) -> anyhow::Result<(bool, Counts)> {
    let mut cmd = cargo(paths);
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    endpoints.apply(&mut cmd);
    // Resilience tests restart Kafka and PostgreSQL through this binary.
    cmd.env("OPENBANK_XTASK", std::env::current_exe()?);
    if ci() {
        cmd.env("CI", "true");
    }
    let (tests_ok, output) = proc::run_teeing(&mut cmd)?;
    Ok((tests_ok, parse_counts(&output)))
}

/// Whether this is a CI run (`CI=true`): missing infrastructure fails a test instead of skipping it.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `down`: every service stops within 2 s of SIGTERM, and no process or port is left behind.
fn down_check(paths: &Paths, checks: &mut Checks) -> anyhow::Result<()> {
    banner("cargo xtask down (must leave no process behind)");
    let before = State::load(&paths.state_file());
    let stopped = down(false)?;
    let slow: Vec<String> = stopped
        .iter()
        .filter(|(name, s)| stack::is_service(name) && (s.killed || s.took > Duration::from_secs(2)))
        .map(|(name, s)| format!("{name} ({:.1}s{})", s.took.as_secs_f64(), if s.killed { ", killed" } else { "" }))
        .collect();
    if !slow.is_empty() {
        eprintln!("slow to stop: {}", slow.join(", "));
    }
    checks.push(("every service stops within 2 s of SIGTERM".into(), slow.is_empty()));
    let left = leftover_processes(&before);
    // Every port `up` placed, but PostgreSQL's: as root the system cluster may have run before `up`.
    let ports_free = before.ports.iter().filter(|(slot, _)| *slot != "postgres").all(|(_, p)| crate::ports::is_free(p));
    if !left.is_empty() {
        eprintln!("left behind: {}", left.join(", "));
    }
    checks.push(("`down` leaves no process behind and frees the ports".into(), left.is_empty() && ports_free));
    Ok(())
}

/// Raises the heartbeat rate for a while, checks the handler handled commands, then audits the stack.
fn pipeline_check(paths: &Paths, endpoints: &Endpoints) -> anyhow::Result<bool> {
    let heartbeat = endpoints.address("heartbeat");
    let handler = endpoints.address("command-handler");
    let handled = || {
        http::call(&handler, "GET", "/metrics", None)
            .map(|(_, body)| http::metric_sum(&body, bank_core::metric_names::HANDLER_COMMANDS))
            .unwrap_or(0.0)
    };
    let before = handled();
    let previous = http::call(&heartbeat, "GET", "/rate", None).map(|(_, b)| b).unwrap_or_default();
    let (status, _) = http::call(&heartbeat, "PUT", "/rate", Some(r#"{"beats_per_second": 500}"#))
        .context("heartbeat admin endpoint unreachable")?;
    eprintln!("heartbeat rate 500/s for 20 s (PUT /rate answered {status})");
    let started = std::time::Instant::now();
    let gateway = crate::http::gateway_check(&endpoints.address("graphql-endpoint"));
    match &gateway {
        Ok(line) => eprintln!("ok   gateway under load: {line}"),
        Err(e) => eprintln!("FAIL gateway under load: {e:#}"),
    }
    let services = State::load(&paths.state_file())
        .components
        .into_iter()
        .filter(|r| r.managed)
        .filter_map(|r| {
            let c = stack::find(&r.name).filter(|c| c.layer() == Layer::Service)?;
            c.pids(&r).first().map(|&pid| (r.name, pid))
        })
        .collect::<Vec<_>>();
    let mut peak: Vec<u64> = vec![0; services.len()];
    while started.elapsed() < Duration::from_secs(20) {
        for ((_, pid), p) in services.iter().zip(peak.iter_mut()) {
            *p = (*p).max(proc::rss_kib(*pid).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let restore = if previous.contains("beats_per_second") { previous } else { r#"{"beats_per_second": 10}"#.into() };
    http::call(&heartbeat, "PUT", "/rate", Some(&restore));
    // The handler drains what the heartbeat sent: give it (at most) the same 2 s as ever, but stop waiting as soon
    // as the count is reached.
    proc::wait_quietly(Duration::from_secs(2), || handled() - before >= MIN_HANDLED);
    let after = handled();
    eprintln!("command-handler handled {:.0} commands during the run", after - before);
    // Every buffer is bounded: no service grows past MEMORY_LIMIT_MIB under load.
    let mut memory_ok = true;
    let line: Vec<String> = services
        .iter()
        .zip(&peak)
        .map(|((name, pid), peak)| {
            let now = proc::rss_kib(*pid).unwrap_or(0);
            memory_ok &= *peak > 0 && *peak <= MEMORY_LIMIT_MIB * 1024;
            format!("{name} {} MiB (now {})", peak / 1024, now / 1024)
        })
        .collect();
    eprintln!(
        "{} peak RSS under load (limit {MEMORY_LIMIT_MIB} MiB): {}",
        if memory_ok { "ok  " } else { "FAIL" },
        line.join(", ")
    );
    let audit = crate::cmd::audit::audit(120)? == 0;
    Ok(status == 200 && after - before >= MIN_HANDLED && audit && gateway.is_ok() && memory_ok)
}

/// Commands the handler must handle while the heartbeat runs at 500/s for 20 s.
const MIN_HANDLED: f64 = 5_000.0;

/// The most resident memory any service may use while the pipeline runs at 500 commands/s.
const MEMORY_LIMIT_MIB: u64 = 64;

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
