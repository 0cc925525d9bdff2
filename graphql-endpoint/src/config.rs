//! The gateway's settings: command-line flags and their environment variables.

use bank_core::config::{CommonArgs, DatabaseArgs};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(name = "graphql-endpoint", about = "GraphQL gateway of Open Bank")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address of the HTTP endpoints
    #[arg(long, env = "GRAPHQL_LISTEN", default_value = bank_core::ports::GRAPHQL_LISTEN)]
    pub listen: SocketAddr,

    /// Consumer group of the projection, shared by all instances (the topic prefix is put in front)
    #[arg(long, env = "GRAPHQL_GROUP", default_value = "graphql-endpoint")]
    pub group: String,

    /// Longest wait for the bank's answer to a mutation before it reports PENDING, in milliseconds
    #[arg(long, env = "GRAPHQL_RESULT_TIMEOUT_MS", default_value_t = 5000)]
    pub result_timeout_ms: u64,

    /// Lifetime of a session, in seconds
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..))]
    pub session_ttl_secs: i64,

    /// Lowest balance of an account, in cents (the command-handler's setting of the same name)
    #[arg(long, env = "DEFAULT_LIMIT_CENTS", default_value_t = -50_000, allow_negative_numbers = true)]
    pub default_limit_cents: i64,

    /// User name of the bank employee, who may read every account
    #[arg(long, env = "EMPLOYEE_USERNAME", default_value = "employee")]
    pub employee_username: String,

    /// Password of the bank employee; no employee exists without it
    #[arg(long, env = "EMPLOYEE_PASSWORD", hide_env_values = true)]
    pub employee_password: Option<String>,

    /// Folder of the built web UI, served at `/`
    #[arg(long, env = "FRONTEND_DIR", default_value = "frontend/dist")]
    pub frontend_dir: PathBuf,

    /// Folder of load-test results (`load-test` writes `<id>/run.json` and graphs), served read-only
    #[arg(long, env = "RESULTS_DIR", default_value = "results")]
    pub results_dir: PathBuf,

    /// Largest request body, in bytes
    #[arg(long, env = "GRAPHQL_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Most records the projection writes in one transaction
    #[arg(long, env = "GRAPHQL_PROJECTION_BATCH", default_value_t = 1000)]
    pub projection_batch: usize,

    /// Longest an HTTP request may take, body included, in seconds (then 408)
    #[arg(long, env = "GRAPHQL_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,

    /// Password hashes (Argon2, 9 MiB each) computed at once; further logins and registrations wait
    #[arg(long, env = "GRAPHQL_HASH_CONCURRENCY", default_value_t = 2)]
    pub hash_concurrency: usize,

    /// Password hashes waiting for their turn at most; beyond that a login or registration answers OVERLOADED
    #[arg(long, env = "GRAPHQL_HASH_QUEUE", default_value_t = 64)]
    pub hash_queue: usize,

    /// Logins (right or wrong) from one client address per window; each costs a password hash
    #[arg(long, env = "GRAPHQL_LOGINS_PER_ADDRESS", default_value_t = 600)]
    pub logins_per_address: u32,

    /// Registrations from one client address per window
    #[arg(long, env = "GRAPHQL_REGISTRATIONS_PER_ADDRESS", default_value_t = 2000)]
    pub registrations_per_address: u32,

    /// Live sessions of one user at most; a login beyond ends the oldest
    #[arg(long, env = "GRAPHQL_SESSIONS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions_per_user: u32,

    /// Failed logins of one user name from one client address per window before RATE_LIMITED there; from all
    /// addresses together a user name may fail 20 times this (so an attacker's guesses do not lock the owner out)
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURES_PER_USER", default_value_t = 5)]
    pub login_failures_per_user: u32,

    /// Failed logins from one client address per window before RATE_LIMITED
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 30)]
    pub login_failures_per_address: u32,

    /// Window of the login and registration limits, in seconds
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURE_WINDOW_SECS", default_value_t = 300)]
    pub login_failure_window_secs: u64,

    /// Operations (subscriptions included) running at once on one websocket
    #[arg(long, env = "GRAPHQL_WS_MAX_OPERATIONS", default_value_t = 32)]
    pub ws_max_operations: usize,

    /// Websockets open at once from one client address (the load tester opens one per user, 500 by default, all
    /// from one address; behind a NAT or a proxy every client shares its address)
    #[arg(long, env = "GRAPHQL_WS_PER_ADDRESS", default_value_t = 1024)]
    pub ws_per_address: usize,

    /// Seconds a new websocket has to send `connection_init` before it is closed
    #[arg(long, env = "GRAPHQL_WS_INIT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_init_timeout_secs: u64,

    /// Operations running at once of one signed-in user, over all of its websockets
    #[arg(long, env = "GRAPHQL_OPERATIONS_PER_USER", default_value_t = 256)]
    pub operations_per_user: usize,

    /// Operations running at once of anonymous websockets from one client address
    #[arg(long, env = "GRAPHQL_ANONYMOUS_OPERATIONS_PER_ADDRESS", default_value_t = 256)]
    pub anonymous_operations_per_address: usize,

    /// HTTP connections open at once (websockets included); more are closed at accept
    #[arg(long, env = "GRAPHQL_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,

    /// HTTP connections open at once from one client address
    #[arg(long, env = "GRAPHQL_CONNECTIONS_PER_ADDRESS", default_value_t = 2048)]
    pub connections_per_address: usize,

    /// Seconds a client has to send a request's header (also the longest idle time of a keep-alive connection)
    #[arg(long, env = "GRAPHQL_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Websocket operations running at once on this instance; anonymous websockets may hold half of them at
    /// most, so signed-in users always have the other half
    #[arg(long, env = "GRAPHQL_MAX_SUBSCRIPTIONS", default_value_t = 10_000)]
    pub max_subscriptions: usize,

    /// HTTP GraphQL requests in progress at once on this instance; beyond it a request is refused at once with
    /// HTTP 503 and code OVERLOADED (clients retry with their idempotency key) instead of queueing
    #[arg(long, env = "GRAPHQL_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// How often a websocket operation re-reads its session, in seconds (logouts are also announced at once)
    #[arg(long, env = "GRAPHQL_SESSION_RECHECK_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_recheck_secs: u64,

    /// The heartbeat's Prometheus endpoint, read by the `pipeline` query (empty: not read)
    #[arg(long, env = "PIPELINE_HEARTBEAT_METRICS_URL", default_value_t = metrics_url(bank_core::ports::HEARTBEAT_LISTEN))]
    pub pipeline_heartbeat_metrics_url: String,

    /// The command generator's Prometheus endpoint, read by the `pipeline` query (empty: not read)
    #[arg(long, env = "PIPELINE_GENERATOR_METRICS_URL", default_value_t = metrics_url(bank_core::ports::COMMAND_GENERATOR_LISTEN))]
    pub pipeline_generator_metrics_url: String,

    /// The command handler's Prometheus endpoint, read by the `pipeline` query (empty: not read)
    #[arg(long, env = "PIPELINE_HANDLER_METRICS_URL", default_value_t = metrics_url(bank_core::ports::COMMAND_HANDLER_LISTEN))]
    pub pipeline_handler_metrics_url: String,

    /// The command generator's consumer group on `heartbeat`, for its lag (the topic prefix is put in front)
    #[arg(long, env = "PIPELINE_GENERATOR_GROUP", default_value = "command-generator")]
    pub pipeline_generator_group: String,

    /// The command handler's consumer group on the command topics, for its lag (the topic prefix is put in front)
    #[arg(long, env = "PIPELINE_HANDLER_GROUP", default_value = "command-handler")]
    pub pipeline_handler_group: String,

    /// How long one sample of the pipeline is served to every reader before the next is taken, in milliseconds
    #[arg(long, env = "PIPELINE_CACHE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub pipeline_cache_ms: u64,
}

