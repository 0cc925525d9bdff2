//! The stack's components and what each kind knows: how to start it, whether it is healthy, how to stop it, its
//! processes and its log. `ALL` lists them in start order; `down` stops them by layer (services, then the broker,
//! then the database).

use anyhow::bail;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::Endpoints;
use crate::kafka::Kafka;
use crate::paths::Paths;
use crate::postgres::Postgres;
use crate::proc::{self, Stopped};
use crate::service::{Probe, Registry, RustService};
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

/// Every component `up` runs, in start order. Each one's port is its slot in `crate::ports`.
pub static ALL: &[&dyn Component] = &[
    &Postgres,
    &Kafka,
    &Registry(RustService { name: "schema-registry", probe: Probe::Http }),
    &RustService { name: "synchronizer", probe: Probe::OneShot },
    &RustService { name: "heartbeat", probe: Probe::Http },
    &RustService { name: "command-handler", probe: Probe::Http },
    &RustService { name: "graphql-endpoint", probe: Probe::Http },
    &RustService { name: "command-generator", probe: Probe::Http },
];

/// The component a state record belongs to: `command-handler-2` (a second instance) belongs to `command-handler`.
pub fn find(name: &str) -> Option<&'static dyn Component> {
    let base = split_instance(name).0;
    ALL.iter().copied().find(|c| c.name() == base)
}

/// The record name of instance `n` of `base`: the first instance keeps the plain name, the others get `-<n>`.
pub fn instance_name(base: &str, n: u32) -> String {
    if n <= 1 { base.to_owned() } else { format!("{base}-{n}") }
}

/// `(component, instance)` of a record name: `kafka-3` is `("kafka", 3)`, `command-handler` is
/// `("command-handler", 1)`.
pub fn split_instance(name: &str) -> (&str, u32) {
    match name.rsplit_once('-') {
        Some((base, n)) if !base.is_empty() && !n.starts_with('0') => match n.parse::<u32>() {
            Ok(n) if n >= 2 => (base, n),
            _ => (name, 1),
        },
        _ => (name, 1),
    }
}

/// How many instances of `base` the state records (at least 1 once the first is recorded).
pub fn recorded_instances(state: &State, base: &str) -> u32 {
    state
        .components
        .iter()
        .filter(|r| split_instance(&r.name).0 == base)
        .map(|r| split_instance(&r.name).1)
        .max()
        .unwrap_or(0)
}

/// Whether a recorded component is healthy; a record of no known component is not.
pub fn healthy(record: &Record) -> bool {
    find(&record.name).is_some_and(|c| c.healthy(record))
}

/// Whether `name` is one of the stack's own (Rust) services.
pub fn is_service(name: &str) -> bool {
    find(name).is_some_and(|c| c.layer() == Layer::Service)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_have_their_own_names() {
        assert_eq!(instance_name("command-handler", 1), "command-handler");
        assert_eq!(instance_name("command-handler", 2), "command-handler-2");
        assert_eq!(split_instance("command-handler-2"), ("command-handler", 2));
        assert_eq!(split_instance("command-handler"), ("command-handler", 1));
        assert_eq!(split_instance("kafka-3"), ("kafka", 3));
        for odd in ["kafka-1", "kafka-0", "kafka-02", "-2", "kafka-", "kafka-x"] {
            assert_eq!(split_instance(odd), (odd, 1), "{odd}");
        }
        let mut state = State::default();
        assert_eq!(recorded_instances(&state, "kafka"), 0);
        for name in ["kafka", "kafka-2", "kafka-3", "command-handler"] {
            state.components.push(Record {
                name: name.into(),
                pid: None,
                needle: String::new(),
                address: String::new(),
                log: PathBuf::new(),
                managed: true,
                started_at: 0,
            });
        }
        assert_eq!(recorded_instances(&state, "kafka"), 3);
        assert_eq!(recorded_instances(&state, "command-handler"), 1);
    }

    #[test]
    fn components_have_distinct_names_and_start_in_layer_order() {
        let names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let layers: Vec<Layer> = ALL.iter().map(|c| c.layer()).collect();
        assert!(layers.windows(2).all(|w| w[0] >= w[1]), "infrastructure starts before the services: {layers:?}");
        assert_eq!(find("kafka").map(|c| c.layer()), Some(Layer::Broker));
        assert!(is_service("command-handler") && !is_service("postgres") && !is_service("nothing"));
        assert!(is_service("command-handler-2") && find("kafka-3").is_some_and(|c| c.layer() == Layer::Broker));
        assert_eq!(
            ALL.iter().filter_map(|c| c.package()).collect::<Vec<_>>(),
            names.iter().copied().filter(|n| is_service(n)).collect::<Vec<_>>()
        );
    }
}
