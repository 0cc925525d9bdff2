//! The fuzzing step of `cargo xtask test`: every cargo-fuzz target of `fuzz/` runs for a bounded time, starting
//! from its committed seeds (`fuzz/corpus/<target>/`, read only) plus what earlier runs on this checkout found
//! (`.openbank/fuzz/<target>/`). The fuzz crate needs a nightly toolchain (through rustup, for `fuzz/` only);
//! cargo-fuzz is installed when missing. Without nightly the step is skipped, except under `CI=true`, where it
//! fails. A finding (a panic, a broken invariant, a timeout) fails the step, naming the input that caused it.

use anyhow::Context;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::paths::Paths;

/// Seconds each target runs; the whole step stays near two minutes plus the build.
pub const SECONDS_PER_TARGET: u64 = 20;

/// What the fuzzing step did.
#[derive(Debug, Default)]
pub struct Summary {
    pub targets: usize,
    pub runs: u64,
    /// One line per finding: the target and the input that made it fail.
    pub findings: Vec<String>,
    /// Why the step did not run (no nightly outside CI).
    pub skipped: Option<String>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.findings.is_empty() && (self.targets > 0 || self.skipped.is_some())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.skipped {
            Some(why) => write!(f, "fuzz: skipped ({why})"),
            None => write!(f, "fuzz: {} targets, {} runs, {} findings", self.targets, self.runs, self.findings.len()),
        }
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `cargo` of the nightly toolchain, through rustup (the workspace pins a stable one in rust-toolchain.toml).
fn nightly_cargo(paths: &Paths) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]).current_dir(&paths.root);
    // The stable toolchain that runs xtask must not leak into the nightly build.
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"] {
        c.env_remove(var);
    }
    c
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("nightly")))
}

/// The targets: the `[[bin]]`s of `fuzz/Cargo.toml`, in their order.
pub fn targets(manifest: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
            targets.push(name.trim_matches('"').to_owned());
        }
    }
    targets
}

/// From libFuzzer's output: the number of runs (its last `Done N runs` or `#N` status line) and the input it
/// wrote when it found something.
pub fn parse_output(output: &str) -> (u64, Option<String>) {
    let mut runs = 0;
    let mut crash = None;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("Done ")
            && let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            runs = n;
        } else if let Some(rest) = line.strip_prefix('#')
            && let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            runs = n;
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            crash = Some(path.trim().to_owned());
        }
    }
    (runs, crash)
}

