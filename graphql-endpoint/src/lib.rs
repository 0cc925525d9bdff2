//! GraphQL gateway: accounts, sessions, money transfers and live transactions; serves the web UI.
//!
//! `POST /graphql`, websocket `/graphql/ws` (graphql-transport-ws and the legacy graphql-ws), GraphiQL at
//! `/graphiql`, `/health`, `/ready`, `/metrics`, and the built frontend at `/`.
//!
//! Sends `confirm_account_creation` and `confirm_money_transfer`; reads `balance_changed` twice: once through
//! the shared projection group (into the `gateway` tables, see [`projection`]) and once per instance from the
//! end (the live feed of subscriptions, see [`live`]). Owns the Postgres schema `gateway`.
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod gateway;
pub mod limits;
pub mod live;
pub mod projection;
pub mod schema;
pub mod socket;
pub mod store;

use anyhow::Context;
use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use clap::Parser;
use gateway::{ClientAddr, Gateway, Settings, Viewer};
use live::Hub;
use rdkafka::producer::Producer;
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
    #[arg(long, env = "GRAPHQL_LISTEN", default_value = "127.0.0.1:8888")]
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

#[derive(Clone)]
struct App {
    service: Arc<Service>,
    /// Largest websocket message or frame, in bytes (the body limit)
    ws_message_limit: usize,
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
    tasks.push(tokio::spawn(live::run_notices(hub.clone(), pool.clone(), shutdown.clone())));

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

/// The HTTP surface.
pub fn router(service: Arc<Service>, config: &Config) -> Router {
    let ready_service = service.clone();
    let ready: bank_core::http::ReadyCheck = Arc::new(move || {
        let s = ready_service.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&s.gateway.pool).await.map_err(|_| "postgres unreachable".to_owned())?;
            s.gateway.hub.ready()?;
            bank_core::kafka::reachable(&s.gateway.producer).await
        })
    });
    let app = App { service, ws_message_limit: config.body_limit };
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let http = Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphiql", get(graphiql))
        .with_state(app.clone())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout));
    // The websocket's life is bounded by its session, not by the request timeout.
    let api = Router::new()
        .route("/graphql/ws", get(websocket))
        .with_state(app)
        .merge(http)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(config.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::new());
    let index = config.frontend_dir.join("index.html");
    let api = api.merge(bank_core::http::probe_routes(ready, bank_core::telemetry::metrics()));
    if index.exists() {
        api.fallback_service(
            tower_http::services::ServeDir::new(&config.frontend_dir)
                .fallback(tower_http::services::ServeFile::new(index)),
        )
    } else {
        api.fallback(no_frontend)
    }
}

async fn no_frontend(uri: axum::http::Uri) -> Response {
    if uri.path() == "/" {
        Html(
            "<!doctype html><title>Open Bank</title><h1>Open Bank</h1>\
             <p>The web UI is not built. The API is at <a href=\"/graphiql\">/graphiql</a>.</p>",
        )
        .into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").title("Open Bank").finish())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The peer address of the connection, when the server was started with connect info.
fn client_addr(info: Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> Option<ClientAddr> {
    info.map(|axum::Extension(ConnectInfo(addr))| ClientAddr(addr.ip()))
}

async fn graphql(
    State(app): State<App>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let viewer = match app.service.gateway.viewer(bearer(&headers)).await {
        Ok(v) => v,
        Err(e) => {
            let err = schema::internal(e);
            return GraphQLResponse::from(async_graphql::Response::from_errors(vec![
                err.into_server_error(async_graphql::Pos::default()),
            ]))
            .into_response();
        }
    };
    metrics::counter!("gateway_requests_total").increment(1);
    let mut request = request.into_inner().data(viewer);
    if let Some(addr) = client_addr(info) {
        request = request.data(addr);
    }
    GraphQLResponse::from(app.service.schema.execute(request).await).into_response()
}

/// The session token of a websocket: `{"token": "…"}` or `{"Authorization": "Bearer …"}` (also under `headers`).
pub fn token_from_init(payload: &serde_json::Value) -> Option<String> {
    let from = |v: &serde_json::Value| -> Option<String> {
        if let Some(t) = v.get("token").and_then(|t| t.as_str()) {
            return Some(t.to_owned());
        }
        let auth = v.get("Authorization").or_else(|| v.get("authorization"))?.as_str()?;
        let (scheme, token) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    };
    from(payload).or_else(|| payload.get("headers").and_then(from))
}

async fn websocket(
    State(app): State<App>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let service = app.service.clone();
    let addr = client_addr(info);
    upgrade
        .max_message_size(app.ws_message_limit)
        .max_frame_size(app.ws_message_limit)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(service, socket, protocol, addr))
}

/// Serves one websocket until the client leaves or its session expires.
async fn serve_socket(
    service: Arc<Service>,
    socket: axum::extract::ws::WebSocket,
    protocol: GraphQLProtocol,
    addr: Option<ClientAddr>,
) {
    let gateway = service.gateway.clone();
    let executor = socket::SocketExecutor {
        schema: service.schema.clone(),
        gateway: gateway.clone(),
        session: Arc::default(),
        operations: limits::Slots::new(gateway.settings.socket_operations),
    };
    let session = executor.session.clone();
    let (expiry_tx, mut expiry) = tokio::sync::watch::channel(None);
    let mut data = Data::default();
    if let Some(addr) = addr {
        data.insert(addr);
    }
    let serve = GraphQLWebSocket::new(socket, executor, protocol)
        .with_data(data)
        .on_connection_init(move |payload| async move {
            let token = token_from_init(&payload);
            let viewer = gateway
                .viewer(token.as_deref())
                .await
                .map_err(|e| async_graphql::Error::new(schema::internal(e).message))?;
            match &viewer {
                Viewer::Unknown => {
                    return Err(async_graphql::Error::new("UNAUTHENTICATED: the session token is unknown or expired"));
                }
                Viewer::Signed { user, token, expires_at } => {
                    let _ = session.set(socket::SocketSession { user: user.id, token: token.clone() });
                    let _ = expiry_tx.send(Some(*expires_at));
                }
                Viewer::Anonymous => {}
            }
            let mut data = Data::default();
            data.insert(viewer);
            Ok(data)
        })
        .serve();
    // A signed-in socket lives no longer than its session.
    let expired = async move {
        let Ok(at) = expiry.wait_for(Option::is_some).await.map(|at| *at) else {
            return std::future::pending().await;
        };
        let left = at.map_or(Duration::ZERO, |at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
        tokio::time::sleep(left).await;
    };
    tokio::select! {
        () = serve => {}
        () = expired => tracing::debug!("websocket closed at its session's expiry"),
    }
}
