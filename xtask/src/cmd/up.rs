//! `cargo xtask up`: build, then start (or reuse) every component in order, each waited for by its health check,
//! never a fixed sleep. The synchronizer runs again whenever something before it (re)started. `--brokers 3` runs
//! a three-node Kafka cluster, `--handlers N` and `--gateways N` further instances of those services (each on its
//! own port, in the same consumer group); without them `up` keeps the counts the stack runs with. Before starting
//! anything it places every component on a port (`crate::ports`): its default, or, when a program `up` did not
//! start holds that, a free one it names in its output and records for every tool (`--strict-ports`: fail instead).

use anyhow::Context;
use std::time::{Duration, Instant};

use crate::component::{Ctx, Layer, step};
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::ports::{self, Ports, Want, controller_slot};
use crate::postgres;
use crate::proc;
use crate::setup;
use crate::stack;
use crate::state::{Record, State};
use bank_core::clock::unix_secs;

#[derive(Default)]
pub struct UpOptions {
    pub release: bool,
    pub quiet_build: bool,
    /// Kafka brokers (1 or 3); `None`: as many as run now, else 1.
    pub brokers: Option<u32>,
    /// command-handler instances; `None`: as many as run now, else 1.
    pub handlers: Option<u32>,
    /// graphql-endpoint instances; `None`: as many as run now, else 1.
    pub gateways: Option<u32>,
    /// Fail when a default port is taken instead of picking another.
    pub strict_ports: bool,
}

impl UpOptions {
    /// How many instances of `name` this `up` runs.
    fn instances(&self, state: &State, name: &str) -> u32 {
        let asked = match name {
            "kafka" => self.brokers,
            "command-handler" => self.handlers,
            "graphql-endpoint" => self.gateways,
            _ => return 1,
        };
        asked.unwrap_or_else(|| crate::state::recorded_instances(state, name)).max(1)
    }
}

/// What `up` did, for callers (the test runner checks that a second `up` starts nothing).
#[derive(Debug, Default)]
pub struct UpReport {
    pub started: Vec<String>,
    pub reused: Vec<String>,
    pub total: Duration,
    pub kafka_start: Option<Duration>,
}

pub fn up(opts: &UpOptions) -> anyhow::Result<UpReport> {
    let start = Instant::now();
    let paths = Paths::new(opts.release)?;
    paths.ensure_home()?;
    let mut endpoints = Endpoints::resolve(&paths)?;
    setup::ensure_packages(&endpoints)?;
    setup::build(&paths, opts.release, opts.quiet_build)?;
    // Before the gateway starts: it serves frontend/dist when that exists at its start.
    crate::frontend::build(&paths)?;
    let mut state = State::load(&paths.state_file());
    let mut report = UpReport::default();
    let brokers = opts.instances(&state, "kafka");

    let wants = port_wants(&paths, opts, &state, &endpoints, true)?;
    let (placed, moves) = ports::plan(&wants, &state.ports, opts.strict_ports, &ports::is_free, &ports::holder)?;
    for m in &moves {
        step(&m.slot, &format!("port {} is in use by {}, which `up` did not start; using {}", m.from, m.holder, m.to));
    }
    // A running service that would keep addresses that just moved is started again with the new ones.
    let moved_since = placed.iter().any(|(slot, port)| state.ports.recorded(slot).is_some_and(|p| p != port));
    // Slots this `up` does not run (a Kafka node beyond `--brokers`, a stopped instance) keep their record:
    // `prepare` still finds the old nodes where they listen.
    for (slot, port) in placed.iter() {
        state.ports.set(slot, port);
    }
    state.save(&paths.state_file())?;
    // The addresses every service, tool and test gets follow the ports just placed.
    endpoints = Endpoints::resolve(&paths)?;
    if !endpoints.external_kafka {
        endpoints.kafka_brokers = endpoints.ports.kafka_bootstrap(brokers);
    }

    for c in stack::ALL {
        if let Some(address) = c.external(&endpoints) {
            external(&mut state, c.name(), &address);
            continue;
        }
        let instances = opts.instances(&state, c.name());
        // Fewer instances than before: the extra ones stop (Kafka's node count changes only after a `down`).
        if c.layer() == Layer::Service {
            scale_down(&paths, &mut state, c.name(), instances)?;
        }
        let topology_changed =
            c.layer() == Layer::Broker && crate::state::recorded_instances(&state, c.name()) != instances;
        for instance in 1..=instances {
            let ctx = Ctx { paths: &paths, endpoints: &endpoints, instance, instances };
            let name = crate::instance::instance_name(c.name(), instance);
            let current = state.get(&name).cloned();
            let restart = topology_changed || (moved_since && c.layer() == Layer::Service);
            if !restart && current.as_ref().is_some_and(|r| c.reusable(r, &ctx, !report.started.is_empty())) {
                report.reused.push(name);
                continue;
            }
            let log = state.run_dir(&paths)?.join(format!("{name}.log"));
            let s = c.start(&ctx, current.as_ref(), log)?;
            if s.new_storage {
                empty_database_for_new_kafka(&paths, &endpoints)?;
            }
            if c.layer() == Layer::Broker {
                report.kafka_start = Some(report.kafka_start.unwrap_or_default().max(s.took));
            }
            if s.started { &mut report.started } else { &mut report.reused }.push(name);
            state.put(s.record);
            state.save(&paths.state_file())?;
        }
    }

    endpoints.write(&paths)?;
    state.save(&paths.state_file())?;
    report.total = start.elapsed();
    if report.started.is_empty() {
        eprintln!("\nOpen Bank is already up: {} components healthy, nothing started.", report.reused.len());
    } else {
        eprintln!("\nOpen Bank is up in {:.1}s (started: {}).", report.total.as_secs_f64(), report.started.join(", "));
    }
    endpoints.print_urls(&paths);
    Ok(report)
}

