//! The dev stack: `up`, `down`, `status`, `logs`. Order: PostgreSQL, Kafka, schema registry, synchronizer,
//! then the services. Every wait is a health check, never a fixed sleep.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::paths::{Paths, write_private};
use crate::state::{Component, State, now_secs};
use crate::{kafka, postgres, proc};

/// How a service reports health.
#[derive(Clone, Copy)]
enum Probe {
    /// `GET /ready` answers 200 on this address.
    Http(&'static str),
    /// Runs to completion; exit 0 is healthy.
    OneShot,
}

struct Service {
    name: &'static str,
    probe: Probe,
}

/// Every Rust component `up` runs, in start order. A reader finds each port here and in the service's config.
const SERVICES: &[Service] = &[
    Service { name: "schema-registry", probe: Probe::Http("127.0.0.1:8081") },
    Service { name: "synchronizer", probe: Probe::OneShot },
    Service { name: "heartbeat", probe: Probe::Http("127.0.0.1:17888") },
    Service { name: "command-handler", probe: Probe::Http("127.0.0.1:9103") },
    Service { name: "graphql-endpoint", probe: Probe::Http("127.0.0.1:8888") },
    Service { name: "command-generator", probe: Probe::Http("127.0.0.1:9102") },
];

/// Addresses the stack's own services listen on (for the "ports are free after down" check).
pub fn service_addresses() -> Vec<&'static str> {
    SERVICES
        .iter()
        .filter_map(|s| match s.probe {
            Probe::Http(a) => Some(a),
            Probe::OneShot => None,
        })
        .collect()
}

/// The names of the stack's own (Rust) services.
pub fn service_names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

pub const REGISTRY_URL: &str = "http://localhost:8081";

/// Infrastructure settings handed to every service and test.
pub struct Endpoints {
    pub kafka_brokers: String,
    pub registry_url: String,
    pub database_url: String,
    /// Token of the company account, shared by the handler (which sets it) and the generator (which pays salaries).
    pub company_token: String,
    /// Password of the gateway's bank employee (user `employee`).
    pub employee_password: String,
    /// The built web UI the gateway serves at `/`.
    pub frontend_dir: PathBuf,
    pub external_kafka: bool,
    pub external_registry: bool,
    pub external_database: bool,
}

impl Endpoints {
    pub fn resolve(paths: &Paths) -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let database = var("DATABASE_URL");
        let database_url = match &database {
            Some(url) => url.clone(),
            None => postgres::database_url(paths, &password(paths)?),
        };
        Ok(Self {
            external_kafka: var("KAFKA_BROKERS").is_some(),
            external_registry: var("SCHEMA_REGISTRY_URL").is_some(),
            external_database: database.is_some(),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| kafka::ADDRESS.to_owned()),
            registry_url: var("SCHEMA_REGISTRY_URL").unwrap_or_else(|| REGISTRY_URL.to_owned()),
            database_url,
            company_token: match var("COMPANY_ACCOUNT_TOKEN") {
                Some(t) => t,
                None => secret(paths, "company-token")?,
            },
            employee_password: match var("EMPLOYEE_PASSWORD") {
                Some(p) => p,
                None => secret(paths, "employee-password")?,
            },
            frontend_dir: paths.root.join("frontend").join("dist"),
        })
    }

    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("KAFKA_BROKERS", &self.kafka_brokers)
            .env("SCHEMA_REGISTRY_URL", &self.registry_url)
            .env("DATABASE_URL", &self.database_url)
            .env("COMPANY_ACCOUNT_TOKEN", &self.company_token)
            .env("EMPLOYEE_PASSWORD", &self.employee_password)
            .env("FRONTEND_DIR", &self.frontend_dir);
    }
}

/// The local database password: generated once from the OS CSPRNG, kept in `.openbank/pg-password` (0600).
fn password(paths: &Paths) -> anyhow::Result<String> {
    secret(paths, "pg-password")
}

/// A secret generated once from the OS CSPRNG and kept in `.openbank/<name>` (0600).
fn secret(paths: &Paths, name: &str) -> anyhow::Result<String> {
    let file = paths.home.join(name);
    if let Ok(p) = std::fs::read_to_string(&file)
        && !p.trim().is_empty()
    {
        return Ok(p.trim().to_owned());
    }
    let mut buf = [0u8; 18];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let p: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    paths.ensure_home()?;
    write_private(&file, &p)?;
    Ok(p)
}

pub struct UpOptions {
    pub release: bool,
    pub quiet_build: bool,
}

