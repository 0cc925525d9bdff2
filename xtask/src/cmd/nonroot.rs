//! The native path as an ordinary user, in `cargo xtask test` (which CI runs as root): an unprivileged user runs
//! `cargo xtask up` in a copy of the checkout while the root stack (Debian's PostgreSQL cluster on 5432, Kafka on
//! 9092, every service on its default port) is running, so every component must move to a port of its own. Then
//! `status`, a GraphQL round trip against the ports it picked, `down`, `up --strict-ports` (must fail, naming the
//! port), a warm `up` and `down` again; nothing of the user's may be left running.
//!
//! The user gets its own copies of what root has: the Rust toolchain (root's home is private), the crates the
//! lock file names (so the build needs no network), Kafka's jars, and the built web UI. Its target dir and caches
//! stay in its home between runs, so only a first run on a machine compiles the workspace.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::paths::Paths;
use crate::ports::{self, Ports, default_port};
use crate::{postgres, proc};

/// The unprivileged user the test runs as.
pub const USER: &str = "openbank-ci";

/// The named checks, and the timings for the summary.
pub struct Outcome {
    pub checks: Vec<(String, bool)>,
    pub cold_up: Option<Duration>,
    pub warm_up: Option<Duration>,
}

pub fn run(paths: &Paths) -> anyhow::Result<Outcome> {
    if !postgres::is_root() {
        bail!("the non-root test creates a user and runs as it, so `cargo xtask test` must run as root for it");
    }
    let home = ensure_user()?;
    let env = Env::prepare(paths, &home)?;
    let mut checks = Vec::new();

    let t = Instant::now();
    let (ok, out) = env.xtask(&["up"])?;
    let cold_up = t.elapsed();
    checks.push((
        format!("non-root `up` while the root stack holds the default ports ({:.0}s)", cold_up.as_secs_f64()),
        ok,
    ));
    if !ok {
        let _ = env.xtask(&["down"]);
        return Ok(Outcome { checks, cold_up: None, warm_up: None });
    }
    let picked = env.ports();
    let moved = ["postgres", "kafka", "kafka-controller", "schema-registry", "graphql-endpoint", "command-handler"]
        .iter()
        .all(|slot| picked.port(slot) != default_port(slot).unwrap_or(0));
    let said = out.contains("is in use by");
    if !(moved && said) {
        eprintln!("FAIL non-root: ports {picked:?}; `up` said that ports were in use: {said}");
    }
    checks.push(("non-root `up` moves every component off a taken port and says so".into(), moved && said));

    let (status_ok, _) = env.xtask(&["status"])?;
    checks.push(("non-root `status` reports every component healthy".into(), status_ok));

    let gateway = format!("127.0.0.1:{}", picked.port("graphql-endpoint"));
    let round_trip = crate::cmd::test::gateway_check(&gateway);
    match &round_trip {
        Ok(line) => eprintln!("ok   non-root GraphQL round trip on {gateway}: {line}"),
        Err(e) => eprintln!("FAIL non-root GraphQL round trip on {gateway}: {e:#}"),
    }
    checks.push((
        format!("GraphQL round trip against the port the non-root `up` picked ({gateway})"),
        round_trip.is_ok(),
    ));

    let (down_ok, _) = env.xtask(&["down"])?;
    let (strict_ok, strict_out) = env.xtask(&["up", "--strict-ports"])?;
    let named = strict_out.contains("port 5432 is in use by") && strict_out.contains("--strict-ports");
    checks
        .push(("non-root `up --strict-ports` fails, naming the taken port and its holder".into(), !strict_ok && named));
    let t = Instant::now();
    let (warm_ok, _) = env.xtask(&["up"])?;
    let warm_up = t.elapsed();
    checks.push((format!("non-root `up` again after `down` (warm, {:.0}s)", warm_up.as_secs_f64()), warm_ok));
    let (down_again, _) = env.xtask(&["down"])?;
    // A stopped process is gone once its parent (init, for the detached services) has reaped it.
    proc::wait_quietly(Duration::from_secs(10), || env.processes_left().is_empty());
    let left = env.processes_left();
    if !left.is_empty() {
        eprintln!("FAIL left running as {USER}: {}", left.join("; "));
    }
    let busy: Vec<String> =
        env.ports().iter().filter(|(_, p)| !ports::is_free(*p)).map(|(s, p)| format!("{s} {p}")).collect();
    if !busy.is_empty() {
        eprintln!("FAIL ports still taken after the non-root `down`: {}", busy.join(", "));
    }
    checks.push((
        "non-root `down` leaves no process behind and frees its ports".into(),
        down_ok && down_again && left.is_empty() && busy.is_empty(),
    ));
    Ok(Outcome { checks, cold_up: Some(cold_up), warm_up: Some(warm_up) })
}

/// Creates the user (with a home) unless it exists; returns its home.
fn ensure_user() -> anyhow::Result<PathBuf> {
    let exists = Command::new("id").arg("-u").arg(USER).output().is_ok_and(|o| o.status.success());
    if !exists {
        eprintln!("creating the unprivileged user {USER}");
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "--comment", "Open Bank non-root test", USER])
            .status()
            .context("useradd")?
            .success();
        if !ok {
            bail!("useradd {USER} failed");
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let home = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&USER)).then(|| f.get(5).map(|h| PathBuf::from(*h)))?
        })
        .with_context(|| format!("{USER} has no home in /etc/passwd"))?;
    Ok(home)
}

