//! `.openbank/state.json`: what `up` started (pids, addresses, logs) and the ports it picked. `down`, `status`, the
//! load test and the tests read it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::instance::split_instance;
use crate::paths::Paths;

/// One component as `up` left it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub pid: Option<u32>,
    /// Text that must appear in the process's command line (guards against recycled pids).
    pub needle: String,
    pub address: String,
    pub log: PathBuf,
    /// Started by xtask (so `down` stops it); false for reused or external infrastructure.
    pub managed: bool,
    /// Seconds since the epoch when started.
    pub started_at: u64,
}

/// The needle of a one-shot component that ran to completion.
pub const EXITED_OK: &str = "exit 0";

impl Record {
    /// A one-shot component that finished successfully.
    pub fn finished(&self) -> bool {
        self.pid.is_none() && self.needle == EXITED_OK
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub run_id: String,
    pub components: Vec<Record>,
    /// The port of every slot `up` placed (kept across `down`, so a stack that had to move keeps its ports;
    /// `down --clean` forgets them).
    #[serde(default)]
    pub ports: crate::ports::Ports,
}

impl State {
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Record> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn put(&mut self, c: Record) {
        self.components.retain(|x| x.name != c.name);
        self.components.push(c);
    }

    /// This run's log folder `.openbank/logs/<yyyymmdd-hhmmss>` (created with the first component started after
    /// a `down`), with `.openbank/logs/latest` pointing at it.
    pub fn run_dir(&mut self, paths: &Paths) -> anyhow::Result<PathBuf> {
        let dir = paths.logs().join(&self.run_id);
        if !self.run_id.is_empty() && dir.exists() {
            return Ok(dir);
        }
        self.run_id = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        let dir = paths.logs().join(&self.run_id);
        std::fs::create_dir_all(&dir)?;
        let latest = paths.logs().join("latest");
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&self.run_id, &latest);
        Ok(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_counted_from_the_records() {
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
    fn run_ids_are_local_timestamps() {
        let mut state = State::default();
        let base = std::env::temp_dir().join(format!("openbank-state-{}", std::process::id()));
        let paths = Paths::at(&base);
        let dir = state.run_dir(&paths).unwrap();
        assert_eq!(state.run_id.len(), "20261130-185810".len());
        assert!(state.run_id.chars().all(|c| c.is_ascii_digit() || c == '-'), "{}", state.run_id);
        assert_eq!(dir, paths.logs().join(&state.run_id));
        // The same run keeps its folder.
        assert_eq!(state.run_dir(&paths).unwrap(), dir);
        assert_eq!(std::fs::read_link(paths.logs().join("latest")).unwrap(), PathBuf::from(&state.run_id));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