/// Builds and runs every target for `seconds` each.
pub fn run(paths: &Paths, seconds: u64) -> anyhow::Result<Summary> {
    if !has_nightly() {
        anyhow::ensure!(
            !ci(),
            "the fuzz targets need a nightly toolchain and CI=true: `rustup toolchain install nightly --profile minimal`"
        );
        let why = "no nightly toolchain; `rustup toolchain install nightly --profile minimal`";
        eprintln!("SKIP fuzz: {why}");
        return Ok(Summary { skipped: Some(why.into()), ..Summary::default() });
    }
    let has_cargo_fuzz =
        nightly_cargo(paths).args(["fuzz", "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !has_cargo_fuzz.is_ok_and(|s| s.success()) {
        eprintln!("installing cargo-fuzz");
        let installed = Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).status()?;
        anyhow::ensure!(installed.success(), "`cargo install cargo-fuzz --locked` failed");
    }
    // No sanitizer: the crates forbid `unsafe`, so AddressSanitizer would only slow the runs down; panics,
    // overflow checks and debug assertions are what the targets trip.
    let built = nightly_cargo(paths).args(["fuzz", "build", "--sanitizer", "none"]).status()?;
    anyhow::ensure!(built.success(), "`cargo +nightly fuzz build` failed");

    let manifest = std::fs::read_to_string(paths.root.join("fuzz/Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    let mut summary = Summary::default();
    for target in targets(&manifest) {
        let (runs, finding) = run_target(paths, &target, seconds)?;
        summary.targets += 1;
        summary.runs += runs;
        match finding {
            Some(f) => {
                eprintln!("FAIL fuzz {target}: {f}");
                summary.findings.push(format!("{target}: {f}"));
            }
            None => eprintln!("ok   fuzz {target}: {runs} runs in {seconds} s, no finding"),
        }
    }
    Ok(summary)
}

/// One target for `seconds`: its runs, and a description of its finding if it had one.
fn run_target(paths: &Paths, target: &str, seconds: u64) -> anyhow::Result<(u64, Option<String>)> {
    let work = paths.home.join("fuzz").join(target);
    std::fs::create_dir_all(&work)?;
    let seeds = paths.root.join("fuzz/corpus").join(target);
    let log_path = paths.logs().join(format!("fuzz-{target}.log"));
    std::fs::create_dir_all(paths.logs())?;
    let log = std::fs::File::create(&log_path)?;
    // libFuzzer adds what it finds to the first corpus folder only: the committed seeds stay as they are. It runs
    // in its work folder, so that a core it leaves (a stack overflow kills it before libFuzzer can write the
    // input) is this target's finding, not taken for a service's crash.
    let started = std::time::SystemTime::now();
    let status = nightly_cargo(paths)
        .current_dir(&work)
        .args(["fuzz", "run", "--sanitizer", "none", "--fuzz-dir"])
        .arg(paths.root.join("fuzz"))
        .arg(target)
        .arg(&work)
        .arg(&seeds)
        .args(["--", &format!("-max_total_time={seconds}"), "-timeout=10", "-rss_limit_mb=1024"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (runs, crash) = parse_output(&output);
    let finding = match (status.success(), crash) {
        (true, None) => None,
        (_, Some(input)) => {
            Some(format!("crash input {} (log {})", absolute(paths, &input).display(), log_path.display()))
        }
        (false, None) => {
            // Killed before libFuzzer could write the input (a stack overflow does that): the core says where.
            let cores = crate::crash::report_in(std::slice::from_ref(&work), &paths.logs(), started);
            eprintln!("the end of {}:", log_path.display());
            for line in tail(&output, 15) {
                eprintln!("  {line}");
            }
            Some(format!(
                "exited with {status} without an input (log {}){}",
                log_path.display(),
                if cores.is_empty() { String::new() } else { format!("; {}", cores.join("; ")) }
            ))
        }
    };
    Ok((runs, finding))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let count = text.lines().count();
    text.lines().skip(count.saturating_sub(n)).collect()
}

fn absolute(paths: &Paths, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { paths.root.join("fuzz").join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_targets_of_the_fuzz_manifest() {
        let manifest = "[package]\nname = \"open-bank-fuzz\"\n\n[dependencies]\nname = \"x\"\n\n\
                        [[bin]]\nname = \"iban\"\npath = \"fuzz_targets/iban.rs\"\n\n[[bin]]\nname = \"money\"\n";
        assert_eq!(targets(manifest), ["iban", "money"]);
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/Cargo.toml")).unwrap();
        let found = targets(&committed);
        assert!(found.len() >= 6, "{found:?}");
        for t in &found {
            let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(t);
            assert!(std::fs::read_dir(&seeds).is_ok_and(|d| d.count() > 0), "no seeds for {t}");
        }
    }

    #[test]
    fn reads_runs_and_the_crash_input_from_libfuzzer_output() {
        let clean = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\nDone 123456 runs in 21 second(s)\n";
        assert_eq!(parse_output(clean), (123_456, None));
        let crashed = "#77\tNEW    cov: 3\nthread panicked at x.rs:1:1\n==1== ERROR: libFuzzer: deadly signal\n\
                       artifact_prefix='/r/fuzz/artifacts/iban/'; Test unit written to /r/fuzz/artifacts/iban/crash-ab\n";
        assert_eq!(parse_output(crashed), (77, Some("/r/fuzz/artifacts/iban/crash-ab".into())));
        assert!(!Summary { targets: 1, findings: vec!["iban: x".into()], ..Summary::default() }.ok());
        assert!(!Summary::default().ok(), "no target run is no pass");
        let s = Summary { targets: 6, runs: 10, ..Summary::default() };
        assert!(s.ok());
        assert_eq!(s.to_string(), "fuzz: 6 targets, 10 runs, 0 findings");
    }

    #[test]
    fn tails_a_log() {
        assert_eq!(tail("a\nb\nc", 2), ["b", "c"]);
        assert_eq!(tail("a", 5), ["a"]);
        assert!(tail("", 3).is_empty());
    }
}
