//! `cargo xtask chaos`: load through the GraphQL API (the load tester's `chaos drive`) and the heartbeat while a
//! seeded schedule kill -9s and restarts the command-handler, the graphql-endpoint and the command-generator,
//! restarts PostgreSQL, kills a Kafka broker and starts it again, writes poison records to the command
//! topics, registers a compatible new version of every schema the bank writes (then restarts every producer), and
//! attacks the gateway with slow connections and alias storms. Then the pipeline drains, `bank-audit` runs, and `chaos verify` checks that every transfer the client
//! saw CONFIRMED is stored once, in the history once per account, and in the balances. Prints a timeline and a
//! summary line; exit 0 only if all of it holds.

use anyhow::{Context, bail};
use bank_core::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::status::status_quiet;
use crate::env::Endpoints;
use crate::instance::instance_name;
use crate::paths::Paths;
use crate::stack;
use crate::state::State;
use crate::{http, kafka, proc};

pub struct ChaosOptions {
    pub duration: u64,
    pub seed: Option<u64>,
    pub rate: u32,
    pub heartbeat_rate: u32,
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 a service instance, then start it again.
    Kill(String),
    RestartPostgres,
    /// kill -9 a Kafka node, wait, start it again (the single broker, or one of three).
    KillBroker(String),
    Poison(&'static str),
    /// A BACKWARD-compatible new version of every subject (`load-test chaos evolve`), then every producer
    /// (handlers, gateways, generator) kill -9ed and started again, so each looks its schema id up anew.
    NewSchemas,
    /// Hundreds of connections that send half a request header (`load-test chaos slow`): closed by the timeout.
    SlowConnections,
    /// Requests of hundreds of aliased pages (`load-test chaos storm`): refused before they run.
    AliasStorm,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kill(name) => write!(f, "kill -9 {name}"),
            Self::RestartPostgres => write!(f, "restart postgres"),
            Self::KillBroker(name) => write!(f, "kill -9 {name}"),
            Self::Poison(kind) => write!(f, "poison {kind}"),
            Self::NewSchemas => write!(f, "new schema versions"),
            Self::SlowConnections => write!(f, "slow connections"),
            Self::AliasStorm => write!(f, "alias storm"),
        }
    }
}

pub const POISON_KINDS: [&str; 4] = ["garbage", "unknown-schema", "oversized", "hostile"];

/// The stack's shape, for the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub brokers: u32,
    pub handlers: u32,
    pub gateways: u32,
}

/// The faults of a run and when each starts (seconds after the load starts): every kind at least once, the
/// service kills again on longer runs, in a seeded order, spread over 10 % to 85 % of the run.
pub fn schedule(seed: u64, duration: u64, shape: Shape) -> Vec<(u64, Fault)> {
    let mut rng = Rng::new(seed);
    let pick = |base: &str, n: u32, rng: &mut Rng| {
        let i = u32::try_from(rng.below(u64::from(n.max(1)))).unwrap_or(0) + 1;
        instance_name(base, i)
    };
    let rounds = (duration / 60).max(1);
    let mut faults = Vec::new();
    for round in 0..rounds {
        faults.push(Fault::Kill(pick("command-handler", shape.handlers, &mut rng)));
        faults.push(Fault::Kill(pick("graphql-endpoint", shape.gateways, &mut rng)));
        faults.push(Fault::Kill("command-generator".into()));
        if round == 0 {
            faults.push(Fault::RestartPostgres);
            faults.push(Fault::KillBroker(pick("kafka", shape.brokers, &mut rng)));
            faults.extend(POISON_KINDS.iter().map(|k| Fault::Poison(k)));
            faults.push(Fault::NewSchemas);
            faults.push(Fault::SlowConnections);
            faults.push(Fault::AliasStorm);
        }
    }
    // Fisher-Yates with the seed.
    for i in (1..faults.len()).rev() {
        let j = usize::try_from(rng.below(u64::try_from(i + 1).unwrap_or(1))).unwrap_or(0);
        faults.swap(i, j);
    }
    let (from, to) = (duration / 10, duration * 85 / 100);
    let n = u64::try_from(faults.len()).unwrap_or(1).max(1);
    let slot = (to.saturating_sub(from) / n).max(1);
    faults
        .into_iter()
        .enumerate()
        .map(|(i, f)| (from + u64::try_from(i).unwrap_or(0) * slot + rng.below(slot / 2 + 1), f))
        .collect()
}

