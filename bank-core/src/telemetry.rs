//! Structured logs with `tracing` and (feature `http`) Prometheus metrics through the `metrics` crate.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Initialises logging (RUST_LOG, default `info`) as `text` or `json`. Safe to call more than once.
pub fn init_logging(service: &'static str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn,hyper=warn,reqwest=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let result = if format == "json" {
        registry.with(fmt::layer().json().with_current_span(false)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false).with_ansi(ansi)).try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
#[cfg(feature = "http")]
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use std::sync::OnceLock;
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // A recorder may already be installed in tests that embed several services; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
