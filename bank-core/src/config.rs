//! Configuration shared by every service, flattened into each service's clap `Config`.

use clap::Args;

/// Infrastructure endpoints. Defaults match the local stack of `cargo xtask up`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Kafka bootstrap servers, comma separated
    #[arg(long, env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,

    /// Confluent-compatible schema registry
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = "http://localhost:8081")]
    pub schema_registry_url: String,

    /// Prefix for every topic name and subject (empty in normal use; tests isolate themselves with it)
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Log output: `text` or `json`
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// PostgreSQL connection for services that own tables. The URL carries a password, so clap never prints it.
#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (`cargo xtask up` writes the local one to `.openbank/env`)
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://openbank@localhost:5432/openbank"
    )]
    pub database_url: String,

    /// Maximum connections in the pool
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

/// Replaces the password of a URL with `***` so it can be logged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h"), "postgres://h");
        assert!(
            !format!("{:?}", DatabaseArgs { database_url: "postgres://a:pw@h/d".into(), database_max_connections: 1 })
                .contains("pw")
        );
    }
}
