//! PostgreSQL for the dev stack: Debian's system cluster when running as root, else a private `initdb`
//! cluster under `.openbank/data/postgres`. Both listen on localhost:5432 only.

use anyhow::{Context, bail};
use bank_core::ports::{POSTGRES as ADDRESS, POSTGRES_PORT as PORT};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::component::{Component, Ctx, Layer, Started, step};
use crate::env::{Endpoints, password};
use crate::paths::Paths;
use crate::proc::{self, Stopped};
use crate::state::{Record, State, now_secs};

/// The database server: Debian's cluster or a private one, or the server `DATABASE_URL` names.
pub struct Postgres;

impl Component for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn layer(&self) -> Layer {
        Layer::Database
    }

    fn external(&self, endpoints: &Endpoints) -> Option<String> {
        endpoints.external_database.then(|| host_port(&endpoints.database_url).unwrap_or_default())
    }

    fn start(&self, ctx: &Ctx, _previous: Option<&Record>, log: PathBuf) -> anyhow::Result<Started> {
        let t = Instant::now();
        let record = up(ctx.paths, &password(ctx.paths)?, &log)?;
        let took = t.elapsed();
        let how = if record.managed { "" } else { " (already running)" };
        step("postgres", &format!("ready on {} in {:.1}s{how}", record.address, took.as_secs_f64()));
        Ok(Started { started: record.managed, record, took })
    }

    fn probe(&self, record: &Record) -> bool {
        if record.managed || record.pid.is_some() { ready() } else { proc::port_open(&record.address) }
    }

    /// A cluster is stopped with `pg_ctl`, not by signalling its postmaster.
    fn stop(&self, paths: &Paths, _record: &Record, clean: bool) -> anyhow::Result<Option<Stopped>> {
        if !ready() {
            return Ok(None);
        }
        if clean {
            drop_databases(paths)?;
        }
        let t = Instant::now();
        down(paths)?;
        step("postgres", "stopped");
        Ok(Some(Stopped { took: t.elapsed(), killed: false }))
    }

    fn restart(&self, paths: &Paths, state: &mut State) -> anyhow::Result<()> {
        let t = Instant::now();
        restart(paths)?;
        // Record the new server pid (keeping whether `up` started it), so `status` and `down` still work.
        let was_managed = state.get("postgres").is_some_and(|c| c.managed);
        let log = state.run_dir(paths)?.join("postgres.log");
        let mut c = up(paths, &password(paths)?, &log)?;
        c.managed |= was_managed;
        state.put(c);
        state.save(&paths.state_file())?;
        step("postgres", &format!("restarted in {:.1}s", t.elapsed().as_secs_f64()));
        Ok(())
    }
}

/// `host:port` of a database URL (port 5432 when it names none).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let hp = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if hp.contains(':') { hp.to_owned() } else { format!("{hp}:5432") })
}

/// The checkout's role and database, `openbank_<hash of the checkout's path>`. Several clones of the repository
/// share the system cluster but each keeps its Kafka data in its own `.openbank/data`, so each needs its own
/// database: offsets and results stored for one clone's topics mean nothing to another's.
pub fn database_name(paths: &Paths) -> String {
    let root = std::fs::canonicalize(&paths.root).unwrap_or_else(|_| paths.root.clone());
    // FNV-1a: stable across Rust releases (std's hasher is not), so a checkout keeps its database.
    let hash = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("openbank_{:08x}", hash as u32)
}

pub fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// The newest installed server version's bin folder (`/usr/lib/postgresql/<v>/bin`).
pub fn server_bin() -> Option<(String, PathBuf)> {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|v| Some((v.parse().ok()?, v)))
        .collect();
    versions.sort();
    let (_, v) = versions.pop()?;
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
    bin.join("postgres").exists().then_some((v, bin))
}

fn system_cluster_mode() -> bool {
    is_root() && Path::new("/usr/bin/pg_ctlcluster").exists()
}

