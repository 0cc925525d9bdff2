//! PostgreSQL for the dev stack: Debian's system cluster when running as root, else a private `initdb`
//! cluster under `.openbank/data/postgres`. Both listen on localhost:5432 only.

use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::paths::Paths;
use crate::proc;
use crate::state::{Component, now_secs};

pub const PORT: u16 = 5432;
pub const ADDRESS: &str = "localhost:5432";
const ROLE: &str = "openbank";
const DATABASE: &str = "openbank";

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
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
            .args(["-q", "-h", "localhost", "-p", &PORT.to_string()])
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

/// Starts (or reuses) the cluster and makes sure role and database exist with `password`.
pub fn up(paths: &Paths, password: &str, log: &Path) -> anyhow::Result<Component> {
    let (version, bin) = server_bin().context(
        "PostgreSQL server is not installed (no /usr/lib/postgresql/<version>/bin/postgres): run `cargo xtask test` \
         once as root, or `apt-get install postgresql`",
    )?;
    let mut managed = false;
    let (data_dir, admin): (PathBuf, Box<dyn Fn() -> Command>) = if system_cluster_mode() {
        let clusters = run(Command::new("pg_lsclusters").arg("-h"), "pg_lsclusters")?;
        let line = clusters.lines().find(|l| l.split_whitespace().next() == Some(version.as_str()));
        let line = match line {
            Some(l) => l.to_owned(),
            None => {
                eprintln!("  creating PostgreSQL {version} cluster `main`");
                run(Command::new("pg_createcluster").args([version.as_str(), "main"]), "pg_createcluster")?;
                run(Command::new("pg_lsclusters").arg("-h"), "pg_lsclusters")?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (name, port, status, data) = (
            cols.get(1).copied().unwrap_or("main"),
            cols.get(2).copied().unwrap_or(""),
            cols.get(3).copied().unwrap_or(""),
            cols.get(5).copied().unwrap_or(""),
        );
        if port != PORT.to_string() {
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
            run(Command::new("pg_ctlcluster").args([version.as_str(), name, "start"]), "pg_ctlcluster start")?;
            managed = true;
        }
        (
            PathBuf::from(data),
            Box::new(|| {
                let mut c = Command::new("runuser");
                c.args([
                    "-u",
                    "postgres",
                    "--",
                    "psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-p",
                    "5432",
                    "-d",
                    "postgres",
                ]);
                c
            }),
        )
    } else {
        let data = paths.data().join("postgres");
        if !data.join("PG_VERSION").exists() {
            eprintln!("  initialising a private PostgreSQL cluster in {}", data.display());
            std::fs::create_dir_all(&data)?;
            run(
                Command::new(bin.join("initdb"))
                    .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "-D"])
                    .arg(&data),
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
                Command::new(bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(log)
                    .args(["-o", &opts, "-w", "start"]),
                "pg_ctl start",
            )?;
            managed = true;
        }
        let socket = data.clone();
        (
            data,
            Box::new(move || {
                let mut c = Command::new(bin.join("psql"));
                c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", "5432", "-U", "postgres", "-d", "postgres", "-h"])
                    .arg(&socket);
                c
            }),
        )
    };
    proc::wait_until("postgres", Duration::from_secs(60), ready)?;

    // Role and database; the password goes through stdin so it never shows in a process list.
    let sql = format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'; \
           ELSE ALTER ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'; END IF; END $$;\n\
         SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
    );
    let mut child = admin()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to run psql")?;
    child.stdin.take().expect("piped").write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("cannot create the {ROLE} role and database: {}", String::from_utf8_lossy(&out.stderr).trim());
    }

    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok());
    Ok(Component {
        name: "postgres".into(),
        pid,
        needle: "postgres".into(),
        address: ADDRESS.into(),
        log: log.to_path_buf(),
        managed,
        started_at: now_secs(),
    })
}

pub fn database_url(password: &str) -> String {
    format!("postgres://{ROLE}:{password}@localhost:{PORT}/{DATABASE}")
}

/// Stops the cluster if xtask started it.
pub fn down(paths: &Paths) -> anyhow::Result<()> {
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
pub fn restart(paths: &Paths) -> anyhow::Result<()> {
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

/// Drops the stack's databases (system cluster) so `down --clean` leaves no data behind.
pub fn drop_databases() -> anyhow::Result<()> {
    if !system_cluster_mode() {
        return Ok(());
    }
    let list = run(
        Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-X", "-tA", "-p", "5432", "-d", "postgres", "-c"])
            .arg("SELECT datname FROM pg_database WHERE datname = 'openbank' OR datname LIKE 'test\\_%'"),
        "psql",
    )?;
    for db in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-X", "-q", "-p", "5432", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")),
            "drop database",
        )?;
    }
    Ok(())
}
