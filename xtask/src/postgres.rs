//! PostgreSQL for the dev stack: Debian's system cluster when running as root (on the port it is configured
//! with), else a private `initdb` cluster under `.openbank/data/postgres` on the port `up` picked (5432 unless
//! another program holds it). Both listen on localhost only.

use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::component::{Component, Ctx, Layer, Started, step};
use crate::env::{Endpoints, database_name, password};
use crate::paths::Paths;
use crate::proc::{self, Stopped};
use crate::state::{Record, State};
use bank_core::clock::unix_secs;

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
        let record = up(ctx.paths, &password(ctx.paths)?, &log, ctx.endpoints.ports.port("postgres"))?;
        let took = t.elapsed();
        let how = if record.managed { "" } else { " (already running)" };
        step("postgres", &format!("ready on {} in {:.1}s{how}", record.address, took.as_secs_f64()));
        Ok(Started { started: record.managed, record, took, new_storage: false })
    }

    fn probe(&self, record: &Record) -> bool {
        if record.managed || record.pid.is_some() {
            ready(port_of(&record.address))
        } else {
            proc::port_open(&record.address)
        }
    }

    /// A cluster is stopped with `pg_ctl`, not by signalling its postmaster.
    fn stop(&self, paths: &Paths, record: &Record, clean: bool) -> anyhow::Result<Option<Stopped>> {
        if !ready(port_of(&record.address)) {
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
        let mut c = up(paths, &password(paths)?, &log, state.ports.port("postgres"))?;
        c.managed |= was_managed;
        state.put(c);
        state.save(&paths.state_file())?;
        step("postgres", &format!("restarted in {:.1}s", t.elapsed().as_secs_f64()));
        Ok(())
    }
}

/// The port of a `host:port` address (5432 when it has none).
fn port_of(address: &str) -> u16 {
    crate::ports::port_of(address).unwrap_or_else(default_port)
}

/// 5432, from the one ports table.
fn default_port() -> u16 {
    crate::ports::default_port("postgres").unwrap_or_default()
}

/// `host:port` of a database URL (port 5432 when it names none).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let hp = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if hp.contains(':') { hp.to_owned() } else { format!("{hp}:5432") })
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

/// As root, the port of Debian's cluster `up` uses (its own configuration, never moved): the newest version's
/// cluster, created first when `create` and there is none (`pg_createcluster` gives it the first free port from
/// 5432 on). `None` when `up` runs a private cluster instead.
pub fn system_cluster_port(create: bool) -> anyhow::Result<Option<u16>> {
    if !system_cluster_mode() {
        return Ok(None);
    }
    let Some((version, _)) = server_bin() else { return Ok(None) };
    let line = match system_cluster(&version)? {
        Some(line) => line,
        None if create => {
            eprintln!("  creating PostgreSQL {version} cluster `main`");
            run(Command::new("pg_createcluster").args([version.as_str(), "main"]), "pg_createcluster")?;
            system_cluster(&version)?.context("pg_createcluster made no cluster")?
        }
        None => return Ok(Some(default_port())),
    };
    Ok(Some(line.port))
}

/// The port of the private cluster under `.openbank/data/postgres` while its server runs (from `postmaster.pid`:
/// pid on the first line, port on the fourth).
pub fn private_cluster_port(paths: &Paths) -> Option<u16> {
    let text = std::fs::read_to_string(paths.data().join("postgres").join("postmaster.pid")).ok()?;
    let (pid, port) = postmaster_pid_and_port(&text)?;
    proc::alive(pid, "postgres").then_some(port)
}

fn postmaster_pid_and_port(text: &str) -> Option<(u32, u16)> {
    let lines: Vec<&str> = text.lines().collect();
    Some((lines.first()?.trim().parse().ok()?, lines.get(3)?.trim().parse().ok()?))
}

/// A line of `pg_lsclusters`.
struct Cluster {
    name: String,
    port: u16,
    online: bool,
    data: PathBuf,
}

/// The first cluster of `version`.
fn system_cluster(version: &str) -> anyhow::Result<Option<Cluster>> {
    let clusters = run(Command::new("pg_lsclusters").arg("-h"), "pg_lsclusters")?;
    Ok(clusters.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&version)).then(|| Cluster {
            name: cols.get(1).copied().unwrap_or("main").to_owned(),
            port: cols.get(2).and_then(|p| p.parse().ok()).unwrap_or_else(default_port),
            online: cols.get(3) == Some(&"online"),
            data: PathBuf::from(cols.get(5).copied().unwrap_or("")),
        })
    }))
}

