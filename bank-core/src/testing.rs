//! Helpers for integration tests against the real stack of `cargo xtask up`.
//!
//! Settings come from the environment (`cargo xtask test` sets them) or else from `.openbank/env`, which
//! `cargo xtask up` writes. A test whose infrastructure is missing fails with a message saying how to start it;
//! it never skips silently.

// Test support only: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use sqlx::postgres::PgPool;
use std::path::PathBuf;

/// The repository root: the parent of the running test's crate (`cargo test` sets `CARGO_MANIFEST_DIR` at run
/// time), which stays right when checkouts share one target dir.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|d| d.parent().map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("bank-core has a parent").to_path_buf()
        })
}

/// A stack setting: the environment first, then `.openbank/env`, then `default` ([`crate::stack_env::setting`]).
pub fn setting(key: &str, default: &str) -> String {
    crate::stack_env::setting(&workspace_root(), key, default)
}

/// The stack's brokers as the tests reach them: with the admin principal of `.openbank/env` (or
/// `KAFKA_SASL_USERNAME` / `KAFKA_SASL_PASSWORD` / `KAFKA_SASL_PASSWORD_FILE` from the environment).
pub fn kafka_brokers() -> crate::kafka::Brokers {
    crate::kafka::Brokers::new(&setting("KAFKA_BROKERS", crate::ports::KAFKA_BROKERS), kafka_credentials())
}

/// The tests' Kafka credentials, if the stack has authentication.
pub fn kafka_credentials() -> Option<crate::kafka::Credentials> {
    let username = setting("KAFKA_SASL_USERNAME", "");
    if username.is_empty() {
        return None;
    }
    let mut password = setting("KAFKA_SASL_PASSWORD", "");
    if password.is_empty() {
        let file = setting("KAFKA_SASL_PASSWORD_FILE", "");
        password = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("KAFKA_SASL_PASSWORD_FILE {file}: {e}"))
            .trim_end()
            .to_owned();
    }
    Some(crate::kafka::Credentials { username, password })
}

/// The stack's brokers as the service principal `name` reaches them, with the password `cargo xtask up` made for
/// it (`.openbank/kafka/credentials/<name>`).
pub fn kafka_as(name: &str) -> crate::kafka::Brokers {
    let file = workspace_root().join(".openbank/kafka/credentials").join(name);
    let password = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| infra_missing(&format!("the password of Kafka principal {name} ({})", file.display()), e));
    let credentials = crate::kafka::Credentials { username: name.to_owned(), password: password.trim().to_owned() };
    crate::kafka::Brokers::new(&kafka_brokers().servers, Some(credentials))
}

/// The environment that points a service binary at the stack's brokers with the tests' principal.
pub fn kafka_env() -> Vec<(&'static str, String)> {
    let kafka = kafka_brokers();
    let mut env = vec![("KAFKA_BROKERS", kafka.servers)];
    if let Some(c) = kafka.credentials {
        env.push(("KAFKA_SASL_USERNAME", c.username));
        env.push(("KAFKA_SASL_PASSWORD", c.password));
    }
    env
}

/// The settings every service shares, pointed at the stack with the tests' principal and `prefix`.
pub fn common_args(prefix: &str) -> crate::config::CommonArgs {
    let kafka = kafka_brokers();
    crate::config::CommonArgs {
        kafka_brokers: kafka.servers,
        kafka_sasl_username: kafka.credentials.as_ref().map(|c| c.username.clone()),
        kafka_sasl_password: kafka.credentials.map(|c| c.password),
        schema_registry_url: registry_url(),
        topic_prefix: prefix.to_owned(),
        log_format: "text".into(),
    }
}

pub fn registry_url() -> String {
    setting("SCHEMA_REGISTRY_URL", crate::ports::SCHEMA_REGISTRY_URL)
}

pub fn database_url() -> String {
    setting("DATABASE_URL", crate::ports::DATABASE_URL)
}

/// Fails the test with a clear message when infrastructure is missing.
pub fn infra_missing(what: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "{what} is not reachable ({error}); integration tests need the dev stack: run `cargo xtask up` \
         (or `cargo xtask test`, which starts it), or point KAFKA_BROKERS / DATABASE_URL / SCHEMA_REGISTRY_URL at one"
    )
}

/// A random prefix for topics, subjects and consumer groups so tests never see each other's data.
pub fn unique_prefix() -> String {
    format!("t{}_", crate::token::random_hex::<4>())
}

/// A new, empty database on the stack's PostgreSQL; returns its URL and a pool.
pub async fn fresh_database() -> (String, PgPool) {
    let admin_url = database_url();
    let admin = crate::db::connect(&admin_url, 1).await.unwrap_or_else(|e| infra_missing("PostgreSQL", e));
    let name = format!("test_{}", crate::token::random_hex::<6>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database (does the role have CREATEDB?): {e}"));
    admin.close().await;
    let url = match admin_url.rsplit_once('/') {
        Some((base, last)) => {
            let query = last.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
            format!("{base}/{name}{query}")
        }
        None => panic!("DATABASE_URL has no database path"),
    };
    let pool = crate::db::connect(&url, 5).await.expect("connect to fresh test database");
    (url, pool)
}

/// Deletes every contract topic under `prefix` (about 60 partitions), which would otherwise stay in the shared
/// broker for good and, over many test runs, exhaust its heap. Best effort: a failure only leaves them behind.
pub fn delete_topics(prefix: &str) {
    use rdkafka::admin::AdminOptions;
    let names: Vec<String> = crate::topics::TOPICS.iter().map(|t| t.name_with(prefix)).collect();
    let brokers = kafka_brokers();
    // On a thread of its own: the admin client's futures are driven by librdkafka, not by the test's runtime.
    let deleted = std::thread::spawn(move || {
        let admin = crate::kafka::admin(&brokers).ok()?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
        futures::executor::block_on(admin.delete_topics(&names, &options)).ok()
    })
    .join();
    if !matches!(deleted, Ok(Some(_))) {
        eprintln!("the topics of {prefix} could not be deleted");
    }
}

/// Deletes the topics under its prefix when dropped: at the end of a test, also one that failed.
#[derive(Debug)]
pub struct DeleteTopicsOnDrop(pub String);

impl Drop for DeleteTopicsOnDrop {
    fn drop(&mut self) {
        delete_topics(&self.0);
    }
}