/// The timeline, printed as it happens and again at the end.
struct Timeline {
    start: Instant,
    lines: Vec<String>,
}

impl Timeline {
    fn log(&mut self, what: &str) {
        let line = format!("[{:>6.1}s] {what}", self.start.elapsed().as_secs_f64());
        eprintln!("chaos {line}");
        self.lines.push(line);
    }
}

/// Whether the running services are release builds (their binary lies under `target/release`).
fn running_release(state: &State) -> bool {
    state
        .get("command-handler")
        .and_then(|r| r.pid)
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
        .is_some_and(|exe| exe.parent().and_then(Path::file_name).is_some_and(|d| d == "release"))
}

fn cargo_build(paths: &Paths, release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&paths.root).args(["build", "-q", "-p", "load-test", "-p", "bank-audit"]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("failed to run cargo")?.success() {
        bail!("building the load tester failed");
    }
    Ok(())
}

fn load_tester(paths: &Paths, endpoints: &Endpoints) -> Command {
    let mut c = Command::new(paths.bin("load-test"));
    endpoints.apply(&mut c);
    c.current_dir(&paths.root).env("OPENBANK_ROOT", &paths.root);
    c
}

/// Runs one `load-test chaos …` step to its end; returns whether it succeeded and its last output line.
fn run_step(mut cmd: Command) -> (bool, String) {
    match cmd.stderr(Stdio::inherit()).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            (out.status.success(), text.lines().last().unwrap_or("no output").to_owned())
        }
        Err(e) => (false, format!("cannot run the load tester: {e}")),
    }
}

/// Carries out one fault; returns what happened, or an error when the stack did not recover from it.
fn inject(fault: &Fault, paths: &Paths, endpoints: &Endpoints, release: bool, rng: &mut Rng) -> anyhow::Result<String> {
    let t = Instant::now();
    match fault {
        Fault::Kill(name) => {
            let state = State::load(&paths.state_file());
            let r = state.get(name).with_context(|| format!("{name} is not in the state file"))?;
            let pid = r.pid.with_context(|| format!("{name} has no pid"))?;
            proc::kill(pid, &r.needle);
            std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
            crate::cmd::up::start_instance(release, name)?;
            Ok(format!("{fault} (pid {pid}): running again after {:.1}s", t.elapsed().as_secs_f64()))
        }
        Fault::RestartPostgres => {
            let mut state = State::load(&paths.state_file());
            let c = stack::find("postgres").context("no postgres component")?;
            c.restart(paths, &mut state)?;
            Ok(format!("{fault}: accepting connections after {:.1}s", t.elapsed().as_secs_f64()))
        }
        Fault::KillBroker(name) => {
            let mut state = State::load(&paths.state_file());
            kafka::kill_node(&state, name)?;
            std::thread::sleep(Duration::from_secs(3 + rng.below(5)));
            kafka::start_again(paths, &mut state, name)?;
            Ok(format!("{fault}: serving again after {:.1}s", t.elapsed().as_secs_f64()))
        }
        Fault::Poison(kind) => {
            let mut cmd = load_tester(paths, endpoints);
            cmd.args(["chaos", "poison", "--kind", kind, "--endpoint", &endpoints.graphql_url()]);
            let (ok, line) = run_step(cmd);
            if !ok {
                bail!("{fault}: {line}");
            }
            Ok(format!("{fault}: {line}"))
        }
        Fault::SlowConnections | Fault::AliasStorm => {
            let step = if *fault == Fault::SlowConnections { "slow" } else { "storm" };
            let count = if *fault == Fault::SlowConnections { "300" } else { "40" };
            let mut cmd = load_tester(paths, endpoints);
            cmd.args(["chaos", step, "--count", count, "--endpoint", &endpoints.graphql_url()]);
            let (ok, line) = run_step(cmd);
            if !ok {
                bail!("{fault}: {line}");
            }
            Ok(format!("{fault}: {line}"))
        }
        Fault::NewSchemas => {
            let mut cmd = load_tester(paths, endpoints);
            cmd.args(["chaos", "evolve", "--endpoint", &endpoints.graphql_url()]);
            let (ok, line) = run_step(cmd);
            if !ok {
                bail!("{fault}: {line}");
            }
            // Every producer killed, gone (its port free), then started again: each looks its schema id up anew.
            let state = State::load(&paths.state_file());
            let mut killed = Vec::new();
            for base in ["command-handler", "graphql-endpoint", "command-generator"] {
                for n in 1..=crate::state::recorded_instances(&state, base).max(1) {
                    let name = instance_name(base, n);
                    let r = state.get(&name).with_context(|| format!("{name} is not in the state file"))?;
                    if let Some(pid) = r.pid {
                        proc::kill(pid, &r.needle);
                        proc::wait_until(&format!("{name} (pid {pid}) to exit"), Duration::from_secs(10), || {
                            !proc::alive(pid, &r.needle)
                        })?;
                    }
                    killed.push(name);
                }
            }
            for name in &killed {
                crate::cmd::up::start_instance(release, name)?;
            }
            Ok(format!("{fault}: {line}; kill -9ed and started again: {}", killed.join(", ")))
        }
    }
}