/// What the user runs with: its copy of the checkout, toolchain and caches.
struct Env {
    home: PathBuf,
    checkout: PathBuf,
    toolchain_bin: PathBuf,
}

impl Env {
    fn prepare(paths: &Paths, home: &Path) -> anyhow::Result<Self> {
        let cache = home.join(".cache").join("open-bank");
        std::fs::create_dir_all(&cache)?;

        // The toolchain the checkout pins (root's rustup home is private to root).
        let sysroot = output(Command::new("rustc").current_dir(&paths.root).args(["--print", "sysroot"]))?;
        let sysroot = PathBuf::from(sysroot.trim());
        let version = output(Command::new("rustc").current_dir(&paths.root).arg("--version"))?;
        let toolchain = cache.join("toolchain");
        let stamp = toolchain.join(".version");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(version.trim()) {
            eprintln!("copying the Rust toolchain ({}) for {USER}", version.trim());
            let _ = std::fs::remove_dir_all(&toolchain);
            std::fs::create_dir_all(&toolchain)?;
            copy_tree(&sysroot, &toolchain, &["./share/doc"])?;
            std::fs::write(&stamp, version.trim())?;
        }

        // The crates (registry index and downloads), so the build runs offline.
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .context("no CARGO_HOME or HOME")?;
        let registry = home.join(".cargo").join("registry");
        for part in ["index", "cache"] {
            let from = cargo_home.join("registry").join(part);
            if from.is_dir() {
                std::fs::create_dir_all(registry.join(part))?;
                copy_tree(&from, &registry.join(part), &[])?;
            }
        }

        // Kafka's jars (else Maven fetches them into the user's cache: the same, only slower).
        let jars = crate::kafka::libs(paths);
        if jars.join(".complete").exists() {
            let to = cache.join(jars.parent().and_then(Path::file_name).context("kafka cache folder")?);
            std::fs::create_dir_all(&to)?;
            copy_tree(jars.parent().context("kafka cache folder")?, &to, &[])?;
        }

        // A fresh copy of the checkout, with the built web UI and its stamps (the user needs no npm).
        let checkout = home.join("open-bank");
        if checkout.exists() {
            std::fs::remove_dir_all(&checkout).with_context(|| format!("cannot delete {}", checkout.display()))?;
        }
        std::fs::create_dir_all(checkout.join(".openbank"))?;
        copy_tree(
            &paths.root,
            &checkout,
            &["./.openbank", "./results", "./target", "./fuzz/target", "./fuzz/corpus", "./fuzz/artifacts"],
        )?;
        for stamp in ["frontend.hash", "frontend-lock.hash"] {
            let from = paths.home.join(stamp);
            if from.exists() {
                std::fs::copy(&from, checkout.join(".openbank").join(stamp))?;
            }
        }
        let ok = Command::new("chown").arg("-R").arg(format!("{USER}:")).arg(home).status()?.success();
        if !ok {
            bail!("chown -R {USER} {} failed", home.display());
        }
        Ok(Self { home: home.to_path_buf(), checkout, toolchain_bin: toolchain.join("bin") })
    }

    /// `cargo xtask <args>` as the user, in its checkout, with a clean environment; output passed through.
    fn xtask(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        eprintln!("\n--> as {USER}: cargo xtask {}", args.join(" "));
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", self.toolchain_bin.display());
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={USER}"))
            .arg(format!("PATH={path}"))
            .arg("LANG=C.UTF-8")
            .arg("CARGO_NET_OFFLINE=true")
            .arg("CARGO_TERM_COLOR=never")
            .arg(format!("CARGO_TARGET_DIR={}", self.home.join(".cache/open-bank/target").display()))
            .args(["sh", "-c", "cd \"$0\" && exec cargo xtask \"$@\" 2>&1"])
            .arg(&self.checkout)
            .args(args);
        proc::run_teeing(&mut cmd)
    }

    /// The ports the user's stack recorded.
    fn ports(&self) -> Ports {
        crate::state::State::load(&self.checkout.join(".openbank").join("state.json")).ports
    }

    /// The user's processes still running (`runuser`'s own are gone by now; zombies do not count).
    fn processes_left(&self) -> Vec<String> {
        let uid = Command::new("id")
            .args(["-u", USER])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let Some(uid) = uid else { return vec!["cannot read the user's uid".into()] };
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next())
            };
            if field("Uid:") == Some(uid.as_str()) && field("State:") != Some("Z") {
                left.push(format!("{} (pid {pid})", ports::process_name(pid)));
            }
        }
        left
    }
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies the tree `from` into `to` (with tar: modes kept, symlinks as links), leaving out `exclude` (paths
/// relative to `from`, spelled `./x`).
fn copy_tree(from: &Path, to: &Path, exclude: &[&str]) -> anyhow::Result<()> {
    let mut pack = Command::new("tar");
    pack.arg("-C").arg(from);
    for e in exclude {
        pack.arg(format!("--exclude={e}"));
    }
    let mut pack = pack.args(["-cf", "-", "."]).stdout(std::process::Stdio::piped()).spawn().context("tar")?;
    let stdout = pack.stdout.take().context("tar output")?;
    let unpacked = Command::new("tar").arg("-C").arg(to).args(["-xf", "-"]).stdin(stdout).status()?.success();
    let packed = pack.wait()?.success();
    if !(packed && unpacked) {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}
