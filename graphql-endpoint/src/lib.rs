//! GraphQL gateway: accounts, sessions, money transfers and live transactions; serves the web UI.
//!
//! `POST /graphql`, websocket `/graphql/ws` (graphql-transport-ws and the legacy graphql-ws), GraphiQL at
//! `/graphiql`, `/health`, `/ready`, `/metrics`, and the built frontend at `/`.
//!
//! Sends `confirm_account_creation` and `confirm_money_transfer`; reads `balance_changed` twice: once through
//! the shared projection group (into the `gateway` tables, see [`projection`]) and once per instance from the
//! end (the live feed of subscriptions, see [`live`]). Owns the Postgres schema `gateway`.
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod error;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod live;
pub mod projection;
pub mod results;
pub mod schema;
pub mod socket;
pub mod store;
pub mod validate;

pub use http::{router, token_from_init};

use anyhow::Context;
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use clap::Parser;
use gateway::{Gateway, Settings};
use live::Hub;
use rdkafka::producer::Producer;
use results::Results;
use schema::BankSchema;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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

    /// Largest request body, in bytes
    #[arg(long, env = "GRAPHQL_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Most records the projection writes in one transaction
    #[arg(long, env = "GRAPHQL_PROJECTION_BATCH", default_value_t = 1000)]
    pub projection_batch: usize,

    /// Longest an HTTP request may take, body included, in seconds (then 408)
    #[arg(long, env = "GRAPHQL_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,

    /// Password hashes (Argon2, 19 MiB each) computed at once; further logins and registrations wait
    #[arg(long, env = "GRAPHQL_HASH_CONCURRENCY", default_value_t = 2)]
    pub hash_concurrency: usize,

    /// Failed logins of one user name per window before RATE_LIMITED
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURES_PER_USER", default_value_t = 5)]
    pub login_failures_per_user: u32,

    /// Failed logins from one client address per window before RATE_LIMITED
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 30)]
    pub login_failures_per_address: u32,

    /// Window of the failed-login limits, in seconds
    #[arg(long, env = "GRAPHQL_LOGIN_FAILURE_WINDOW_SECS", default_value_t = 300)]
    pub login_failure_window_secs: u64,

    /// Operations (subscriptions included) running at once on one websocket
    #[arg(long, env = "GRAPHQL_WS_MAX_OPERATIONS", default_value_t = 32)]
    pub ws_max_operations: usize,

    /// Websocket operations running at once on this instance
    #[arg(long, env = "GRAPHQL_MAX_SUBSCRIPTIONS", default_value_t = 10_000)]
    pub max_subscriptions: usize,

    /// How often a websocket operation re-reads its session, in seconds (logouts are also announced at once)
    #[arg(long, env = "GRAPHQL_SESSION_RECHECK_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_recheck_secs: u64,
}

/// User names whose failed logins are tracked at most (and as many client addresses).
pub const MAX_TRACKED_LOGIN_FAILURES: usize = 100_000;

/// A running gateway's parts, for the HTTP layer and for tests that execute the schema directly.
pub struct Service {
    pub gateway: Arc<Gateway>,
    pub schema: BankSchema,
}

/// Connects to Postgres and Kafka and starts the background work (projection, live feed, result listener).
pub async fn start(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<Service>, Vec<tokio::task::JoinHandle<()>>)> {
    let pool = bank_core::db::connect(&config.database.database_url, config.database.database_max_connections)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    bank_core::db::migrate(&pool, store::SCHEMA, store::MIGRATIONS).await.context("database migration failed")?;
    let prefix = &config.common.topic_prefix;
    let brokers = &config.common.kafka_brokers;
    let producer = bank_core::kafka::producer(brokers, "graphql-endpoint").context("failed to create producer")?;
    let codec =
        Arc::new(Codec::new(&config.common.schema_registry_url).context("failed to create the registry codec")?);
    let hub = Arc::new(Hub::default());
    let results = Arc::new(Results::default());
    let mut settings = Settings::new(
        prefix,
        Duration::from_millis(config.result_timeout_ms),
        config.session_ttl_secs,
        config.default_limit_cents,
    );
    settings.employee_username = config.employee_username.to_ascii_lowercase();
    settings.session_recheck = Duration::from_secs(config.session_recheck_secs);
    settings.socket_operations = config.ws_max_operations;
    let window = Duration::from_secs(config.login_failure_window_secs);
    let gateway = Arc::new(Gateway {
        pool: pool.clone(),
        producer: producer.clone(),
        codec: codec.clone(),
        hub: hub.clone(),
        results: results.clone(),
        settings,
        hashes: limits::HashPool::new(config.hash_concurrency),
        user_failures: limits::FailureLimiter::new(config.login_failures_per_user, window, MAX_TRACKED_LOGIN_FAILURES),
        address_failures: limits::FailureLimiter::new(
            config.login_failures_per_address,
            window,
            MAX_TRACKED_LOGIN_FAILURES,
        ),
        subscriptions: limits::Slots::new(config.max_subscriptions),
    });
    let mut tasks = Vec::new();

    // The live feed: every instance reads everything, from the end, under a group of its own that never commits.
    let instance = bank_core::token::random_hex::<4>();
    let live_group = format!("{prefix}{}-live-{instance}", config.group);
    let live_consumer = bank_core::kafka::consumer(brokers, &live_group, "graphql-endpoint-live")
        .context("failed to create the live consumer")?;
    let topics = gateway.settings.topics.clone();
    tasks.push(tokio::spawn(live::run_transactions(
        hub.clone(),
        live_consumer,
        codec.clone(),
        topics.balance_changed.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(results::run_listener(results, pool.clone(), shutdown.clone())));

    let group = format!("{prefix}{}", config.group);
    let consumer =
        bank_core::kafka::consumer(brokers, &group, "graphql-endpoint").context("failed to create consumer")?;
    let projection = projection::Projection {
        pool: pool.clone(),
        codec: codec.clone(),
        producer: producer.clone(),
        topics,
        batch_size: config.projection_batch.max(1),
        batch_wait: Duration::from_millis(5),
    };
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = projection.run(consumer, stop.clone()).await {
            tracing::error!(error = format!("{e:#}"), "projection stopped");
            stop.cancel();
        }
    }));

    if let Some(password) = &config.employee_password {
        let username = gateway::normalise_username(&config.employee_username)
            .context("EMPLOYEE_USERNAME must be 3 to 32 letters, digits, '.', '_' or '-'")?;
        gateway.ensure_employee(&username, password).await.context("cannot create the bank employee")?;
        tracing::info!(username = %username, "bank employee ready");
    }
    let schema = schema::build(gateway.clone());
    Ok((Arc::new(Service { gateway, schema }), tasks))
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (service, tasks) = start(&config, &shutdown).await?;
    let router = router(service.clone(), &config);
    tracing::info!(addr = %listener.local_addr()?, "graphql-endpoint listening");
    let served = bank_core::http::serve(listener, router, shutdown.clone()).await;
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let _ = service.gateway.producer.flush(Duration::from_secs(10));
    tracing::info!("graphql-endpoint stopped");
    Ok(served?)
}