/// The port slots this `up` needs: every instance of every component it runs itself (not the infrastructure the
/// environment points elsewhere), each fixed where it must not move: a process of this stack that is running there
/// (kept, or restarted in place), or, as root, Debian's PostgreSQL cluster on its configured port.
/// `create`: as root, create Debian's cluster if there is none (a preview does not).
fn port_wants(
    paths: &Paths,
    opts: &UpOptions,
    state: &State,
    endpoints: &Endpoints,
    create: bool,
) -> anyhow::Result<Vec<Want>> {
    let running =
        |name: &str| state.get(name).is_some_and(|r| r.managed && r.pid.is_some_and(|pid| proc::alive(pid, &r.needle)));
    let recorded_or_running =
        |slot: &str, instance: &str| -> Option<u16> { running(instance).then(|| state.ports.port(slot)) };
    // While any Kafka node runs, every node keeps its ports: the running ones know the others' controller
    // addresses (`controller.quorum.voters`). A taken one then fails its start, naming the holder.
    let kafka_running =
        state.components.iter().any(|r| crate::instance::split_instance(&r.name).0 == "kafka" && running(&r.name));
    let mut wants = Vec::new();
    for c in stack::ALL {
        if c.external(endpoints).is_some() || c.name() == "synchronizer" {
            continue;
        }
        if c.name() == "postgres" {
            // Debian's cluster as root; else the private cluster, running (with or without a record of it: an
            // `up` that failed after starting it left none) on the port its postmaster.pid names.
            let fixed = match crate::postgres::system_cluster_port(create)? {
                Some(port) => Some(port),
                None => crate::postgres::private_cluster_port(paths),
            };
            wants.push(Want { slot: "postgres".into(), fixed });
            continue;
        }
        for n in 1..=opts.instances(state, c.name()) {
            let name = crate::instance::instance_name(c.name(), n);
            let keep = |slot: &str| {
                if c.layer() == Layer::Broker && kafka_running {
                    Some(state.ports.port(slot))
                } else {
                    recorded_or_running(slot, &name)
                }
            };
            wants.push(Want { slot: name.clone(), fixed: keep(&name) });
            if c.layer() == Layer::Broker {
                let slot = controller_slot(&name);
                wants.push(Want { fixed: keep(&slot), slot });
            }
        }
    }
    Ok(wants)
}

