//! The small HTTP surface every service has: `GET /health` (live), `GET /ready` (dependencies reachable)
//! and `GET /metrics` (Prometheus text).

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Checks the service's dependencies; `Err` carries a short, non-secret reason.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
struct Probes {
    ready: ReadyCheck,
    metrics: PrometheusHandle,
}

/// Routes for `/health`, `/ready`, `/metrics`, to merge into a service's router.
pub fn probe_routes(ready: ReadyCheck, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(Probes { ready, metrics })
}

async fn ready_handler(State(p): State<Probes>) -> impl IntoResponse {
    match (p.ready)().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")),
    }
}

async fn metrics_handler(State(p): State<Probes>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], p.metrics.render())
}

/// A readiness check that always passes (for services without dependencies).
pub fn always_ready() -> ReadyCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

/// How long open connections (websockets, slow clients) may take to finish after a shutdown was requested.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `router` on an already-bound listener until `shutdown` is cancelled; connections still open
/// [`SHUTDOWN_GRACE`] later are dropped, so a process stops promptly on SIGTERM whatever its clients do.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    // Handlers may read the peer address (`ConnectInfo<SocketAddr>`), e.g. to rate-limit per client.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let graceful = axum::serve(listener, service).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        r = graceful => r,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open after the shutdown grace period; closing them");
            Ok(())
        }
    }
}