pub fn chaos(opts: &ChaosOptions) -> anyhow::Result<i32> {
    let seed = opts.seed.unwrap_or_else(bank_core::clock::unix_secs);
    let started_at = std::time::SystemTime::now();
    crate::crash::allow_core_dumps();
    let state = State::load(&Paths::new(false)?.state_file());
    if !status_quiet() {
        bail!("the stack is not up and healthy; start it with `cargo xtask up` (see `cargo xtask status`)");
    }
    let release = running_release(&state);
    let paths = Paths::new(release)?;
    let endpoints = Endpoints::resolve(&paths)?;
    let shape = Shape {
        brokers: crate::state::recorded_instances(&state, "kafka").max(1),
        handlers: crate::state::recorded_instances(&state, "command-handler").max(1),
        gateways: crate::state::recorded_instances(&state, "graphql-endpoint").max(1),
    };
    cargo_build(&paths, release)?;
    let plan = schedule(seed, opts.duration, shape);
    eprintln!(
        "chaos: seed {seed}, {} s, {} transfers/s through the API, heartbeat {}/s; {} broker(s), {} handler(s), {} gateway(s); {} faults planned",
        opts.duration,
        opts.rate,
        opts.heartbeat_rate,
        shape.brokers,
        shape.handlers,
        shape.gateways,
        plan.len()
    );
    let out_dir = results_dir(&paths.root, seed);
    std::fs::create_dir_all(&out_dir)?;
    let transfers = out_dir.join("transfers.json");
    let mut timeline = Timeline { start: Instant::now(), lines: Vec::new() };

    // The heartbeat's load, restored afterwards.
    let heartbeat = endpoints.address("heartbeat");
    let previous = http::call(&heartbeat, "GET", "/rate", None).map(|(_, b)| b).unwrap_or_default();
    let rate = format!(r#"{{"beats_per_second": {}}}"#, opts.heartbeat_rate);
    let set = http::call(&heartbeat, "PUT", "/rate", Some(&rate)).map(|(s, _)| s);
    timeline.log(&format!("heartbeat at {}/s (PUT /rate answered {set:?})", opts.heartbeat_rate));

    let gateways: Vec<String> = (1..=shape.gateways)
        .map(|n| format!("http://{}", endpoints.address(&crate::instance::instance_name("graphql-endpoint", n))))
        .collect();
    let mut drive = load_tester(&paths, &endpoints);
    drive
        .args(["chaos", "drive", "--duration", &opts.duration.to_string(), "--rate", &opts.rate.to_string()])
        .args(["--seed", &seed.to_string(), "--endpoints", &gateways.join(",")])
        .arg("--out")
        .arg(&transfers)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let child = drive.spawn().context("cannot start the load tester")?;
    timeline.log(&format!("load: {} transfers/s for {} s through {}", opts.rate, opts.duration, gateways.join(", ")));

    let load_start = Instant::now();
    let mut rng = Rng::new(seed.rotate_left(17) ^ 0xC4A0_5EED);
    let mut faults_ok = true;
    let mut injected = 0usize;
    for (at, fault) in &plan {
        let due = load_start + Duration::from_secs(*at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        injected += 1;
        match inject(fault, &paths, &endpoints, release, &mut rng) {
            Ok(line) => timeline.log(&line),
            Err(e) => {
                faults_ok = false;
                timeline.log(&format!("FAIL {fault}: {e:#}"));
            }
        }
    }
    let (drive_ok, drive_line) = finish_drive(child, load_start, opts.duration, &mut timeline);
    let restore = if previous.contains("beats_per_second") { previous } else { r#"{"beats_per_second": 10}"#.into() };
    http::call(&heartbeat, "PUT", "/rate", Some(&restore));
    timeline.log("heartbeat rate restored");

    // Anything a failed restart left down comes back before the checks.
    let healthy = proc::wait_quietly(Duration::from_secs(60), status_quiet);
    timeline.log(if healthy {
        "every component healthy"
    } else {
        "FAIL some component is still down (see `cargo xtask status`)"
    });

    timeline.log("audit: waiting for the pipeline to drain, then checking the invariants");
    let (audit_ok, audit_failed) = audit_teeing(&endpoints)?;
    timeline.log(&if audit_ok {
        "audit passed".to_owned()
    } else {
        format!("audit FAILED: {}", audit_failed.join("; "))
    });
    let mut verify = load_tester(&paths, &endpoints);
    verify.args(["chaos", "verify", "--transfers"]).arg(&transfers);
    let (verify_ok, verify_line) =
        if transfers.exists() { run_step(verify) } else { (false, "no transfers were recorded".to_owned()) };
    timeline.log(&verify_line);

    eprintln!("\ntimeline (seed {seed}):");
    for line in &timeline.lines {
        eprintln!("  {line}");
    }
    // A service that died of a signal (not one of the kill -9s above) left a core: its backtrace is the evidence.
    let crashes = crate::crash::report(&paths.root, &paths.logs(), started_at);
    for c in &crashes {
        eprintln!("chaos: FAIL {c}");
    }
    let counts = drive_counts(&drive_line);
    // Exactly-once over nothing proves nothing: the run must have moved money.
    let moved = counts.confirmed > 0;
    if !moved {
        eprintln!("chaos: no transfer was confirmed, so the exactly-once check had nothing to check");
    }
    let ok =
        faults_ok && drive_ok && healthy && audit_ok && verify_ok && counts.pending == 0 && moved && crashes.is_empty();
    println!(
        "chaos: seed {seed}, {} s, {} broker(s), {} handler(s): sent {}, confirmed {}, failed {}, pending {}; {injected} faults injected{}; audit {}; exactly once {}; {}",
        opts.duration,
        shape.brokers,
        shape.handlers,
        counts.sent,
        counts.confirmed,
        counts.failed,
        counts.pending,
        if faults_ok { String::new() } else { " (some did not recover)".into() },
        if audit_ok { "OK".to_owned() } else { format!("FAILED ({})", audit_failed.join("; ")) },
        if verify_ok { "OK" } else { "FAILED" },
        if ok { "OK" } else { "FAILED" }
    );
    Ok(if ok { 0 } else { 1 })
}

/// `bank-audit` (debug build, as `cargo xtask audit`) with its output passed through; whether it passed and the
/// checks that failed, as it printed them.
fn audit_teeing(endpoints: &Endpoints) -> anyhow::Result<(bool, Vec<String>)> {
    let paths = Paths::new(false)?;
    let bin = paths.bin("bank-audit");
    if !bin.exists() {
        crate::setup::build(&paths, false, true)?;
    }
    let mut cmd = Command::new(&bin);
    endpoints.apply(&mut cmd);
    cmd.env("AUDIT_SETTLE_SECS", "180");
    let (ok, output) = proc::run_teeing(&mut cmd)?;
    Ok((ok, failed_checks(&output)))
}

/// The `FAIL <check>: <detail>` lines of an audit's output.
pub fn failed_checks(output: &str) -> Vec<String> {
    output.lines().filter_map(|l| l.strip_prefix("FAIL ")).map(|l| l.trim().to_owned()).collect()
}

/// Waits for the load tester's `drive` (its load, then its settling of undecided transfers).
fn finish_drive(mut child: Child, start: Instant, duration: u64, timeline: &mut Timeline) -> (bool, String) {
    let limit = start + Duration::from_secs(duration + 300);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut s) = child.stdout.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut out);
                }
                let line = out.lines().last().unwrap_or("drive printed nothing").to_owned();
                timeline.log(&format!("load done: {line}"));
                return (status.success(), line);
            }
            Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                timeline.log("FAIL the load tester did not finish; stopped");
                return (false, String::new());
            }
        }
    }
}

