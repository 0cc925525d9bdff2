//! Where the local stack is: the checkout root, `.openbank/env` and the addresses in `.openbank/state.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkout root: `OPENBANK_ROOT`, else the nearest ancestor of the working directory with `.openbank/`
/// or a `Cargo.lock`, else the working directory.
pub fn root() -> PathBuf {
    if let Ok(r) = std::env::var("OPENBANK_ROOT") {
        return PathBuf::from(r);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join(".openbank").is_dir())
        .or_else(|| cwd.ancestors().find(|d| d.join("Cargo.lock").is_file()))
        .map_or(cwd.clone(), Path::to_path_buf)
}

/// `export KEY='value'` lines of `.openbank/env`.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').trim_matches('"').to_owned()))
        .collect()
}

/// A setting: the process environment first, then `.openbank/env`, then `default`.
pub fn setting(root: &Path, key: &str, default: &str) -> String {
    if let Ok(v) = std::env::var(key) {
        return v;
    }
    let file = std::fs::read_to_string(root.join(".openbank/env")).unwrap_or_default();
    parse_env(&file).remove(key).unwrap_or_else(|| default.to_owned())
}

/// The address a component listens on, from the state file.
pub fn address(root: &Path, component: &str) -> Option<String> {
    let text = std::fs::read_to_string(root.join(".openbank/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["components"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == component)
        .and_then(|c| c["address"].as_str())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_parse() {
        let e = parse_env("# comment\nexport KAFKA_BROKERS='localhost:9092'\nexport X=\"y=z\"\nnot a line\n");
        assert_eq!(e["KAFKA_BROKERS"], "localhost:9092");
        assert_eq!(e["X"], "y=z");
        assert_eq!(e.len(), 2);
    }
}
