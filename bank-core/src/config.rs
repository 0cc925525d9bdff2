//! Configuration shared by every service, flattened into each service's clap `Config`.

use clap::Args;

/// Infrastructure endpoints. Defaults match the local stack of `cargo xtask up`.
#[derive(Clone, Args)]
pub struct CommonArgs {
    /// Kafka bootstrap servers, comma separated
    #[arg(long, env = "KAFKA_BROKERS", default_value = crate::ports::KAFKA_BROKERS)]
    pub kafka_brokers: String,

    /// This service's Kafka principal (SASL/SCRAM-SHA-256); unset, the client speaks PLAINTEXT. `cargo xtask up`
    /// and docker-compose.yml give every service its own
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// The principal's password (or KAFKA_SASL_PASSWORD_FILE)
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,

    /// Confluent-compatible schema registry
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = crate::ports::SCHEMA_REGISTRY_URL)]
    pub schema_registry_url: String,

    /// Prefix for every topic name and subject (empty in normal use; tests isolate themselves with it)
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Log output: `text` or `json`
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl CommonArgs {
    /// The brokers and this service's credentials.
    #[cfg(feature = "kafka")]
    pub fn kafka(&self) -> crate::kafka::Brokers {
        let credentials = self.kafka_sasl_username.as_ref().map(|u| crate::kafka::Credentials {
            username: u.clone(),
            password: self.kafka_sasl_password.clone().unwrap_or_default(),
        });
        crate::kafka::Brokers::new(&self.kafka_brokers, credentials)
    }
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonArgs")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field("kafka_sasl_password", &self.kafka_sasl_password.as_ref().map(|_| "<redacted>"))
            .field("schema_registry_url", &self.schema_registry_url)
            .field("topic_prefix", &self.topic_prefix)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// PostgreSQL connection for services that own tables. The URL carries a password, so clap never prints it.
#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (`cargo xtask up` writes the local one to `.openbank/env`)
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = crate::ports::DATABASE_URL
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

pub use crate::redact::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_database_password() {
        assert!(
            !format!("{:?}", DatabaseArgs { database_url: "postgres://a:pw@h/d".into(), database_max_connections: 1 })
                .contains("pw")
        );
    }
}