/// Whether the server on `port` accepts connections.
pub fn ready(port: u16) -> bool {
    match server_bin() {
        Some((_, bin)) => Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "localhost", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
        None => proc::port_open(&format!("localhost:{port}")),
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What to say when the PostgreSQL server programs are missing.
pub const MISSING: &str = "PostgreSQL's server programs (initdb, postgres, pg_ctl) are not installed; on Debian or \
    Ubuntu: `sudo apt-get install postgresql` (`cargo xtask up` installs it by itself when run as root). Or use a \
    PostgreSQL you already run: set DATABASE_URL (README, \"Run it on your own machine\")";

/// Starts (or reuses) the cluster on `port` and makes sure the checkout's role and database exist with `password`.
fn up(paths: &Paths, password: &str, log: &Path, port: u16) -> anyhow::Result<Record> {
    let name = database_name(paths);
    let (version, bin) = server_bin().context(MISSING)?;
    let (data_dir, admin, managed) = if system_cluster_mode() {
        let (data, managed) = start_system_cluster(&version, port)?;
        (data, Admin { how: How::System, port }, managed)
    } else {
        let data = paths.data().join("postgres");
        let managed = start_private_cluster(&bin, &data, log, port)?;
        (data.clone(), Admin { how: How::Private { bin, socket: data }, port }, managed)
    };
    proc::wait_until("postgres", Duration::from_secs(60), || ready(port))?;

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
        address: format!("localhost:{port}"),
        log: log.to_path_buf(),
        managed,
        started_at: unix_secs(),
    })
}

/// Starts Debian's cluster of `version` unless it runs (`up` planned its configured port, `port`); returns its
/// data folder and whether this call started it.
fn start_system_cluster(version: &str, port: u16) -> anyhow::Result<(PathBuf, bool)> {
    let c = system_cluster(version)?.with_context(|| format!("no PostgreSQL {version} cluster (pg_lsclusters)"))?;
    if c.port != port {
        bail!("the PostgreSQL {version}/{} cluster moved to port {}; run `cargo xtask up` again", c.name, c.port);
    }
    let mut managed = false;
    if !c.online {
        if proc::port_open(&format!("localhost:{port}")) {
            bail!(
                "port {port}, the PostgreSQL {version}/{} cluster's, is in use by {}; stop it or set DATABASE_URL",
                c.name,
                crate::ports::holder(port)
            );
        }
        run(Command::new("pg_ctlcluster").args([version, &c.name, "start"]), "pg_ctlcluster start")?;
        managed = true;
    }
    Ok((c.data, managed))
}

/// Starts the private cluster in `data` (running `initdb` first if needed) unless it runs; returns whether this
/// call started it.
fn start_private_cluster(bin: &Path, data: &Path, log: &Path, port: u16) -> anyhow::Result<bool> {
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
    if !ready(port) {
        if proc::port_open(&format!("localhost:{port}")) {
            bail!(
                "port {port} is in use by {}; stop it, run `cargo xtask up` again to pick another port, or set \
                 DATABASE_URL",
                crate::ports::holder(port)
            );
        }
        let opts =
            format!("-c listen_addresses=localhost -c port={port} -c unix_socket_directories={}", data.display());
        run(
            Command::new(bin.join("pg_ctl")).arg("-D").arg(data).arg("-l").arg(log).args(["-o", &opts, "-w", "start"]),
            "pg_ctl start",
        )?;
        managed = true;
    }
    Ok(managed)
}

/// How xtask reaches the cluster as its superuser.
struct Admin {
    how: How,
    port: u16,
}

enum How {
    /// Debian's cluster: `psql` as the `postgres` OS user over the default socket.
    System,
    /// The private cluster: its own `psql` over the socket in its data folder.
    Private { bin: PathBuf, socket: PathBuf },
}

impl Admin {
    fn current(paths: &Paths) -> anyhow::Result<Self> {
        let port = State::load(&paths.state_file()).ports.port("postgres");
        if system_cluster_mode() {
            return Ok(Self { how: How::System, port });
        }
        let (_, bin) = server_bin().context(MISSING)?;
        Ok(Self { how: How::Private { bin, socket: paths.data().join("postgres") }, port })
    }

    fn psql(&self) -> Command {
        let mut c = match &self.how {
            How::System => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "psql"]);
                c
            }
            How::Private { bin, socket } => {
                let mut c = Command::new(bin.join("psql"));
                c.args(["-U", "postgres", "-h"]).arg(socket);
                c
            }
        };
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", &self.port.to_string(), "-d", "postgres"]);
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
    let (version, bin) = server_bin().context(MISSING)?;
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
    fn postmaster_pid_names_the_server_and_its_port() {
        let text = "81234\n/home/u/open-bank/.openbank/data/postgres\n1764540000\n5433\n/home/u/x\nlocalhost\n";
        assert_eq!(postmaster_pid_and_port(text), Some((81234, 5433)));
        assert_eq!(postmaster_pid_and_port("81234\n/x\n"), None);
        assert_eq!(postmaster_pid_and_port("no\n/x\n1\n5433\n"), None);
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