/// What `doctor` shows: the ports a plain `up` would use now, and the moves it would make.
pub fn preview_ports() -> anyhow::Result<(Ports, Vec<ports::Move>)> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    let endpoints = Endpoints::resolve(&paths)?;
    let wants = port_wants(&paths, &UpOptions::default(), &state, &endpoints, false)?;
    ports::plan(&wants, &state.ports, false, &ports::is_free, &ports::holder)
}

/// Stops the instances of `name` beyond the first `keep` and forgets them.
pub fn scale_down(paths: &Paths, state: &mut State, name: &str, keep: u32) -> anyhow::Result<()> {
    let extra: Vec<Record> = state
        .components
        .iter()
        .filter(|r| {
            let (base, n) = crate::instance::split_instance(&r.name);
            base == name && n > keep
        })
        .cloned()
        .collect();
    for r in extra {
        if let Some(c) = stack::find(&r.name).filter(|_| r.managed) {
            c.stop(paths, &r, false)?;
        }
        state.components.retain(|x| x.name != r.name);
        state.save(&paths.state_file())?;
    }
    Ok(())
}

/// Starts (again) one recorded instance of a service, `command-handler-2` say, on its own address, and records
/// it: what the chaos run and the tests use after killing one.
pub fn start_instance(release: bool, name: &str) -> anyhow::Result<()> {
    let paths = Paths::new(release)?;
    let mut state = State::load(&paths.state_file());
    let c = stack::find(name).with_context(|| format!("no component `{name}`"))?;
    // An instance the stack did not run yet gets its port now, clear of every port already placed.
    if state.ports.recorded(name).is_none() {
        let mut wants: Vec<Want> =
            state.ports.iter().map(|(slot, port)| Want { slot: slot.to_owned(), fixed: Some(port) }).collect();
        wants.push(Want { slot: name.to_owned(), fixed: None });
        let (placed, moves) = ports::plan(&wants, &state.ports, false, &ports::is_free, &ports::holder)?;
        for m in &moves {
            step(&m.slot, &format!("port {} is in use by {}; using {}", m.from, m.holder, m.to));
        }
        state.ports = placed;
        state.save(&paths.state_file())?;
    }
    let endpoints = Endpoints::resolve(&paths)?;
    let (base, instance) = crate::instance::split_instance(name);
    let instances = crate::state::recorded_instances(&state, base).max(instance);
    let ctx = Ctx { paths: &paths, endpoints: &endpoints, instance, instances };
    let current = state.get(name).cloned();
    let log = state.run_dir(&paths)?.join(format!("{name}.log"));
    let s = c.start(&ctx, current.as_ref(), log)?;
    if s.new_storage {
        empty_database_for_new_kafka(&paths, &endpoints)?;
    }
    state.put(s.record);
    state.save(&paths.state_file())?;
    Ok(())
}

/// A rule across two components: a new Kafka cluster has none of the topics the database's offsets, results and
/// accounts refer to, so the stack's database starts empty with it (one the environment points to is not ours
/// to empty).
fn empty_database_for_new_kafka(paths: &Paths, endpoints: &Endpoints) -> anyhow::Result<()> {
    if !endpoints.external_database && postgres::reset_database(paths)? {
        step("postgres", &format!("emptied {}: Kafka's storage is new", crate::env::database_name(paths)));
    }
    Ok(())
}

/// Records a component the operator runs elsewhere.
fn external(state: &mut State, name: &str, address: &str) {
    step(name, &format!("external at {address}"));
    // Never forget a process xtask started itself, or `down` could not stop it.
    if state.get(name).is_some_and(|c| c.managed && c.pid.is_some_and(|p| proc::alive(p, &c.needle))) {
        return;
    }
    state.put(Record {
        name: name.into(),
        pid: None,
        needle: String::new(),
        address: address.into(),
        log: Default::default(),
        managed: false,
        started_at: unix_secs(),
    });
}