pub fn ready() -> bool {
    match server_bin() {
        Some((_, bin)) => Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "localhost", "-p", PORT])
            .status()
            .is_ok_and(|s| s.success()),
        None => proc::port_open(ADDRESS),
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts (or reuses) the cluster and makes sure the checkout's role and database exist with `password`.
fn up(paths: &Paths, password: &str, log: &Path) -> anyhow::Result<Record> {
    let name = database_name(paths);
    let (version, bin) = server_bin().context(
        "PostgreSQL server is not installed (no /usr/lib/postgresql/<version>/bin/postgres): run `cargo xtask test` \
         once as root, or `apt-get install postgresql`",
    )?;
    let (data_dir, admin, managed) = if system_cluster_mode() {
        let (data, managed) = start_system_cluster(&version)?;
        (data, Admin::System, managed)
    } else {
        let data = paths.data().join("postgres");
        let managed = start_private_cluster(&bin, &data, log)?;
        (data.clone(), Admin::Private { bin, socket: data }, managed)
    };
    proc::wait_until("postgres", Duration::from_secs(60), ready)?;

    // Role and database; the password goes through stdin so it never shows in a process list.
    let sql = format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN CREATEDB PASSWORD '{password}'; \
           ELSE ALTER ROLE {name} LOGIN CREATEDB PASSWORD '{password}'; END IF; END $$;\n\
         SELECT 'CREATE DATABASE {name} OWNER {name}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')\\gexec\n"
    );
    admin.sql(&sql).with_context(|| format!("cannot create the {name} role and database"))?;

    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok());
    Ok(Record {
        name: "postgres".into(),
        pid,
        needle: "postgres".into(),
        address: ADDRESS.into(),
        log: log.to_path_buf(),
        managed,
        started_at: now_secs(),
    })
}

/// Starts Debian's cluster of `version` (creating it if there is none) unless it runs; returns its data folder
/// and whether this call started it.
fn start_system_cluster(version: &str) -> anyhow::Result<(PathBuf, bool)> {
    let mut managed = false;
    let clusters = run(Command::new("pg_lsclusters").arg("-h"), "pg_lsclusters")?;
    let line = clusters.lines().find(|l| l.split_whitespace().next() == Some(version));
    let line = match line {
        Some(l) => l.to_owned(),
        None => {
            eprintln!("  creating PostgreSQL {version} cluster `main`");
            run(Command::new("pg_createcluster").args([version, "main"]), "pg_createcluster")?;
            run(Command::new("pg_lsclusters").arg("-h"), "pg_lsclusters")?.lines().next().unwrap_or_default().to_owned()
        }
    };
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (name, port, status, data) = (
        cols.get(1).copied().unwrap_or("main"),
        cols.get(2).copied().unwrap_or(""),
        cols.get(3).copied().unwrap_or(""),
        cols.get(5).copied().unwrap_or(""),
    );
    if port != PORT {
        bail!(
            "the PostgreSQL {version}/{name} cluster uses port {port}; the stack expects {PORT} (or set DATABASE_URL)"
        );
    }
    if status != "online" {
        if proc::port_open(ADDRESS) {
            bail!(
                "port {PORT} is taken by a process that is not the {version}/{name} cluster; stop it or set DATABASE_URL"
            );
        }
        run(Command::new("pg_ctlcluster").args([version, name, "start"]), "pg_ctlcluster start")?;
        managed = true;
    }
    Ok((PathBuf::from(data), managed))
}

/// Starts the private cluster in `data` (running `initdb` first if needed) unless it runs; returns whether this
/// call started it.
fn start_private_cluster(bin: &Path, data: &Path, log: &Path) -> anyhow::Result<bool> {
    let mut managed = false;
    if !data.join("PG_VERSION").exists() {
        eprintln!("  initialising a private PostgreSQL cluster in {}", data.display());
        std::fs::create_dir_all(data)?;
        run(
            Command::new(bin.join("initdb"))
                .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "-D"])
                .arg(data),
            "initdb",
        )?;
    }
    if !ready() {
        if proc::port_open(ADDRESS) {
            bail!("port {PORT} is taken by another process; stop it or set DATABASE_URL");
        }
        let opts =
            format!("-c listen_addresses=localhost -c port={PORT} -c unix_socket_directories={}", data.display());
        run(
            Command::new(bin.join("pg_ctl")).arg("-D").arg(data).arg("-l").arg(log).args(["-o", &opts, "-w", "start"]),
            "pg_ctl start",
        )?;
        managed = true;
    }
    Ok(managed)
}

pub fn database_url(paths: &Paths, password: &str) -> String {
    let name = database_name(paths);
    format!("postgres://{name}:{password}@localhost:{PORT}/{name}")
}

/// How xtask reaches the cluster as its superuser.
enum Admin {
    /// Debian's cluster: `psql` as the `postgres` OS user over the default socket.
    System,
    /// The private cluster: its own `psql` over the socket in its data folder.
    Private { bin: PathBuf, socket: PathBuf },
}