/// What `up` did, for callers (the test runner checks that a second `up` starts nothing).
#[derive(Debug, Default)]
pub struct UpReport {
    pub started: Vec<String>,
    pub reused: Vec<String>,
    pub total: Duration,
    pub kafka_start: Option<Duration>,
}

fn run_dir(paths: &Paths, state: &mut State) -> anyhow::Result<PathBuf> {
    let dir = paths.logs().join(&state.run_id);
    if state.run_id.is_empty() || !dir.exists() {
        let stamp = Command::new("date").arg("+%Y%m%d-%H%M%S").output()?;
        state.run_id = String::from_utf8_lossy(&stamp.stdout).trim().to_owned();
        let dir = paths.logs().join(&state.run_id);
        std::fs::create_dir_all(&dir)?;
        let latest = paths.logs().join("latest");
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&state.run_id, &latest);
        return Ok(dir);
    }
    Ok(dir)
}

fn healthy(c: &Component) -> bool {
    if let Some(pid) = c.pid
        && c.managed
        && !proc::alive(pid, &c.needle)
    {
        return false;
    }
    match c.name.as_str() {
        "postgres" => {
            if c.managed || c.pid.is_some() {
                postgres::ready()
            } else {
                proc::port_open(&c.address)
            }
        }
        "kafka" => proc::kafka_brokers(&c.address).is_ok_and(|n| n > 0),
        name => match SERVICES.iter().find(|s| s.name == name).map(|s| s.probe) {
            Some(Probe::Http(addr)) => proc::http_status(addr, "/ready") == Some(200),
            Some(Probe::OneShot) => c.pid.is_none() && c.needle == "exit 0",
            None => false,
        },
    }
}

fn step(name: &str, msg: &str) {
    eprintln!("{name:>17}  {msg}");
}

/// Installs Debian packages the stack needs when they are missing (as root); otherwise says what to install.
pub fn ensure_packages(endpoints: &Endpoints) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !endpoints.external_database && postgres::server_bin().is_none() {
        missing.push("postgresql");
    }
    if !endpoints.external_kafka {
        if Command::new("java").arg("-version").output().is_err() {
            missing.push("openjdk-17-jre-headless");
        }
        if Command::new("mvn").arg("-v").output().is_err() {
            missing.push("maven");
        }
    }
    install(&missing)
}

pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !postgres::is_root() {
        bail!("missing packages: {}; install them (sudo apt-get install {})", packages.join(", "), packages.join(" "));
    }
    step("apt", &format!("installing {}", packages.join(" ")));
    let ok = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        bail!("apt-get could not install {}", packages.join(" "));
    }
    Ok(())
}

/// Builds the service binaries.
pub fn build(paths: &Paths, opts: &UpOptions) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.root).args(["build", "--bins"]);
    for s in SERVICES {
        cmd.args(["-p", s.name]);
    }
    if opts.release {
        cmd.arg("--release");
    }
    if opts.quiet_build {
        cmd.arg("--quiet");
    }
    step("build", &format!("cargo build ({})", if opts.release { "release" } else { "debug" }));
    if !cmd.status().context("failed to run cargo")?.success() {
        bail!("building the services failed");
    }
    Ok(())
}

