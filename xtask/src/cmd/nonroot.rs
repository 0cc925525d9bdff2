//! The native path as an ordinary user, in `cargo xtask test` (which CI runs as root): an unprivileged user runs
//! `cargo xtask up` in a copy of the checkout while the root stack (Debian's PostgreSQL cluster on 5432, Kafka on
//! 9092, every service on its default port) is running, so every component must move to a port of its own. Then
//! `status`, a GraphQL round trip against the ports it picked, `down`, `up --strict-ports` (must fail, naming the
//! port), a warm `up` and `down` again; nothing of the user's may be left running.
//!
//! The user gets its own copies of what root has: the Rust toolchain (root's home is private), the crates the
//! lock file names (so the build needs no network), Kafka's jars, and the checkout's tracked files with the built
//! web UI; the user unpacks each itself, so root never writes into the user's home. Its target dir and caches stay
//! in its home between runs, so only a first run on a machine compiles the workspace.

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
    // One run at a time on a machine (two checkouts' tests would share the user, its home and its processes).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("openbank-non-root-test.lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).context("lock for the non-root test")?;
    let home = ensure_user()?;
    let env = Env::prepare(paths, &home)?;
    let outcome = steps(&env);
    if outcome.is_err() {
        // Whatever failed, the user's stack does not outlive the test.
        let _ = env.xtask(&["down"]);
    }
    outcome
}

