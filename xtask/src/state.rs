//! `.openbank/state.json`: what `up` started (pids, ports, logs). `down`, `status` and the load test read it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
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

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub run_id: String,
    pub components: Vec<Component>,
}

impl State {
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(path.parent().expect("state file has a folder"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn put(&mut self, c: Component) {
        self.components.retain(|x| x.name != c.name);
        self.components.push(c);
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
