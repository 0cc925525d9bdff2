//! Produces `Heartbeat{beat}` records to the `heartbeat` topic at a steady rate (beats per second, 0 to
//! [`MAX_RATE`]), changeable at run time with `GET`/`PUT /rate` (`{"beats_per_second": N}`) on port 17888,
//! loopback by default. The same port serves `/health`, `/ready`, `/metrics`. Reads no topic, owns no table.
//!
//! Beats are paced against the clock: every tick sends however many beats are due since the last rate
//! change, so high rates stay precise and a slow tick catches up instead of drifting.

// Outside input (records, HTTP bodies, registry answers) must never panic this crate: no unwrap, expect or
// indexing outside tests (clippy.toml allows them there).
#![warn(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use anyhow::Context;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bank_core::avro::Heartbeat;
use bank_core::config::CommonArgs;
use bank_core::kafka::Producer;
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::topics;
use clap::Parser;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Highest accepted rate (beats per second).
pub const MAX_RATE: u64 = 100_000;
const TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Parser)]
#[command(name = "heartbeat", about = "Produce heartbeats at a rate settable at run time")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Beats per second at start (0 pauses)
    #[arg(long, env = "HEARTBEAT_RATE", default_value_t = 10)]
    pub rate: u64,

    /// Address of the admin HTTP endpoints (/rate, /health, /ready, /metrics)
    #[arg(long, env = "HEARTBEAT_LISTEN", default_value = bank_core::ports::HEARTBEAT_LISTEN)]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rate {
    pub beats_per_second: u64,
}

#[derive(Clone)]
struct AppState {
    rate: Arc<AtomicU64>,
    /// Bumped on every rate change so the pacer restarts its schedule.
    generation: Arc<AtomicU64>,
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.rate > MAX_RATE {
        anyhow::bail!("HEARTBEAT_RATE {} is above the maximum of {MAX_RATE}", config.rate);
    }
    let producer =
        bank_core::kafka::producer(&config.common.kafka(), "heartbeat").context("failed to create producer")?;
    let codec = Codec::new(&config.common.schema_registry_url).context("failed to create the registry codec")?;
    let topic = format!("{}{}", config.common.topic_prefix, topics::HEARTBEAT);
    let state = AppState { rate: Arc::new(AtomicU64::new(config.rate)), generation: Arc::new(AtomicU64::new(0)) };
    metrics::gauge!("heartbeat_rate").set(config.rate as f64);

    let ready = bank_core::kafka::ready_check(&producer);
    let router = Router::new()
        .route("/rate", get(get_rate).put(put_rate))
        .with_state(state.clone())
        .merge(bank_core::http::probe_routes(ready, bank_core::telemetry::metrics()))
        .layer(axum::middleware::from_fn(bank_core::http::local_hosts_only));
    tracing::info!(addr = %listener.local_addr()?, rate = config.rate, topic = %topic, "heartbeat listening");
    let http = tokio::spawn(bank_core::http::serve(listener, router, shutdown.clone()));

    pace(&producer, &codec, &topic, &state, &shutdown).await?;
    // Bounded so that the process stops within 2 s of SIGTERM; a beat lost here is only a beat not sent.
    if let Err(e) = producer.flush(Duration::from_secs(1)) {
        tracing::warn!(error = %e, "heartbeats not flushed on shutdown");
    }
    http.await.context("http task failed")??;
    Ok(())
}

/// Sends beats on schedule until shutdown.
async fn pace(
    producer: &Producer,
    codec: &Codec,
    topic: &str,
    state: &AppState,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut beat: i64 = 0;
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut generation = u64::MAX;
    let (mut since, mut sent_since) = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        let current = state.generation.load(Ordering::Acquire);
        if current != generation {
            generation = current;
            since = Instant::now();
            sent_since = 0;
        }
        let rate = state.rate.load(Ordering::Acquire);
        let due = due_beats(rate, since.elapsed()).saturating_sub(sent_since);
        let mut deliveries = Vec::with_capacity(usize::try_from(due).unwrap_or(0).min(100_000));
        for _ in 0..due {
            let bytes = codec.encode(topic, &Heartbeat { beat }).await.context("failed to encode heartbeat")?;
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(&bytes);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    // Not queued (the local queue full, or Kafka refusing for now): stop this tick and catch up on
                    // the next one.
                    tracing::warn!(error = %e, "heartbeat not queued; catching up on the next tick");
                    break;
                }
            }
            beat += 1;
            sent_since += 1;
        }
        if !deliveries.is_empty() {
            metrics::counter!(bank_core::metric_names::HEARTBEAT_BEATS_SENT).increment(deliveries.len() as u64);
            // The idempotent producer retries on its own; one task per tick counts what still failed.
            tokio::spawn(async move {
                let failed =
                    futures::future::join_all(deliveries).await.iter().filter(|d| !matches!(d, Ok(Ok(_)))).count();
                if failed > 0 {
                    metrics::counter!("heartbeat_delivery_errors_total").increment(failed as u64);
                }
            });
        }
    }
}

/// Beats due after `elapsed` at `rate` beats per second.
pub fn due_beats(rate: u64, elapsed: Duration) -> u64 {
    u64::try_from(u128::from(rate) * elapsed.as_micros() / 1_000_000).unwrap_or(u64::MAX)
}

async fn get_rate(State(state): State<AppState>) -> Json<Rate> {
    Json(Rate { beats_per_second: state.rate.load(Ordering::Acquire) })
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn put_rate(State(state): State<AppState>, body: Result<Json<Rate>, JsonRejection>) -> Response {
    let rate = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            return bad_request(format!(
                "expected JSON {{\"beats_per_second\": N}} with 0 <= N <= {MAX_RATE}: {}",
                e.body_text()
            ));
        }
    };
    if rate.beats_per_second > MAX_RATE {
        return bad_request(format!("beats_per_second must be between 0 and {MAX_RATE}"));
    }
    state.rate.store(rate.beats_per_second, Ordering::Release);
    state.generation.fetch_add(1, Ordering::AcqRel);
    metrics::gauge!("heartbeat_rate").set(rate.beats_per_second as f64);
    tracing::info!(beats_per_second = rate.beats_per_second, "rate changed");
    Json(rate).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_beats_follow_the_clock() {
        assert_eq!(due_beats(0, Duration::from_secs(100)), 0);
        assert_eq!(due_beats(10, Duration::from_millis(99)), 0);
        assert_eq!(due_beats(10, Duration::from_millis(100)), 1);
        assert_eq!(due_beats(50_000, Duration::from_millis(5)), 250);
        assert_eq!(due_beats(MAX_RATE, Duration::from_secs(3600)), 360_000_000);
    }
}
