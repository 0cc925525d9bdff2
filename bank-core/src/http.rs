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

/// Refuses (421, `FOREIGN_HOST`) a request whose `Host` names a domain: only IP literals, `localhost` and
/// single-label names (a compose service's, `heartbeat:17888`) are this machine's or its network's. A web page that
/// rebinds its own domain to 127.0.0.1 makes the browser send that domain as `Host`, so this stops it from calling
/// loopback admin endpoints (`PUT /rate`, registry deletes) from a victim's browser. No `Host` (HTTP/1.0) passes.
pub async fn local_hosts_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request.headers().get(axum::http::header::HOST).map(|h| h.to_str().unwrap_or("\u{fffd}").to_owned());
    match host {
        Some(h) if !is_local_host(&h) => (
            StatusCode::MISDIRECTED_REQUEST,
            "FOREIGN_HOST: this endpoint answers only to an IP address, localhost or a single-label host name\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// `host[:port]` is an IP literal, `localhost` or a name without a dot.
pub fn is_local_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host_port.rsplit_once(':').map_or(host_port, |(h, p)| if p.parse::<u16>().is_ok() { h } else { host_port })
        }
    };
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && (host.eq_ignore_ascii_case("localhost")
            || (!host.contains('.') && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_host_names_pass() {
        for ok in [
            "127.0.0.1:17888",
            "localhost:8081",
            "LOCALHOST",
            "[::1]:8081",
            "heartbeat:17888",
            "schema-registry",
            "10.0.0.7",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for foreign in [
            "evil.example:17888",
            "evil.example",
            "127.0.0.1.nip.io:17888",
            "localhost.evil.example",
            "[zz]:1",
            "",
            "a b",
        ] {
            assert!(!is_local_host(foreign), "{foreign}");
        }
    }
}