/// The fault tests of `cargo xtask test`, on the running stack (one broker, one instance of each service): a 60 s
/// chaos run, then two command-handler instances under crossing transfers. Leaves the stack as it found it.
pub fn ci_checks() -> anyhow::Result<Vec<(String, bool)>> {
    let chaos_ok = chaos(&ChaosOptions { duration: 60, seed: None, rate: 20, heartbeat_rate: 100 })? == 0;
    let two = match two_handlers() {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("FAIL two handler instances: {e:#}");
            false
        }
    };
    // Whatever happened, the second instance goes and the rest is healthy for what follows.
    let paths = Paths::new(false)?;
    let mut state = State::load(&paths.state_file());
    crate::cmd::up::scale_down(&paths, &mut state, "command-handler", 1)?;
    let healthy = proc::wait_quietly(Duration::from_secs(60), status_quiet);
    Ok(vec![
        ("chaos (60 s of kill -9s, restarts and poison records): audit and exactly-once hold".into(), chaos_ok),
        (
            "two command-handler instances, crossing transfers: no deadlock retries, audit and exactly-once hold"
                .into(),
            two,
        ),
        ("the stack is healthy after the fault tests".into(), healthy),
    ])
}

/// The `reason="deadlock"` sample of `handler_batch_retries_total` in a `/metrics` body.
pub fn deadlock_retries(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(bank_core::metric_names::HANDLER_BATCH_RETRIES).is_some_and(|rest| rest.starts_with('{'))
                && l.contains("reason=\"deadlock\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A second command-handler instance in the same group; users paying each other both ways (4 users, 50
/// transfers/s through the API) and the heartbeat at 300/s for 20 s. Both instances must handle commands, neither
/// may retry a batch for a deadlock, and the audit and the exactly-once check must pass.
fn two_handlers() -> anyhow::Result<bool> {
    let paths = Paths::new(false)?;
    crate::cmd::up::start_instance(false, "command-handler-2")?;
    // The second instance's port was placed by `start_instance`: read the addresses after it.
    let endpoints = Endpoints::resolve(&paths)?;
    let handlers = [endpoints.address("command-handler"), endpoints.address("command-handler-2")];
    let heartbeat = endpoints.address("heartbeat");
    let read = |addr: &str, f: &dyn Fn(&str) -> f64| http::call(addr, "GET", "/metrics", None).map(|(_, b)| f(&b));
    let count_handled = |b: &str| http::metric_sum(b, bank_core::metric_names::HANDLER_COMMANDS);
    let before: Vec<(f64, f64)> = handlers
        .iter()
        .map(|a| (read(a, &deadlock_retries).unwrap_or(0.0), read(a, &count_handled).unwrap_or(0.0)))
        .collect();
    let previous = http::call(&heartbeat, "GET", "/rate", None).map(|(_, b)| b).unwrap_or_default();
    http::call(&heartbeat, "PUT", "/rate", Some(r#"{"beats_per_second": 300}"#));
    let seed = bank_core::clock::unix_secs();
    let transfers = results_dir(&paths.root, seed).join("two-handlers.json");
    let mut drive = load_tester(&paths, &endpoints);
    drive.args(["chaos", "drive", "--duration", "20", "--rate", "50", "--users", "4", "--seed", &seed.to_string()]);
    drive.arg("--out").arg(&transfers);
    let (drive_ok, drive_line) = run_step(drive);
    let restore = if previous.contains("beats_per_second") { previous } else { r#"{"beats_per_second": 10}"#.into() };
    http::call(&heartbeat, "PUT", "/rate", Some(&restore));
    eprintln!("two handlers: {drive_line}");
    let audit_ok = crate::cmd::audit::audit(120)? == 0;
    let mut verify = load_tester(&paths, &endpoints);
    verify.args(["chaos", "verify", "--transfers"]).arg(&transfers);
    let (verify_ok, verify_line) = run_step(verify);
    eprintln!("two handlers: {verify_line}");
    let confirmed = drive_counts(&drive_line).confirmed;
    if confirmed == 0 {
        eprintln!("two handlers: no transfer was confirmed, so there was nothing to check");
    }
    let mut ok = drive_ok && audit_ok && verify_ok && confirmed > 0;
    for (addr, (deadlocks_before, handled_before)) in handlers.iter().zip(&before) {
        let deadlocks = read(addr, &deadlock_retries).map(|d| d - deadlocks_before);
        let handled = read(addr, &count_handled).map(|h| h - handled_before);
        eprintln!("two handlers: {addr} handled {handled:?} commands, {deadlocks:?} deadlock retries");
        ok &= deadlocks == Some(0.0) && handled.is_some_and(|h| h > 0.0);
    }
    Ok(ok)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DriveCounts {
    pub sent: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub pending: u64,
}

/// The counts of `drive`'s line `drive: sent N confirmed N failed N pending N (...)`.
pub fn drive_counts(line: &str) -> DriveCounts {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| -> u64 {
        words.windows(2).find(|w| w.first() == Some(&key)).and_then(|w| w.get(1)?.parse().ok()).unwrap_or(0)
    };
    DriveCounts {
        sent: after("sent"),
        confirmed: after("confirmed"),
        failed: after("failed"),
        pending: after("pending"),
    }
}

/// Where a run's records go.
pub fn results_dir(root: &Path, seed: u64) -> PathBuf {
    root.join("results").join(format!("chaos-{seed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_repeats_for_a_seed_and_covers_every_fault() {
        let shape = Shape { brokers: 3, handlers: 2, gateways: 1 };
        let a = schedule(7, 120, shape);
        assert_eq!(a, schedule(7, 120, shape));
        assert_ne!(a, schedule(8, 120, shape));
        for kind in POISON_KINDS {
            assert!(a.iter().any(|(_, f)| *f == Fault::Poison(kind)), "{kind}");
        }
        assert!(a.iter().any(|(_, f)| *f == Fault::RestartPostgres));
        for once in [Fault::NewSchemas, Fault::SlowConnections, Fault::AliasStorm] {
            assert_eq!(a.iter().filter(|(_, f)| *f == once).count(), 1, "{once}");
        }
        assert!(a.iter().any(|(_, f)| matches!(f, Fault::KillBroker(n) if n.starts_with("kafka"))));
        for s in ["command-handler", "graphql-endpoint", "command-generator"] {
            assert_eq!(a.iter().filter(|(_, f)| matches!(f, Fault::Kill(n) if n.starts_with(s))).count(), 2, "{s}");
        }
        assert!(a.iter().all(|(at, _)| (12..=110).contains(at)), "{a:?}");
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
        // One gateway: never a second one killed.
        assert!(!a.iter().any(|(_, f)| *f == Fault::Kill("graphql-endpoint-2".into())));
        let short = schedule(1, 60, Shape { brokers: 1, handlers: 1, gateways: 1 });
        assert_eq!(short.len(), 3 + 2 + 4 + 3);
        assert!(short.iter().any(|(_, f)| *f == Fault::KillBroker("kafka".into())));
    }

    #[test]
    fn reads_deadlock_retries_only() {
        let body = "handler_batch_retries_total{reason=\"deadlock\"} 2\n\
                    handler_batch_retries_total{reason=\"serialization\"} 5\n\
                    handler_batch_retries_total_other{reason=\"deadlock\"} 9\n";
        assert_eq!(deadlock_retries(body), 2.0);
        assert_eq!(deadlock_retries(""), 0.0);
    }

    #[test]
    fn reads_failed_audit_checks() {
        let out = "ok   money conserved: fine\nFAIL gateway projection agrees: 2 missing\naudit: 7 checks passed, 1 failed; FAILED\n";
        assert_eq!(failed_checks(out), ["gateway projection agrees: 2 missing"]);
        assert!(failed_checks("ok   all\n").is_empty());
    }

    #[test]
    fn reads_the_drive_counts() {
        let line = "drive: sent 1200 confirmed 1100 failed 99 pending 1 (first answers: 3 confirmed)";
        assert_eq!(drive_counts(line), DriveCounts { sent: 1200, confirmed: 1100, failed: 99, pending: 1 });
        assert_eq!(drive_counts("garbage"), DriveCounts::default());
    }
}
