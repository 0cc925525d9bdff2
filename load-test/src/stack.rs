//! Where the local stack is: the checkout root, `.openbank/env` and the addresses in `.openbank/state.json`.

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

/// The gateway when neither the environment nor `.openbank/env` names one.
pub const DEFAULT_GRAPHQL_URL: &str = bank_core::ports::GRAPHQL_URL;

/// A setting: the process environment first (`KEY`, or the file `KEY_FILE` names), then `.openbank/env`, then
/// `default` ([`bank_core::stack_env::setting`]).
pub fn setting(root: &Path, key: &str, default: &str) -> String {
    bank_core::stack_env::setting(root, key, default)
}

/// The brokers `servers` with the Kafka principal of the environment or `.openbank/env` (`KAFKA_SASL_USERNAME`,
/// `KAFKA_SASL_PASSWORD` or its `_FILE`): the stack's admin, written there by `cargo xtask up`.
pub fn brokers(root: &Path, servers: &str) -> bank_core::kafka::Brokers {
    let username = setting(root, "KAFKA_SASL_USERNAME", "");
    let credentials = (!username.is_empty())
        .then(|| bank_core::kafka::Credentials { username, password: setting(root, "KAFKA_SASL_PASSWORD", "") });
    bank_core::kafka::Brokers::new(servers, credentials)
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
    fn settings_come_from_the_env_file_of_the_checkout() {
        let root = std::env::temp_dir().join(format!("load-test-stack-{}", std::process::id()));
        std::fs::create_dir_all(root.join(".openbank")).unwrap();
        let text = bank_core::stack_env::render(
            "test",
            &[("LOAD_TEST_STACK_TEST_URL", "http://localhost:8890"), ("LOAD_TEST_STACK_TEST_Q", "it's")],
        );
        std::fs::write(root.join(".openbank/env"), text).unwrap();
        assert_eq!(setting(&root, "LOAD_TEST_STACK_TEST_URL", DEFAULT_GRAPHQL_URL), "http://localhost:8890");
        assert_eq!(setting(&root, "LOAD_TEST_STACK_TEST_Q", ""), "it's");
        assert_eq!(setting(&root, "LOAD_TEST_STACK_TEST_NONE", "fallback"), "fallback");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