/// The Prometheus endpoint of a service listening on `listen`.
fn metrics_url(listen: &str) -> String {
    format!("http://{listen}/metrics")
}

impl Config {
    /// What `--check-config` (and every start) validates beyond clap's parsing, without connecting anywhere.
    pub fn check(&self) -> anyhow::Result<()> {
        bank_core::cli::check_common(&self.common)?;
        bank_core::cli::check_database(&self.database)?;
        for (name, url) in [
            ("PIPELINE_HEARTBEAT_METRICS_URL", &self.pipeline_heartbeat_metrics_url),
            ("PIPELINE_GENERATOR_METRICS_URL", &self.pipeline_generator_metrics_url),
            ("PIPELINE_HANDLER_METRICS_URL", &self.pipeline_handler_metrics_url),
        ] {
            if !url.trim().is_empty() {
                anyhow::Context::context(bank_core::cli::check_http_url(url.trim()), name)?;
            }
        }
        anyhow::ensure!(self.employee_password.as_deref() != Some(""), "EMPLOYEE_PASSWORD is set but empty");
        Ok(())
    }

    /// What the HTTP server holds open at most.
    pub fn connection_limits(&self) -> bank_core::http::ConnectionLimits {
        bank_core::http::ConnectionLimits {
            max_connections: self.max_connections,
            max_per_address: self.connections_per_address,
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
        }
    }

    /// Where the `pipeline` query reads its numbers.
    pub fn pipeline_sources(&self) -> crate::pipeline::Sources {
        let url = |u: &str| (!u.trim().is_empty()).then(|| u.trim().to_owned());
        let prefix = &self.common.topic_prefix;
        crate::pipeline::Sources {
            heartbeat_metrics: url(&self.pipeline_heartbeat_metrics_url),
            generator_metrics: url(&self.pipeline_generator_metrics_url),
            handler_metrics: url(&self.pipeline_handler_metrics_url),
            kafka_brokers: self.common.kafka(),
            generator_group: format!("{prefix}{}", self.pipeline_generator_group),
            handler_group: format!("{prefix}{}", self.pipeline_handler_group),
            projection_group: format!("{prefix}{}", self.group),
            topics: bank_core::topics::TopicNames::with_prefix(prefix),
            cache_for: std::time::Duration::from_millis(self.pipeline_cache_ms),
        }
    }
}
