//! The stack's components and what each kind knows: how to start it, whether it is healthy, how to stop it, its
//! processes and its log (the list of them, in start order, is `stack::ALL`).

use anyhow::bail;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::Endpoints;
use crate::paths::Paths;
use crate::proc::{self, Stopped};
use crate::state::{Record, State};

/// What a component depends on, in the order `down` stops them (services first, the database last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Service,
    Broker,
    Database,
}

/// What a component's start has to work with.
pub struct Ctx<'a> {
    pub paths: &'a Paths,
    pub endpoints: &'a Endpoints,
    /// Which instance of the component this start is for (1 for the first, which keeps the default port).
    pub instance: u32,
    /// How many instances of it the stack runs (Kafka: brokers in the cluster).
    pub instances: u32,
}

/// What a start did.
pub struct Started {
    pub record: Record,
    /// Started by this `up` (false: it was already running and is only adopted).
    pub started: bool,
    /// Until healthy.
    pub took: Duration,
    /// Its storage was made anew by this start (Kafka's, formatted): what refers to the old one is stale.
    pub new_storage: bool,
}

pub trait Component: Sync {
    fn name(&self) -> &'static str;

    fn layer(&self) -> Layer {
        Layer::Service
    }

    /// The cargo package that builds its binary, for the Rust services.
    fn package(&self) -> Option<&'static str> {
        None
    }

    /// Where the operator runs it instead (from `KAFKA_BROKERS`, `DATABASE_URL`, ...); `up` then starts nothing.
    fn external(&self, _endpoints: &Endpoints) -> Option<String> {
        None
    }

    /// Whether `up` may keep what an earlier `up` left, as it is.
    fn reusable(&self, record: &Record, _ctx: &Ctx, _anything_started: bool) -> bool {
        self.healthy(record)
    }

    /// Starts it (or adopts an instance already running), logging to `log`, and waits until it is healthy.
    fn start(&self, ctx: &Ctx, previous: Option<&Record>, log: PathBuf) -> anyhow::Result<Started>;

    /// The kind's own health check (for a recorded process that is still running).
    fn probe(&self, record: &Record) -> bool;

    /// Whether the recorded component is up: its process (if xtask started one) is alive and its probe passes.
    fn healthy(&self, record: &Record) -> bool {
        let gone = record.managed && record.pid.is_some_and(|pid| !proc::alive(pid, &record.needle));
        !gone && self.probe(record)
    }

    /// Stops what `up` started; `clean` also deletes its data where that is more than removing files. Returns how
    /// the stop went, or `None` when nothing was running.
    fn stop(&self, _paths: &Paths, record: &Record, _clean: bool) -> anyhow::Result<Option<Stopped>> {
        Ok(stop_process(record, Duration::from_secs(20)))
    }

    /// Restarts it in place (same data, same address); only the infrastructure can.
    fn restart(&self, _paths: &Paths, _state: &mut State) -> anyhow::Result<()> {
        bail!("cannot restart `{}`: only kafka and postgres can be restarted in place", self.name())
    }

    /// Restarts one instance (`kafka-2`: the second broker); the first instance's name restarts the whole
    /// component.
    fn restart_instance(&self, paths: &Paths, state: &mut State, name: &str) -> anyhow::Result<()> {
        if name != self.name() {
            bail!("cannot restart `{name}` on its own");
        }
        self.restart(paths, state)
    }

    /// Its live processes.
    fn pids(&self, record: &Record) -> Vec<u32> {
        record.pid.filter(|&pid| proc::alive(pid, &record.needle)).into_iter().collect()
    }

    /// Its log file.
    fn log(&self, record: &Record) -> PathBuf {
        record.log.clone()
    }
}

/// SIGTERM, then SIGKILL after `grace`, if the recorded process is still running; prints how it went.
pub fn stop_process(record: &Record, grace: Duration) -> Option<Stopped> {
    let pid = record.pid.filter(|&pid| proc::alive(pid, &record.needle))?;
    let s = proc::stop(pid, &record.needle, grace);
    let what = if s.killed {
        format!("killed after {}s grace", grace.as_secs())
    } else {
        format!("stopped in {:.1}s", s.took.as_secs_f64())
    };
    step(&record.name, &what);
    Some(s)
}

/// One line of progress, the component name right-aligned.
pub fn step(name: &str, msg: &str) {
    eprintln!("{name:>17}  {msg}");
}