pub fn up(opts: &UpOptions) -> anyhow::Result<UpReport> {
    let start = Instant::now();
    let paths = Paths::new(opts.release)?;
    paths.ensure_home()?;
    let endpoints = Endpoints::resolve(&paths)?;
    ensure_packages(&endpoints)?;
    build(&paths, opts)?;
    let mut state = State::load(&paths.state_file());
    let mut report = UpReport::default();

    // PostgreSQL
    if endpoints.external_database {
        external(&mut state, "postgres", &host_port(&endpoints.database_url).unwrap_or_default());
    } else if state.get("postgres").is_some_and(healthy) {
        report.reused.push("postgres".into());
    } else {
        let log = run_dir(&paths, &mut state)?.join("postgres.log");
        let t = Instant::now();
        let c = postgres::up(&paths, &password(&paths)?, &log)?;
        step(
            "postgres",
            &format!(
                "ready on {} in {:.1}s{}",
                c.address,
                t.elapsed().as_secs_f64(),
                if c.managed { "" } else { " (already running)" }
            ),
        );
        if c.managed {
            report.started.push("postgres".into())
        } else {
            report.reused.push("postgres".into())
        }
        state.put(c);
        state.save(&paths.state_file())?;
    }

    // Kafka
    if endpoints.external_kafka {
        external(&mut state, "kafka", endpoints.kafka_brokers.split(',').next().unwrap_or_default());
    } else if state.get("kafka").is_some_and(healthy) {
        report.reused.push("kafka".into());
    } else {
        let log = run_dir(&paths, &mut state)?.join("kafka.log");
        step("kafka", &format!("starting Apache Kafka {} (KRaft)", kafka::VERSION));
        let kafka::Started { component: c, ready_in: took, formatted } = kafka::up(&paths, &log)?;
        step("kafka", &format!("ready on {} in {:.1}s (pid {})", c.address, took.as_secs_f64(), c.pid.unwrap_or(0)));
        // A new cluster has none of the topics the database's offsets, results and accounts refer to.
        if formatted && !endpoints.external_database && postgres::reset_database(&paths)? {
            step("postgres", &format!("emptied {}: Kafka's storage is new", postgres::database_name(&paths)));
        }
        report.kafka_start = Some(took);
        report.started.push("kafka".into());
        state.put(c);
        state.save(&paths.state_file())?;
    }

    // Services, in order. The synchronizer runs again whenever something before it (re)started.
    for s in SERVICES {
        if s.name == "schema-registry" && endpoints.external_registry {
            external(&mut state, s.name, endpoints.registry_url.trim_start_matches("http://"));
            continue;
        }
        let current = state.get(s.name);
        let stale = current.is_some_and(|c| binary_newer(&paths.bin(s.name), c.started_at));
        let reuse =
            current.is_some_and(healthy) && !stale && (matches!(s.probe, Probe::Http(_)) || report.started.is_empty());
        if reuse {
            report.reused.push(s.name.into());
            continue;
        }
        if let Some(c) = current.filter(|c| c.managed)
            && let Some(pid) = c.pid
        {
            proc::stop(pid, &c.needle, Duration::from_secs(10));
        }
        let log = run_dir(&paths, &mut state)?.join(format!("{}.log", s.name));
        let bin = paths.bin(s.name);
        let mut cmd = Command::new(&bin);
        endpoints.apply(&mut cmd);
        let t = Instant::now();
        let c = match s.probe {
            Probe::Http(addr) => {
                if proc::port_open(addr) {
                    bail!(
                        "port {addr} is in use by a process xtask did not start; stop it (or set the service's URL variable)"
                    );
                }
                let pid = proc::spawn_detached(&mut cmd, &log)?;
                proc::wait_until(s.name, Duration::from_secs(30), || {
                    !proc::alive(pid, "") || proc::http_status(addr, "/ready") == Some(200)
                })?;
                if !proc::alive(pid, "") {
                    bail!("{} exited during start; last lines of {}:\n{}", s.name, log.display(), tail(&log, 15));
                }
                step(s.name, &format!("ready on {addr} in {:.2}s (pid {pid})", t.elapsed().as_secs_f64()));
                Component {
                    name: s.name.into(),
                    pid: Some(pid),
                    needle: s.name.into(),
                    address: addr.into(),
                    log,
                    managed: true,
                    started_at: now_secs(),
                }
            }
            Probe::OneShot => {
                let out = std::fs::File::options().create(true).append(true).open(&log)?;
                let status = cmd
                    .stdout(out.try_clone()?)
                    .stderr(out)
                    .status()
                    .with_context(|| format!("failed to run {}", bin.display()))?;
                if !status.success() {
                    bail!("{} failed ({status}); last lines of {}:\n{}", s.name, log.display(), tail(&log, 15));
                }
                step(s.name, &format!("done in {:.2}s: {}", t.elapsed().as_secs_f64(), last_summary(&log)));
                Component {
                    name: s.name.into(),
                    pid: None,
                    needle: "exit 0".into(),
                    address: String::new(),
                    log,
                    managed: true,
                    started_at: now_secs(),
                }
            }
        };
        report.started.push(s.name.into());
        state.put(c);
        state.save(&paths.state_file())?;
    }

    write_env(&paths, &endpoints)?;
    state.save(&paths.state_file())?;
    report.total = start.elapsed();
    if report.started.is_empty() {
        eprintln!("\nOpen Bank is already up: {} components healthy, nothing started.", report.reused.len());
    } else {
        eprintln!("\nOpen Bank is up in {:.1}s (started: {}).", report.total.as_secs_f64(), report.started.join(", "));
    }
    print_urls(&paths, &endpoints);
    Ok(report)
}

