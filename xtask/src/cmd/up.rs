//! `cargo xtask up`: build, then start (or reuse) every component in order, each waited for by its health check,
//! never a fixed sleep. The synchronizer runs again whenever something before it (re)started.

use std::time::{Duration, Instant};

use crate::component::{self, Ctx, Layer, step};
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::proc;
use crate::setup;
use crate::state::{Record, State, now_secs};

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

pub fn up(opts: &UpOptions) -> anyhow::Result<UpReport> {
    let start = Instant::now();
    let paths = Paths::new(opts.release)?;
    paths.ensure_home()?;
    let endpoints = Endpoints::resolve(&paths)?;
    setup::ensure_packages(&endpoints)?;
    setup::build(&paths, opts.release, opts.quiet_build)?;
    // Before the gateway starts: it serves frontend/dist when that exists at its start.
    crate::frontend::build(&paths)?;
    let mut state = State::load(&paths.state_file());
    let mut report = UpReport::default();
    let ctx = Ctx { paths: &paths, endpoints: &endpoints };

    for c in component::ALL {
        if let Some(address) = c.external(&endpoints) {
            external(&mut state, c.name(), &address);
            continue;
        }
        let current = state.get(c.name()).cloned();
        if current.as_ref().is_some_and(|r| c.reusable(r, &ctx, !report.started.is_empty())) {
            report.reused.push(c.name().into());
            continue;
        }
        let log = state.run_dir(&paths)?.join(format!("{}.log", c.name()));
        let s = c.start(&ctx, current.as_ref(), log)?;
        if c.layer() == Layer::Broker {
            report.kafka_start = Some(s.took);
        }
        if s.started { &mut report.started } else { &mut report.reused }.push(c.name().into());
        state.put(s.record);
        state.save(&paths.state_file())?;
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
        started_at: now_secs(),
    });
}