impl Admin {
    fn current(paths: &Paths) -> anyhow::Result<Self> {
        if system_cluster_mode() {
            return Ok(Self::System);
        }
        let (_, bin) = server_bin().context("PostgreSQL is not installed")?;
        Ok(Self::Private { bin, socket: paths.data().join("postgres") })
    }

    fn psql(&self) -> Command {
        let mut c = match self {
            Self::System => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "psql"]);
                c
            }
            Self::Private { bin, socket } => {
                let mut c = Command::new(bin.join("psql"));
                c.args(["-U", "postgres", "-h"]).arg(socket);
                c
            }
        };
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", PORT, "-d", "postgres"]);
        c
    }

    /// Runs `sql` (through stdin, so no secret shows in a process list) and returns what it printed.
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let mut child = self
            .psql()
            .arg("-tA")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to run psql")?;
        child.stdin.take().expect("piped").write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Empties the checkout's database (drop and create again). `up` calls it when Kafka's storage was just
/// formatted: stored offsets, results and accounts cannot belong to topics that no longer exist.
pub fn reset_database(paths: &Paths) -> anyhow::Result<bool> {
    let name = database_name(paths);
    let admin = Admin::current(paths)?;
    let exists = admin.sql(&format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))?;
    if exists.trim().is_empty() {
        return Ok(false);
    }
    admin
        .sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE);\nCREATE DATABASE {name} OWNER {name};\n"))
        .with_context(|| format!("cannot recreate database {name}"))?;
    Ok(true)
}

/// Stops the cluster if xtask started it.
fn down(paths: &Paths) -> anyhow::Result<()> {
    let Some((version, bin)) = server_bin() else { return Ok(()) };
    if system_cluster_mode() {
        run(
            Command::new("pg_ctlcluster").args([version.as_str(), "main", "stop", "-m", "fast"]),
            "pg_ctlcluster stop",
        )?;
    } else {
        let data = paths.data().join("postgres");
        run(Command::new(bin.join("pg_ctl")).arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]), "pg_ctl stop")?;
    }
    Ok(())
}

/// Restarts the running cluster (fast shutdown: open connections are cut, as in a crash of the server).
fn restart(paths: &Paths) -> anyhow::Result<()> {
    let (version, bin) = server_bin().context("PostgreSQL is not installed")?;
    if system_cluster_mode() {
        run(
            Command::new("pg_ctlcluster").args([version.as_str(), "main", "restart", "-m", "fast"]),
            "pg_ctlcluster restart",
        )?;
    } else {
        let data = paths.data().join("postgres");
        run(
            Command::new(bin.join("pg_ctl")).arg("-D").arg(&data).args(["-m", "fast", "-w", "restart"]),
            "pg_ctl restart",
        )?;
    }
    Ok(())
}

/// Drops the checkout's database and the test databases its role created (system cluster; a private
/// cluster is deleted with `.openbank/data`), so `down --clean` leaves no data behind.
fn drop_databases(paths: &Paths) -> anyhow::Result<usize> {
    drop_matching(paths, true)
}

/// Drops the test databases (`test_*`) the checkout's role created; `cargo xtask test` calls it when the tests
/// are done so they do not pile up.
pub fn drop_test_databases(paths: &Paths) -> anyhow::Result<usize> {
    drop_matching(paths, false)
}

fn drop_matching(paths: &Paths, including_main: bool) -> anyhow::Result<usize> {
    if !system_cluster_mode() && !paths.data().join("postgres").join("PG_VERSION").exists() {
        return Ok(0);
    }
    let name = database_name(paths);
    let admin = Admin::current(paths)?;
    let main = if including_main { format!("datname = '{name}' OR ") } else { String::new() };
    let list = admin.sql(&format!(
        "SELECT datname FROM pg_database WHERE {main}\
           (datname LIKE 'test\\_%' AND datdba = (SELECT oid FROM pg_roles WHERE rolname = '{name}'))"
    ))?;
    let mut dropped = 0;
    for db in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        admin.sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).context("drop database")?;
        dropped += 1;
    }
    Ok(dropped)
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
    fn root_is_read_without_a_shell_out() {
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").and_then(|v| v.split_whitespace().next().map(str::to_owned)))
            .unwrap();
        assert_eq!(is_root(), uid == "0");
    }
}