fn external(state: &mut State, name: &str, address: &str) {
    step(name, &format!("external at {address}"));
    // Never forget a process xtask started itself, or `down` could not stop it.
    if state.get(name).is_some_and(|c| c.managed && c.pid.is_some_and(|p| proc::alive(p, &c.needle))) {
        return;
    }
    state.put(Component {
        name: name.into(),
        pid: None,
        needle: String::new(),
        address: address.into(),
        log: PathBuf::new(),
        managed: false,
        started_at: now_secs(),
    });
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let hp = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if hp.contains(':') { hp.to_owned() } else { format!("{hp}:5432") })
}

fn binary_newer(bin: &Path, started_at: u64) -> bool {
    std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|t| t.as_secs() > started_at)
}

pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn last_summary(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| {
            l.split_once("summary=")
                .map(|(_, s)| s.split(" synchronizer done").next().unwrap_or(s).trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "ok".into())
}

fn write_env(paths: &Paths, e: &Endpoints) -> anyhow::Result<()> {
    write_private(
        &paths.env_file(),
        &format!(
            "# written by `cargo xtask up`; `source .openbank/env` to point tools at the local stack\n\
             export KAFKA_BROKERS='{}'\nexport SCHEMA_REGISTRY_URL='{}'\nexport DATABASE_URL='{}'\n\
             export COMPANY_ACCOUNT_TOKEN='{}'\n",
            e.kafka_brokers, e.registry_url, e.database_url, e.company_token
        ),
    )
}

fn print_urls(paths: &Paths, e: &Endpoints) {
    eprintln!("  Web UI           http://localhost:8888/");
    eprintln!("  GraphiQL         http://localhost:8888/graphiql");
    eprintln!("  Bank employee    user `employee`, password in {}", paths.home.join("employee-password").display());
    eprintln!("  Kafka            {}", e.kafka_brokers);
    eprintln!("  Schema registry  {}/subjects", e.registry_url);
    eprintln!("  PostgreSQL       {}", bank_redact(&e.database_url));
    eprintln!("  Logs             {}", paths.logs().join("latest").display());
    eprintln!("  Settings         source {}", paths.env_file().display());
}

/// The database URL without its password.
fn bank_redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) => {
            let user = rest.split(['@', ':']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Stops what `up` started, services first. `clean` also deletes data and logs.
/// Stops what `up` started, services first; returns each stopped component with how long it took.
pub fn down(clean: bool) -> anyhow::Result<Vec<(String, proc::Stopped)>> {
    let paths = Paths::new(false)?;
    let mut state = State::load(&paths.state_file());
    let mut stopped = Vec::new();
    // Services first (newest first), then Kafka, then PostgreSQL: a service must never find its infrastructure
    // gone while it shuts down, whatever order the state file lists components in.
    let infra_rank = |name: &str| match name {
        "kafka" => 1,
        "postgres" => 2,
        _ => 0,
    };
    let mut order: Vec<&Component> = state.components.iter().rev().collect();
    order.sort_by_key(|c| infra_rank(&c.name));
    for c in order {
        if !c.managed {
            continue;
        }
        if c.name == "postgres" {
            if postgres::ready() {
                if clean {
                    postgres::drop_databases(&paths)?;
                }
                let t = Instant::now();
                postgres::down(&paths)?;
                step("postgres", "stopped");
                stopped.push((c.name.clone(), proc::Stopped { took: t.elapsed(), killed: false }));
            }
            continue;
        }
        if let Some(pid) = c.pid
            && proc::alive(pid, &c.needle)
        {
            let s = proc::stop(pid, &c.needle, Duration::from_secs(20));
            let what = if s.killed {
                "killed after 20s grace".to_owned()
            } else {
                format!("stopped in {:.1}s", s.took.as_secs_f64())
            };
            step(&c.name, &what);
            stopped.push((c.name.clone(), s));
        }
    }
    state.components.clear();
    state.run_id.clear(); // the next `up` logs into a new run folder
    state.save(&paths.state_file())?;
    if clean {
        for dir in [paths.data(), paths.logs()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
            }
        }
        step("clean", "deleted data and logs");
    }
    if stopped.is_empty() {
        eprintln!("nothing was running");
    }
    Ok(stopped)
}

/// Runs `bank-audit` against the stack; returns its exit code.
pub fn audit(settle_secs: u64) -> anyhow::Result<i32> {
    let paths = Paths::new(false)?;
    let endpoints = Endpoints::resolve(&paths)?;
    let bin = paths.bin("bank-audit");
    if !bin.exists() {
        build(&paths, &UpOptions { release: false, quiet_build: true })?;
    }
    let mut cmd = Command::new(&bin);
    endpoints.apply(&mut cmd);
    cmd.env("AUDIT_SETTLE_SECS", settle_secs.to_string());
    let status = cmd.status().with_context(|| format!("failed to run {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

/// Restarts Kafka or PostgreSQL in place (same data, same address), for resilience tests and operators.
pub fn restart(component: &str) -> anyhow::Result<()> {
    let paths = Paths::new(false)?;
    let mut state = State::load(&paths.state_file());
    match component {
        "postgres" => {
            let t = Instant::now();
            postgres::restart(&paths)?;
            // Record the new server pid (keeping whether `up` started it), so `status` and `down` still work.
            let was_managed = state.get("postgres").is_some_and(|c| c.managed);
            let log = run_dir(&paths, &mut state)?.join("postgres.log");
            let mut c = postgres::up(&paths, &password(&paths)?, &log)?;
            c.managed |= was_managed;
            state.put(c);
            state.save(&paths.state_file())?;
            step("postgres", &format!("restarted in {:.1}s", t.elapsed().as_secs_f64()));
        }
        "kafka" => {
            let c = state.get("kafka").filter(|c| c.managed).context("kafka was not started by `cargo xtask up`")?;
            if let Some(pid) = c.pid {
                proc::stop(pid, &c.needle, Duration::from_secs(30));
            }
            let log = run_dir(&paths, &mut state)?.join("kafka.log");
            let kafka::Started { component: c, ready_in: took, .. } = kafka::up(&paths, &log)?;
            step("kafka", &format!("restarted, ready in {:.1}s (pid {})", took.as_secs_f64(), c.pid.unwrap_or(0)));
            state.put(c);
            state.save(&paths.state_file())?;
        }
        other => bail!("cannot restart `{other}`: only kafka and postgres can be restarted in place"),
    }
    Ok(())
}

/// Prints a table of components; returns whether all are healthy.
pub fn status() -> anyhow::Result<bool> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    if state.components.is_empty() {
        eprintln!("nothing is up; start the stack with `cargo xtask up`");
        return Ok(false);
    }
    println!("{:<18} {:>8}  {:<22} {:<8} LOG", "COMPONENT", "PID", "ADDRESS", "HEALTH");
    let mut all = true;
    for c in &state.components {
        let ok = healthy(c);
        all &= ok;
        let pid = c.pid.map_or_else(|| if c.managed { "-".into() } else { "extern".into() }, |p| p.to_string());
        let health = match (ok, c.pid, c.needle.as_str()) {
            (true, None, "exit 0") => "done",
            (true, ..) => "healthy",
            (false, ..) => "DOWN",
        };
        println!("{:<18} {:>8}  {:<22} {:<8} {}", c.name, pid, c.address, health, c.log.display());
    }
    Ok(all)
}

pub fn logs(component: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    match component {
        None => {
            println!("{}", paths.logs().join("latest").display());
            for c in state.components.iter().filter(|c| !c.log.as_os_str().is_empty()) {
                println!("  {:<18} {}", c.name, c.log.display());
            }
        }
        Some(name) => {
            let c = state.get(name).with_context(|| {
                format!(
                    "no component named {name}; known: {}",
                    state.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            println!("{}", tail(&c.log, lines));
        }
    }
    Ok(())
}

/// Components recorded as started by xtask whose processes are still alive (for the `down` check).
pub fn leftover_processes(before: &State) -> Vec<String> {
    before
        .components
        .iter()
        .filter(|c| c.managed)
        .filter_map(|c| c.pid.filter(|&p| proc::alive(p, &c.needle)).map(|p| format!("{} (pid {p})", c.name)))
        .collect()
}

pub fn load_state() -> anyhow::Result<State> {
    Ok(State::load(&Paths::new(false)?.state_file()))
}

/// Whether a previous `up` left a fully healthy stack (without printing).
pub fn status_quiet() -> bool {
    let Ok(paths) = Paths::new(false) else { return false };
    let state = State::load(&paths.state_file());
    !state.components.is_empty() && state.components.iter().all(healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_database_urls() {
        assert_eq!(host_port("postgres://u:p@db:6543/x").as_deref(), Some("db:6543"));
        assert_eq!(host_port("postgres://u@db/x").as_deref(), Some("db:5432"));
    }

    #[test]
    fn redacts_database_password() {
        assert_eq!(
            bank_redact("postgres://openbank:s3cret@localhost:5432/openbank"),
            "postgres://openbank:***@localhost:5432/openbank"
        );
    }
}