fn steps(env: &Env) -> anyhow::Result<Outcome> {
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
    // Every tool and test reads the addresses from `.openbank/env`: it must name the picked ports.
    let file = env.settings();
    let written = file.get("KAFKA_BROKERS").map(String::as_str) == Some(picked.local("kafka").as_str())
        && file.get("SCHEMA_REGISTRY_URL").map(String::as_str) == Some(picked.url("schema-registry").as_str())
        && file.get("GRAPHQL_URL").map(String::as_str) == Some(picked.url("graphql-endpoint").as_str())
        && file.get("DATABASE_URL").is_some_and(|u| u.contains(&format!("@localhost:{}/", picked.port("postgres"))));
    if !(moved && said && written) {
        eprintln!("FAIL non-root: ports {picked:?}; `up` said so: {said}; .openbank/env names them: {written}");
    }
    checks.push((
        "non-root `up` moves every component off a taken port, says so and writes the ports to .openbank/env".into(),
        moved && said && written,
    ));

    let (status_ok, _) = env.xtask(&["status"])?;
    checks.push(("non-root `status` reports every component healthy".into(), status_ok));

    // The round trip must go through the user's own pipeline: its command-handler counts the commands.
    let handler = picked.listen("command-handler");
    let handled = || {
        crate::http::call(&handler, "GET", "/metrics", None)
            .map_or(0.0, |(_, body)| crate::http::metric_sum(&body, bank_core::metric_names::HANDLER_COMMANDS))
    };
    let before = handled();
    let gateway = picked.listen("graphql-endpoint");
    let round_trip = crate::http::gateway_check(&gateway);
    let own_handler = handled() - before >= 3.0;
    match &round_trip {
        Ok(line) => eprintln!("ok   non-root GraphQL round trip on {gateway}: {line}"),
        Err(e) => eprintln!("FAIL non-root GraphQL round trip on {gateway}: {e:#}"),
    }
    if !own_handler {
        eprintln!("FAIL the user's command-handler on {handler} did not handle the round trip's commands");
    }
    checks.push((
        format!("GraphQL round trip through the non-root stack's picked ports (gateway {gateway})"),
        round_trip.is_ok() && own_handler,
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
    /// Gives the user what it needs. Everything in its home is written by the user itself (root only reads and
    /// packs): a link the user left there cannot make root write elsewhere.
    fn prepare(paths: &Paths, home: &Path) -> anyhow::Result<Self> {
        let cache = home.join(".cache").join("open-bank");
        as_user(Command::new("mkdir").arg("-p").arg(&cache).arg(home.join(".cargo").join("registry")))?;

        // The toolchain the checkout pins (root's rustup home is private to root).
        let sysroot = output(Command::new("rustc").current_dir(&paths.root).args(["--print", "sysroot"]))?;
        let sysroot = PathBuf::from(sysroot.trim());
        if !sysroot.join("bin").join("cargo").exists() {
            bail!(
                "the non-root test copies the toolchain `rustc` runs from, but {} has no bin/cargo",
                sysroot.display()
            );
        }
        let version = output(Command::new("rustc").current_dir(&paths.root).arg("--version"))?;
        let version = version.trim();
        let toolchain = cache.join("toolchain");
        if std::fs::read_to_string(toolchain.join(".version")).ok().as_deref() != Some(version) {
            eprintln!("copying the Rust toolchain ({version}) for {USER}");
            as_user(Command::new("rm").arg("-rf").arg(&toolchain))?;
            copy_as_user(&sysroot, &toolchain, &["./share/doc"])?;
            as_user(
                Command::new("sh")
                    .args(["-c", "printf %s \"$1\" > \"$2\"", "sh", version])
                    .arg(toolchain.join(".version")),
            )?;
        }

        // The crates (registry index and downloads), so the build runs offline.
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .context("no CARGO_HOME or HOME")?;
        for part in ["index", "cache"] {
            let from = cargo_home.join("registry").join(part);
            if from.is_dir() {
                copy_as_user(&from, &home.join(".cargo").join("registry").join(part), &[])?;
            }
        }

        // Kafka's jars, once (else Maven fetches them into the user's cache: the same, only slower).
        let jars = crate::kafka::libs(paths);
        let folder = jars.parent().context("kafka cache folder")?;
        let to = cache.join(folder.file_name().context("kafka cache folder")?);
        if jars.join(".complete").exists() && !to.join("libs").join(".complete").exists() {
            copy_as_user(folder, &to, &[])?;
        }

        // A fresh copy of the checkout: its tracked files and the built web UI with its stamps (the user needs no
        // npm). Not `.git` or an ignored `.env`: nothing but the source goes to the other user.
        let checkout = home.join("open-bank");
        as_user(Command::new("rm").arg("-rf").arg(&checkout))?;
        let tracked = output(Command::new("git").current_dir(&paths.root).args(["ls-files", "-z"]))?;
        let mut files: Vec<String> = tracked.split('\0').filter(|f| !f.is_empty()).map(str::to_owned).collect();
        if paths.root.join("frontend/dist").is_dir() {
            files.push("frontend/dist".into());
        }
        for stamp in ["frontend.hash", "frontend-lock.hash"] {
            if paths.home.join(stamp).exists() {
                files.push(format!(".openbank/{stamp}"));
            }
        }
        copy_list_as_user(&paths.root, &checkout, &files)?;
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

    /// The settings the user's `up` wrote to its `.openbank/env`.
    fn settings(&self) -> std::collections::BTreeMap<String, String> {
        bank_core::stack_env::parse(
            &std::fs::read_to_string(self.checkout.join(".openbank").join("env")).unwrap_or_default(),
        )
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

/// Runs `cmd` as the user; fails unless it succeeds.
fn as_user(cmd: &mut Command) -> anyhow::Result<()> {
    let mut wrapped = Command::new("runuser");
    wrapped.args(["-u", USER, "--"]).arg(cmd.get_program()).args(cmd.get_args());
    if !wrapped.status().with_context(|| format!("runuser {cmd:?}"))?.success() {
        bail!("{cmd:?} as {USER} failed");
    }
    Ok(())
}

/// Packs the tree `from` (as root, with tar: modes kept, links as links, leaving out `exclude`, spelled `./x`)
/// and unpacks it into `to` as the user.
fn copy_as_user(from: &Path, to: &Path, exclude: &[&str]) -> anyhow::Result<()> {
    let mut pack = Command::new("tar");
    pack.arg("-C").arg(from);
    for e in exclude {
        pack.arg(format!("--exclude={e}"));
    }
    pack.args(["-cf", "-", "."]);
    unpack_as_user(pack, from, to)
}

/// The same for the listed paths under `from` (files or folders).
fn copy_list_as_user(from: &Path, to: &Path, paths: &[String]) -> anyhow::Result<()> {
    let list = std::env::temp_dir().join(format!("openbank-nonroot-{}.list", std::process::id()));
    std::fs::write(&list, paths.join("\0"))?;
    let mut pack = Command::new("tar");
    pack.arg("-C").arg(from).args(["--null", "-T"]).arg(&list).args(["-cf", "-"]);
    let result = unpack_as_user(pack, from, to);
    let _ = std::fs::remove_file(&list);
    result
}

fn unpack_as_user(mut pack: Command, from: &Path, to: &Path) -> anyhow::Result<()> {
    as_user(Command::new("mkdir").arg("-p").arg(to))?;
    let mut pack = pack.stdout(std::process::Stdio::piped()).spawn().context("tar")?;
    let stdout = pack.stdout.take().context("tar output")?;
    let unpacked = Command::new("runuser")
        .args(["-u", USER, "--", "tar", "--no-same-owner", "-C"])
        .arg(to)
        .args(["-xf", "-"])
        .stdin(stdout)
        .status()?
        .success();
    let packed = pack.wait()?.success();
    if !(packed && unpacked) {
        bail!("copying {} to {} as {USER} failed", from.display(), to.display());
    }
    Ok(())
}
