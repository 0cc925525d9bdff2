//! The HTTP surface: `POST /graphql`, the websocket `/graphql/ws`, GraphiQL, the probes and the web UI.

use crate::config::Config;
use crate::gateway::{ClientAddr, Viewer};
use crate::service::Service;
use crate::{limits, schema, socket};
use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct App {
    service: Arc<Service>,
    /// Largest websocket message or frame, in bytes (the body limit)
    ws_message_limit: usize,
    /// GraphQL requests and websocket queries and mutations in progress (`GRAPHQL_MAX_IN_FLIGHT` permits)
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Longest run of a request, or of a query or mutation over a websocket
    request_timeout: Duration,
}

/// The HTTP surface.
pub fn router(service: Arc<Service>, config: &Config) -> Router {
    let ready_service = service.clone();
    let ready: bank_core::http::ReadyCheck = Arc::new(move || {
        let s = ready_service.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&s.gateway.pool).await.map_err(|_| "postgres unreachable".to_owned())?;
            s.gateway.hub.ready()?;
            s.gateway.results.ready()?;
            bank_core::kafka::reachable(&s.gateway.producer).await
        })
    });
    let app = App {
        service,
        ws_message_limit: config.body_limit,
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight as usize)),
        request_timeout: Duration::from_secs(config.request_timeout_secs),
    };
    let timeout = app.request_timeout;
    // GraphiQL bundled with the web UI (no CDN) when it is built; the CDN page otherwise.
    let bundled = config.frontend_dir.join("graphiql.html");
    let graphiql_page = if bundled.exists() {
        axum::routing::get_service(tower_http::services::ServeFile::new(bundled))
    } else {
        get(graphiql)
    };
    let http = Router::new()
        .route("/graphql", graphiql_page.clone().post(graphql))
        .route("/graphiql", graphiql_page)
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
    let api = api.merge(crate::load_tests::routes(&config.results_dir));
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
    // Shed load rather than queue it: a request beyond the limit costs one answer, not memory and everyone's latency.
    let Ok(_permit) = app.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("gateway_requests_shed_total").increment(1);
        let e = schema::coded("OVERLOADED", "the gateway is at its limit of requests in progress; retry shortly");
        let body = GraphQLResponse::from(async_graphql::Response::from_errors(vec![
            e.into_server_error(async_graphql::Pos::default()),
        ]));
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], body).into_response();
    };
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
    connection: Option<axum::Extension<bank_core::http::ConnectionGuard>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let addr = client_addr(info);
    // Sockets per client address; the socket also keeps its connection counted (`GRAPHQL_MAX_CONNECTIONS`).
    let unknown = ClientAddr(std::net::IpAddr::from([0, 0, 0, 0]));
    let Some(socket_slot) = app.service.gateway.sockets_by_address.take(&addr.unwrap_or(unknown).0) else {
        metrics::counter!("gateway_sockets_refused_total").increment(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "5")],
            "TOO_MANY_CONNECTIONS: this address has its share of websockets open\n",
        )
            .into_response();
    };
    let held = (socket_slot, connection.map(|axum::Extension(c)| c));
    let service = app.service.clone();
    upgrade
        .read_buffer_size(limits::WS_READ_BUFFER)
        .max_message_size(app.ws_message_limit)
        .max_frame_size(app.ws_message_limit)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let _held = held;
            serve_socket(service, app.in_flight, app.request_timeout, socket, protocol, addr).await;
        })
}

/// Serves one websocket until the client leaves or its session expires; closes it when `connection_init` does
/// not come within `GRAPHQL_WS_INIT_TIMEOUT_SECS`.
async fn serve_socket(
    service: Arc<Service>,
    in_flight: Arc<tokio::sync::Semaphore>,
    request_timeout: Duration,
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
        addr,
        in_flight,
        request_timeout,
    };
    let session = executor.session.clone();
    let init_timeout = gateway.settings.ws_init_timeout;
    let (initialised_tx, mut initialised) = tokio::sync::watch::channel(false);
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
            let _ = initialised_tx.send(true);
            let mut data = Data::default();
            data.insert(viewer);
            Ok(data)
        })
        .serve();
    let init_deadline = async move {
        if tokio::time::timeout(init_timeout, initialised.wait_for(|done| *done)).await.is_err() {
            return;
        }
        std::future::pending::<()>().await;
    };
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
        () = init_deadline => {
            metrics::counter!("gateway_sockets_init_timeouts_total").increment(1);
            tracing::debug!("websocket closed: no connection_init in time");
        }
    }
}
