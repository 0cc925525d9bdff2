//! `cargo xtask down`: stops what `up` started, services first, then Kafka, then PostgreSQL.

use anyhow::Context;
use std::time::Duration;

use crate::component::{self, Layer};
use crate::paths::Paths;
use crate::proc::Stopped;
use crate::stack;
use crate::state::{Record, State};

/// Stops what `up` started; `clean` also deletes data and logs. Returns each stopped component with how long it
/// took.
pub fn down(clean: bool) -> anyhow::Result<Vec<(String, Stopped)>> {
    let paths = Paths::new(false)?;
    let mut state = State::load(&paths.state_file());
    let mut stopped = Vec::new();
    for r in stop_order(&state.components) {
        if !r.managed {
            continue;
        }
        // A record of no known component (an older xtask's) is stopped as a plain process.
        let s = match stack::find(&r.name) {
            Some(c) => c.stop(&paths, r, clean)?,
            None => component::stop_process(r, Duration::from_secs(20)),
        };
        if let Some(s) = s {
            stopped.push((r.name.clone(), s));
        }
    }
    state.components.clear();
    state.run_id.clear(); // the next `up` logs into a new run folder
    if clean {
        // A clean start places every component on its default port again.
        state.ports = Default::default();
    }
    state.save(&paths.state_file())?;
    if clean {
        for dir in [paths.data(), paths.logs()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
            }
        }
        component::step("clean", "deleted data and logs");
    }
    if stopped.is_empty() {
        eprintln!("nothing was running");
    }
    Ok(stopped)
}

/// Services first (newest first), then Kafka, then PostgreSQL: a service must never find its infrastructure gone
/// while it shuts down, whatever order the state file lists components in.
fn stop_order(records: &[Record]) -> Vec<&Record> {
    let layer = |r: &Record| stack::find(&r.name).map_or(Layer::Service, |c| c.layer());
    let mut order: Vec<&Record> = records.iter().rev().collect();
    order.sort_by_key(|r| layer(r));
    order
}

/// Components recorded as started by xtask whose processes are still alive (for the `down` check).
pub fn leftover_processes(before: &State) -> Vec<String> {
    before
        .components
        .iter()
        .filter(|r| r.managed)
        .flat_map(|r| {
            let pids = match stack::find(&r.name) {
                Some(c) => c.pids(r),
                None => r.pid.filter(|&p| crate::proc::alive(p, &r.needle)).into_iter().collect(),
            };
            pids.into_iter().map(move |p| format!("{} (pid {p})", r.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            pid: None,
            needle: String::new(),
            address: String::new(),
            log: Default::default(),
            managed: true,
            started_at: 0,
        }
    }

    #[test]
    fn services_stop_before_kafka_and_kafka_before_postgres() {
        let records: Vec<Record> =
            ["kafka", "heartbeat", "postgres", "command-handler", "graphql-endpoint"].map(record).into();
        let order: Vec<&str> = stop_order(&records).iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["graphql-endpoint", "command-handler", "heartbeat", "kafka", "postgres"]);
    }
}
