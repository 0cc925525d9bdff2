//! The small HTTP surface every service has: `GET /health` (live), `GET /ready` (dependencies reachable)
//! and `GET /metrics` (Prometheus text).

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What one listener serves at most. A connection counts from its accept to its close, a websocket included
/// (its handler holds the connection's [`ConnectionGuard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more are accepted and closed at once (so they cannot pile up in the backlog).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_address: usize,
    /// Longest wait for a request's whole header: a client that sends half a header, or keeps an idle
    /// keep-alive connection, is closed after it.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 4096, max_per_address: 512, header_timeout: Duration::from_secs(10) }
    }
}

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One open connection, counted until the last clone is dropped. Requests carry it as an extension, so a
/// websocket handler can keep it for the socket's life.
#[derive(Debug, Clone)]
pub struct ConnectionGuard {
    _counted: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    open: Arc<Mutex<Open>>,
    addr: IpAddr,
}

impl ConnectionGuard {
    fn take(open: &Arc<Mutex<Open>>, addr: IpAddr, limits: &ConnectionLimits) -> Option<Self> {
        let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = o.per_address.get(&addr).copied().unwrap_or(0);
        if o.total >= limits.max_connections || mine >= limits.max_per_address {
            return None;
        }
        o.total += 1;
        o.per_address.insert(addr, mine + 1);
        Some(Self { _counted: Arc::new(GuardInner { open: open.clone(), addr }) })
    }
}

impl Drop for GuardInner {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.per_address.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                o.per_address.remove(&self.addr);
            }
        }
    }
}

/// Serves `router` with the default [`ConnectionLimits`]; see [`serve_with`].
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ConnectionLimits::default()).await
}

/// Serves `router` (HTTP/1.1, upgrades allowed) on an already-bound listener until `shutdown` is cancelled.
/// Handlers may read the peer (`ConnectInfo<SocketAddr>`) and the connection's [`ConnectionGuard`] from the
/// request's extensions. Connections beyond `limits` are closed at accept; a header not received within
/// `limits.header_timeout` closes its connection; TCP keepalive finds peers that vanished. After a shutdown,
/// connections still open [`SHUTDOWN_GRACE`] later are dropped, so a process stops promptly whatever its
/// clients do.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let keepalive =
        socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken: wait a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(guard) = ConnectionGuard::take(&open, peer.ip(), &limits) else {
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request.extensions_mut().insert(guard.clone());
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                }
            }
        });
    }
    // Connections (and websockets holding their guard) get the grace period to finish.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while open.lock().unwrap_or_else(|e| e.into_inner()).total > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if open.lock().unwrap_or_else(|e| e.into_inner()).total > 0 {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address_and_given_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits =
            ConnectionLimits { max_connections: 3, max_per_address: 2, header_timeout: Duration::from_secs(1) };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = ConnectionGuard::take(&open, a, &limits).unwrap();
        let a2 = ConnectionGuard::take(&open, a, &limits).unwrap();
        assert!(ConnectionGuard::take(&open, a, &limits).is_none(), "a third from one address");
        let b1 = ConnectionGuard::take(&open, b, &limits).unwrap();
        assert!(ConnectionGuard::take(&open, b, &limits).is_none(), "a fourth in all");
        let held = a1.clone();
        drop(a1);
        assert!(ConnectionGuard::take(&open, b, &limits).is_none(), "a clone keeps the connection counted");
        drop((held, a2, b1));
        let o = open.lock().unwrap();
        assert_eq!((o.total, o.per_address.len()), (0, 0));
    }

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
