//! A running gateway: its connections, its background work (projection, live feed, result listener) and its
//! schema.

use crate::config::Config;
use crate::gateway::{self, Gateway, Settings};
use crate::live::{self, Hub};
use crate::results::{self, Results};
use crate::schema::{self, BankSchema};
use crate::{limits, projection, store};
use anyhow::Context;
use bank_core::kafka::Producer;
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use sqlx::postgres::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Connections of the projection's own pool (it projects one batch at a time; the second spares a reconnect).
pub const PROJECTION_CONNECTIONS: u32 = 2;

/// A running gateway's parts, for the HTTP layer and for tests that execute the schema directly.
pub struct Service {
    pub gateway: Arc<Gateway>,
    pub schema: BankSchema,
}

/// Connects to Postgres and Kafka and starts the background work (projection, live feed, result listener).
pub async fn start(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<Service>, Vec<JoinHandle<()>>)> {
    let pool = bank_core::db::connect(&config.database.database_url, config.database.database_max_connections)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    bank_core::db::migrate(&pool, store::SCHEMA, store::MIGRATIONS).await.context("database migration failed")?;
    let producer =
        bank_core::kafka::producer(&config.common.kafka(), "graphql-endpoint").context("failed to create producer")?;
    let codec =
        Arc::new(Codec::new(&config.common.schema_registry_url).context("failed to create the registry codec")?);
    // The projection has connections of its own: the requests' queries never queue it (answers wait for it).
    let projection_pool = bank_core::db::connect(&config.database.database_url, PROJECTION_CONNECTIONS)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    let gateway = Arc::new(gateway_of(config, pool, producer, codec));
    let tasks = vec![
        spawn_live_feed(config, &gateway, shutdown)?,
        tokio::spawn(results::run_listener(gateway.results.clone(), gateway.pool.clone(), shutdown.clone())),
        spawn_projection(config, &gateway, projection_pool, shutdown)?,
    ];
    if let Some(password) = &config.employee_password {
        let username = gateway::normalise_username(&config.employee_username)
            .context("EMPLOYEE_USERNAME must be 3 to 32 letters, digits, '.', '_' or '-'")?;
        gateway.ensure_employee(&username, password).await.context("cannot create the bank employee")?;
        tracing::info!(username = %username, "bank employee ready");
    }
    let schema = schema::build(gateway.clone());
    Ok((Arc::new(Service { gateway, schema }), tasks))
}

/// The gateway's domain state, as configured.
fn gateway_of(config: &Config, pool: PgPool, producer: Producer, codec: Arc<Codec>) -> Gateway {
    let mut settings = Settings::new(
        &config.common.topic_prefix,
        Duration::from_millis(config.result_timeout_ms),
        config.session_ttl_secs,
        config.default_limit_cents,
    );
    settings.employee_username = config.employee_username.to_ascii_lowercase();
    settings.session_recheck = Duration::from_secs(config.session_recheck_secs);
    settings.socket_operations = config.ws_max_operations;
    settings.results_dir = config.results_dir.clone();
    settings.sessions_per_user = config.sessions_per_user;
    settings.ws_init_timeout = Duration::from_secs(config.ws_init_timeout_secs);
    settings.attempts = gateway::AttemptLimits {
        window: Duration::from_secs(config.login_failure_window_secs),
        failures_per_user: config.login_failures_per_user,
        failures_per_address: config.login_failures_per_address,
        logins_per_address: config.logins_per_address,
        registrations_per_address: config.registrations_per_address,
    };
    Gateway {
        claims: crate::claims::Claims::start(pool.clone()),
        pool,
        producer,
        codec,
        hub: Arc::new(Hub::default()),
        results: Arc::new(Results::default()),
        settings,
        hashes: limits::HashPool::new(config.hash_concurrency, config.hash_queue),
        subscriptions: limits::Slots::new(config.max_subscriptions),
        anonymous_subscriptions: limits::Slots::new(config.max_subscriptions / 2),
        anonymous_by_address: limits::KeyedSlots::new(config.anonymous_operations_per_address),
        operations_by_user: limits::KeyedSlots::new(config.operations_per_user),
        sockets_by_address: limits::KeyedSlots::new(config.ws_per_address),
        attempts_since_sweep: std::sync::atomic::AtomicU32::new(0),
        stats: crate::cache::Cached::new(crate::cache::STATS_CACHE),
        runs: crate::cache::Cached::new(crate::cache::RUNS_CACHE),
        pipeline: crate::pipeline::Pipeline::new(config.pipeline_sources()),
    }
}

/// The live feed: every instance reads everything, from the end, under a group of its own that never commits.
fn spawn_live_feed(config: &Config, gateway: &Gateway, shutdown: &CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    let instance = bank_core::token::random_hex::<4>();
    let live_group = format!("{}{}-live-{instance}", config.common.topic_prefix, config.group);
    let consumer = bank_core::kafka::consumer(&config.common.kafka(), &live_group, "graphql-endpoint-live")
        .context("failed to create the live consumer")?;
    Ok(tokio::spawn(live::run_transactions(
        gateway.hub.clone(),
        consumer,
        gateway.codec.clone(),
        gateway.settings.topics.balance_changed.clone(),
        shutdown.clone(),
    )))
}

/// The projection, under the group all instances share; when it fails, the whole service stops.
fn spawn_projection(
    config: &Config,
    gateway: &Gateway,
    pool: PgPool,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let group = format!("{}{}", config.common.topic_prefix, config.group);
    let consumer = bank_core::kafka::consumer(&config.common.kafka(), &group, "graphql-endpoint")
        .context("failed to create consumer")?;
    let projection = projection::Projection {
        pool,
        codec: gateway.codec.clone(),
        producer: gateway.producer.clone(),
        topics: gateway.settings.topics.clone(),
        batch_size: config.projection_batch.max(1),
        batch_wait: Duration::from_millis(5),
    };
    let stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        if let Err(e) = projection.run(consumer, stop.clone()).await {
            tracing::error!(error = format!("{e:#}"), "projection stopped");
            stop.cancel();
        }
    }))
}
