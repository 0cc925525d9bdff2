//! What every mode of a measuring run shares: its command-line settings ([`RunArgs`]), the context it runs in
//! ([`Ctx`]) and how a finished step's numbers are made from what it recorded ([`step_from`]). The modes (`run`,
//! `pipeline`, `anchor`) import it; it imports none of them.

use crate::record::Shared;
use crate::schedule::Dispatched;
use crate::{hist, stack};
use bank_core::load_test_run::Step;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Rates per step (transfers or commands per second).
    #[arg(long, value_delimiter = ',', default_value = "100,250,500,1000,2000,4000,8000")]
    pub rates: Vec<f64>,
    /// Measured seconds per step (for `anchor`: seconds per background rate).
    #[arg(long, default_value_t = 30)]
    pub step_secs: u64,
    /// Seconds at the step's rate before measuring.
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// Users registered and funded up front (`run`).
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    #[arg(long, default_value_t = 100.0)]
    pub slo_p99_ms: f64,
    /// The latency kind the SLO applies to; default: `event` (run), `result` (pipeline), `probe` (anchor).
    #[arg(long)]
    pub slo_kind: Option<String>,
    /// The gateway; default: GRAPHQL_URL from `.openbank/env` (the port `cargo xtask up` placed it on), else
    /// http://localhost:8888.
    #[arg(long, env = "LOAD_TEST_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The heartbeat's admin address; default: from `.openbank/state.json`, else http://127.0.0.1:17888.
    #[arg(long, env = "LOAD_TEST_HEARTBEAT")]
    pub heartbeat: Option<String>,
    /// Where runs are written (`<dir>/<run id>`, the gateway's RESULTS_DIR); default `<checkout>/results`.
    #[arg(long, env = "RESULTS_DIR")]
    pub results_dir: Option<PathBuf>,
    /// CPU and memory per component from `proc` (the processes of `cargo xtask up`, in /proc) or `docker` (the
    /// containers of this compose project, from the Docker Engine API at /var/run/docker.sock).
    #[arg(long, env = "LOAD_TEST_RESOURCES", default_value = "proc", value_parser = ["proc", "docker"])]
    pub resources: String,
    /// Kafka brokers; default: `.openbank/env`, else localhost:9092.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka principal (the stack's super user); default: `.openbank/env`, else none (PLAINTEXT).
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// Its password (or KAFKA_SASL_PASSWORD_FILE); default: `.openbank/env`.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// The schema registry; default: `.openbank/env`, else http://localhost:8081.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// PostgreSQL, for the calibration's commit timing; default: `.openbank/env`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Topic prefix of the stack; default: `.openbank/env`, else none.
    #[arg(long, env = "TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// Output folder; default `results/<UTC timestamp>[-<label>]`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "")]
    pub label: String,
    /// `run`: at most this many seconds of unmeasured load at the first rate before the first step, until the
    /// stack is steady (two 3 s windows' p99 within 25 %); 0 skips it.
    #[arg(long, default_value_t = 30)]
    pub stack_warmup_secs: u64,
    /// Runs the whole ladder this many times (each its own folder, labelled `-r1`, `-r2`, …) and reports the
    /// headline figures over them as min / median / max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// Sends open at once; a send due beyond it is counted as an error (never queued, never dropped).
    #[arg(long, default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Seconds to wait for an answer or a balance change before counting a timeout.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// `anchor`: background heartbeats added per step.
    #[arg(long, default_value_t = 10)]
    pub increment: u64,
    /// `anchor`: highest background rate.
    #[arg(long, default_value_t = 2000)]
    pub max_rate: u64,
    /// `anchor`: a probe slower than this is slow; a step with 3 slow probes ends the run.
    #[arg(long, default_value_t = 1000.0)]
    pub slow_ms: f64,
}

impl RunArgs {
    /// The gateway (resolved at the start of a run).
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(stack::DEFAULT_GRAPHQL_URL)
    }
}

/// What every mode shares while it runs.
pub struct Ctx {
    pub args: RunArgs,
    pub root: PathBuf,
    pub brokers: bank_core::kafka::Brokers,
    pub registry: String,
    pub topic_prefix: String,
    /// Ctrl-C: the current step ends cleanly, results are still written.
    pub cancel: CancellationToken,
    pub stop_sockets: CancellationToken,
    pub origin: Instant,
    pub calibration: bank_core::load_test_run::Calibration,
    /// Filled by the mode that warmed the stack up.
    pub warm_up: std::sync::Mutex<Option<bank_core::load_test_run::WarmUp>>,
}

impl Ctx {
    pub fn heartbeat_url(&self) -> String {
        self.args.heartbeat.clone().unwrap_or_else(|| {
            let a = stack::address(&self.root, "heartbeat").unwrap_or_else(|| "127.0.0.1:17888".into());
            format!("http://{a}")
        })
    }
}

/// A finished step's numbers from what it recorded.
pub fn step_from(ctx: &Ctx, mode: &str, rate: f64, d: &Dispatched, rec: &Shared, start_s: f64, end_s: f64) -> Step {
    let mut g = rec.lock();
    if d.overflow_measured > 0 {
        for _ in 0..d.overflow_measured {
            g.error("LOAD_TEST_OVERLOAD".into());
        }
    }
    let count = if mode == "pipeline" { g.sent } else { d.sent_measured + d.overflow_measured };
    // A send neither answered nor failed by the end of the grace period is a timeout.
    let accounted = g.confirmed + g.failed + g.pending + g.errors + g.timeouts;
    g.timeouts += count.saturating_sub(accounted);
    let secs = d.window.as_secs_f64();
    let latency: BTreeMap<String, bank_core::load_test_run::Latency> =
        g.hist.iter().map(|(k, h)| ((*k).to_owned(), hist::summarize(h, ctx.calibration.floor_ms(k)))).collect();
    Step {
        mode: mode.to_owned(),
        offered_rate: rate,
        achieved_rate: if secs > 0.0 { (g.decided_in_window as f64 / secs * 10.0).round() / 10.0 } else { 0.0 },
        window_secs: secs,
        count,
        confirmed: g.confirmed,
        failed: g.failed,
        pending: g.pending,
        errors: g.errors,
        timeouts: g.timeouts,
        missing_events: g.missing_events,
        interrupted: d.cancelled,
        start_s,
        end_s,
        latency,
        errors_by_kind: g.error_kinds.clone(),
        completed: g.confirmed + g.failed,
        ..Step::default()
    }
}
