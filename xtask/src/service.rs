//! A Rust service of the workspace, run from its binary next to xtask's. The schema registry is one too, unless
//! `SCHEMA_REGISTRY_URL` points elsewhere.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::component::{Component, Ctx, Started, step};
use crate::env::Endpoints;
use crate::instance::instance_name;
use crate::state::{EXITED_OK, Record};
use crate::{http, proc};
use bank_core::clock::unix_secs;

/// How a service reports health.
#[derive(Clone, Copy)]
pub enum Probe {
    /// `GET /ready` answers 200 on the instance's address (its port from `crate::ports`).
    Http,
    /// Runs to completion; exit 0 is healthy.
    OneShot,
}

pub struct RustService {
    pub name: &'static str,
    pub probe: Probe,
}

impl Component for RustService {
    fn name(&self) -> &'static str {
        self.name
    }

    fn package(&self) -> Option<&'static str> {
        Some(self.name)
    }

    /// A long-running service is kept while healthy and its binary unchanged; a one-shot one runs again whenever
    /// something before it (re)started.
    fn reusable(&self, record: &Record, ctx: &Ctx, anything_started: bool) -> bool {
        let rebuilt = binary_newer(&ctx.paths.bin(self.name), record.started_at);
        self.healthy(record) && !rebuilt && (matches!(self.probe, Probe::Http) || !anything_started)
    }

    fn start(&self, ctx: &Ctx, previous: Option<&Record>, log: PathBuf) -> anyhow::Result<Started> {
        if let Some(old) = previous.filter(|r| r.managed)
            && let Some(pid) = old.pid
        {
            proc::stop(pid, &old.needle, Duration::from_secs(10));
        }
        let bin = ctx.paths.bin(self.name);
        let mut cmd = Command::new(&bin);
        ctx.endpoints.apply_service(&mut cmd, self.name);
        let t = Instant::now();
        let record = match self.probe {
            Probe::Http => {
                let name = instance_name(self.name, ctx.instance);
                if ctx.instance > 1 && self.name == "schema-registry" {
                    bail!("{} runs as one instance only", self.name);
                }
                let addr = ctx.endpoints.ports.listen(&name);
                let var = listen_var(self.name).with_context(|| format!("{} has no listen variable", self.name))?;
                cmd.env(var, &addr);
                self.serve(&mut cmd, &name, &addr, log)?
            }
            Probe::OneShot => self.run_once(&mut cmd, &bin, log)?,
        };
        Ok(Started { record, started: true, took: t.elapsed(), new_storage: false })
    }

    fn probe(&self, record: &Record) -> bool {
        match self.probe {
            // Each instance listens on its own address, recorded at its start.
            Probe::Http => !record.address.is_empty() && http::status(&record.address, "/ready") == Some(200),
            Probe::OneShot => record.finished(),
        }
    }
}

/// The variable that sets a service's listen address.
pub fn listen_var(name: &str) -> Option<&'static str> {
    match name {
        "command-handler" => Some("COMMAND_HANDLER_LISTEN"),
        "graphql-endpoint" => Some("GRAPHQL_LISTEN"),
        "command-generator" => Some("COMMAND_GENERATOR_LISTEN"),
        "heartbeat" => Some("HEARTBEAT_LISTEN"),
        "schema-registry" => Some("SCHEMA_REGISTRY_LISTEN"),
        _ => None,
    }
}

impl RustService {
    fn serve(&self, cmd: &mut Command, name: &str, addr: &str, log: PathBuf) -> anyhow::Result<Record> {
        // A process just killed shows as a zombie while its other threads still exit and hold its sockets: give
        // its port a moment to close.
        if proc::port_open(addr) && !proc::wait_quietly(Duration::from_secs(5), || !proc::port_open(addr)) {
            let port = crate::ports::port_of(addr).unwrap_or(0);
            bail!(
                "port {addr} is in use by {}, which xtask did not start; stop it, or run `cargo xtask up` again to \
                 pick another port",
                crate::ports::holder(port)
            );
        }
        let t = Instant::now();
        let pid = proc::spawn_detached(cmd, &log)?;
        proc::wait_until(name, Duration::from_secs(30), || {
            !proc::alive(pid, "") || http::status(addr, "/ready") == Some(200)
        })?;
        if !proc::alive(pid, "") {
            bail!("{name} exited during start; last lines of {}:\n{}", log.display(), proc::tail(&log, 15));
        }
        step(name, &format!("ready on {addr} in {:.2}s (pid {pid})", t.elapsed().as_secs_f64()));
        Ok(Record {
            name: name.into(),
            pid: Some(pid),
            needle: self.name.into(),
            address: addr.into(),
            log,
            managed: true,
            started_at: unix_secs(),
        })
    }

    fn run_once(&self, cmd: &mut Command, bin: &Path, log: PathBuf) -> anyhow::Result<Record> {
        let t = Instant::now();
        let out = std::fs::File::options().create(true).append(true).open(&log)?;
        let status = cmd
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .with_context(|| format!("failed to run {}", bin.display()))?;
        if !status.success() {
            bail!("{} failed ({status}); last lines of {}:\n{}", self.name, log.display(), proc::tail(&log, 15));
        }
        step(self.name, &format!("done in {:.2}s: {}", t.elapsed().as_secs_f64(), last_summary(&log)));
        Ok(Record {
            name: self.name.into(),
            pid: None,
            needle: EXITED_OK.into(),
            address: String::new(),
            log,
            managed: true,
            started_at: unix_secs(),
        })
    }
}

/// The schema registry: our own service, or the one `SCHEMA_REGISTRY_URL` names.
pub struct Registry(pub RustService);

impl Component for Registry {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn package(&self) -> Option<&'static str> {
        self.0.package()
    }
    fn external(&self, endpoints: &Endpoints) -> Option<String> {
        endpoints.external_registry.then(|| endpoints.registry_url.trim_start_matches("http://").to_owned())
    }
    fn reusable(&self, record: &Record, ctx: &Ctx, anything_started: bool) -> bool {
        self.0.reusable(record, ctx, anything_started)
    }
    fn start(&self, ctx: &Ctx, previous: Option<&Record>, log: PathBuf) -> anyhow::Result<Started> {
        self.0.start(ctx, previous, log)
    }
    fn probe(&self, record: &Record) -> bool {
        self.0.probe(record)
    }
}

fn binary_newer(bin: &Path, started_at: u64) -> bool {
    std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|t| t.as_secs() > started_at)
}

/// The synchronizer's closing `summary=` field, for the progress line.
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
