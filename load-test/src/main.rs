//! Open-loop load tester (spec section 7): `run` (through the GraphQL API), `pipeline` (heartbeat-driven, Kafka
//! timestamps), `anchor` (the reference's method) and `compare` (graphs over several runs).

mod calibrate;
mod chaos;
mod cost;
mod ctx;
mod docker;
mod gql;
mod graphs;
mod heartbeat;
mod hist;
mod load;
mod model;
mod output;
mod pipeline;
mod record;
mod repeat;
mod resources;
mod run;
mod schedule;
mod stack;

use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ctx::{Ctx, RunArgs};
use bank_core::load_test_run::{Config, Machine, RunReport};

#[derive(Parser)]
#[command(
    name = "load-test",
    about = "Open-loop load test of a running Open Bank",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Transfers through `transferMoney` at fixed arrival rates (the default).
    Run(RunArgs),
    /// The heartbeat's rate per step; latency from Kafka record timestamps.
    Pipeline(RunArgs),
    /// The reference's method: background heartbeats raised step by step, one probe transfer a second.
    Anchor(RunArgs),
    /// One set of latency and throughput graphs over several runs.
    Compare(CompareArgs),
    /// The load and checks of `cargo xtask chaos` (drive, poison, verify).
    Chaos(chaos::ChaosArgs),
}

#[derive(Args)]
struct CompareArgs {
    /// Run folders (or their run.json files).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output folder; default `results/compare-<UTC timestamp>`.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn machine(root: &std::path::Path) -> Machine {
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        memory_mib: mem_kb / 1024,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        git_commit: git,
        build: if cfg!(debug_assertions) { "debug".into() } else { "release".into() },
    }
}

fn run_id(label: &str) -> String {
    let ts = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let label: String =
        label.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
    if label.is_empty() { ts } else { format!("{ts}-{label}") }
}

async fn measure(mode: &str, args: RunArgs) -> anyhow::Result<()> {
    if args.repeat <= 1 {
        return measure_once(mode, args).await.map(|_| ());
    }
    anyhow::ensure!(args.out.is_none(), "--repeat writes one folder per repetition: leave --out away");
    let mut runs = Vec::new();
    for i in 1..=args.repeat {
        eprintln!("repetition {i} of {}", args.repeat);
        let mut one = args.clone();
        one.label = if args.label.is_empty() { format!("r{i}") } else { format!("{}-r{i}", args.label) };
        runs.push(measure_once(mode, one).await?);
    }
    let lines = repeat::summary(&runs);
    let root = stack::root();
    let results = args.results_dir.clone().unwrap_or_else(|| root.join("results"));
    let label = if args.label.is_empty() { "repetitions".to_owned() } else { format!("{}-repetitions", args.label) };
    let dir = results.join(run_id(&label));
    std::fs::create_dir_all(&dir)?;
    let refs: Vec<&RunReport> = runs.iter().collect();
    graphs::latency(&refs, &dir.join("latency.svg"))?;
    graphs::throughput(&refs, &dir.join("throughput.svg"))?;
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    std::fs::write(dir.join("repetitions.txt"), format!("{}\nruns: {}\n", lines.join("\n"), ids.join(" ")))?;
    for l in &lines {
        println!("{l}");
    }
    println!("repetitions compared in {}", dir.display());
    Ok(())
}

async fn measure_once(mode: &str, mut args: RunArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(
        !args.rates.is_empty() && args.rates.iter().all(|r| r.is_finite() && *r > 0.0),
        "--rates must be positive numbers"
    );
    let root = stack::root();
    args.endpoint.get_or_insert_with(|| stack::setting(&root, "GRAPHQL_URL", stack::DEFAULT_GRAPHQL_URL));
    let id = run_id(&args.label);
    let results = args.results_dir.clone().unwrap_or_else(|| root.join("results"));
    let dir = args.out.clone().unwrap_or_else(|| results.join(&id));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("Ctrl-C: ending the current step and writing the results");
            c.cancel();
        }
    });
    let origin = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let stop_sampling = CancellationToken::new();
    let sampler = if args.resources == "docker" {
        let docker = docker::connect(docker::SOCKET).map_err(|e| anyhow::anyhow!("--resources docker: {e:#}"))?;
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let containers =
            docker::discover(&docker, host.trim()).await.map_err(|e| anyhow::anyhow!("--resources docker: {e:#}"))?;
        tokio::spawn(docker::sample(docker, containers, origin, stop_sampling.clone()))
    } else {
        tokio::spawn(resources::sample(resources::components(&root), origin, stop_sampling.clone()))
    };
    let setting = |arg: &Option<String>, key: &str, default: &str| {
        arg.clone().unwrap_or_else(|| stack::setting(&root, key, default))
    };
    let servers = setting(&args.kafka_brokers, "KAFKA_BROKERS", "localhost:9092");
    let brokers = match &args.kafka_sasl_username {
        Some(username) => bank_core::kafka::Brokers::new(
            &servers,
            Some(bank_core::kafka::Credentials {
                username: username.clone(),
                password: setting(&args.kafka_sasl_password, "KAFKA_SASL_PASSWORD", ""),
            }),
        ),
        None => stack::brokers(&root, &servers),
    };
    let registry = setting(&args.schema_registry_url, "SCHEMA_REGISTRY_URL", "http://localhost:8081");
    let database = setting(&args.database_url, "DATABASE_URL", "");
    let topic_prefix = setting(&args.topic_prefix, "TOPIC_PREFIX", "");
    let load_sampler = tokio::spawn(load::sample(database.clone(), origin, stop_sampling.clone()));
    let api = gql::Api::new(args.endpoint(), std::time::Duration::from_secs(args.timeout_secs))?;
    eprintln!("calibrating: Kafka, PostgreSQL and HTTP one at a time, then their throughput floors (about 15 s)…");
    let calibration = calibrate::calibrate(&brokers, &database, Some(&api)).await;
    let slo_kind = args.slo_kind.clone().unwrap_or_else(|| {
        match mode {
            "pipeline" => "result",
            "anchor" => "probe",
            _ => "event",
        }
        .to_owned()
    });
    let ctx = Ctx {
        args: args.clone(),
        root: root.clone(),
        brokers,
        registry,
        topic_prefix,
        cancel: cancel.clone(),
        stop_sockets: CancellationToken::new(),
        origin,
        calibration: calibration.clone(),
        warm_up: std::sync::Mutex::new(None),
    };
    let steps = match mode {
        "pipeline" => pipeline::run(&ctx).await,
        "anchor" => run::anchor(&ctx).await,
        _ => run::run(&ctx).await,
    };
    ctx.stop_sockets.cancel();
    stop_sampling.cancel();
    let resources = sampler.await.unwrap_or_default();
    let load = load_sampler.await.unwrap_or_default();
    let failure = steps.as_ref().err().map(|e| format!("{e:#}"));
    let mut steps = steps.unwrap_or_default();
    cost::fill(&mut steps, &resources, &load);
    cost::of_floor(&mut steps, &calibration);
    for st in &steps {
        eprintln!("{}", output::cost_line(st));
    }
    let mut report = RunReport {
        version: 1,
        id,
        mode: mode.to_owned(),
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339(),
        config: Config {
            rates: args.rates.clone(),
            step_secs: args.step_secs,
            warmup_secs: args.warmup_secs,
            users: args.users,
            slo_p99_ms: args.slo_p99_ms,
            endpoint: args.endpoint().to_owned(),
            label: args.label.clone(),
            slo_kind: slo_kind.clone(),
        },
        machine: machine(&root),
        calibration,
        max_sustainable_rate: if mode == "anchor" {
            model::max_probe_rate(&steps, &slo_kind, args.slo_p99_ms)
        } else {
            model::max_sustainable_rate(&steps, &slo_kind, args.slo_p99_ms)
        },
        steps,
        interrupted: cancel.is_cancelled(),
        resources,
        load,
        warm_up: ctx.warm_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(),
        summary: String::new(),
    };
    report.summary = output::summary(&report);
    output::write(&report, &dir)?;
    eprintln!("results in {}", dir.display());
    if let Some(e) = failure {
        anyhow::bail!("the run stopped early: {e} (what was measured is in {})", dir.display());
    }
    println!("{}", report.summary);
    Ok(report)
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for p in &args.runs {
        let file = if p.is_dir() { p.join("run.json") } else { p.clone() };
        let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        runs.push(RunReport::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?);
    }
    let dir = args.out.unwrap_or_else(|| stack::root().join("results").join(format!("compare-{}", run_id(""))));
    std::fs::create_dir_all(&dir)?;
    let refs: Vec<&RunReport> = runs.iter().collect();
    graphs::latency(&refs, &dir.join("latency.svg"))?;
    graphs::throughput(&refs, &dir.join("throughput.svg"))?;
    for r in &runs {
        println!("{}", r.summary);
    }
    for line in merged(&runs)? {
        println!("{line}");
    }
    println!("graphs in {}", dir.display());
    Ok(())
}

/// Per offered rate, the SLO kind's histograms of every run merged (p50/p99 over all their transfers).
fn merged(runs: &[RunReport]) -> anyhow::Result<Vec<String>> {
    let mut by_rate: BTreeMap<(String, u64), (hdrhistogram::Histogram<u64>, usize)> = BTreeMap::new();
    for r in runs {
        for s in &r.steps {
            let Some(l) = s.latency.get(&r.config.slo_kind).filter(|l| !l.histogram.is_empty()) else { continue };
            let h = hist::decode(&l.histogram)?;
            let e = by_rate
                .entry((r.config.slo_kind.clone(), s.offered_rate.to_bits()))
                .or_insert_with(|| (hist::new(), 0));
            hist::merge(&mut e.0, &h)?;
            e.1 += 1;
        }
    }
    Ok(by_rate
        .into_iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|((kind, rate), (h, n))| {
            let l = hist::summarize(&h, None);
            format!(
                "merged {kind} at {}/s over {n} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                f64::from_bits(rate),
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            )
        })
        .collect())
}

/// `--check-config`: the addresses a measuring run would use are well formed.
fn check(cli: &Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    let args = match &cli.cmd {
        None => &cli.run,
        Some(Cmd::Run(a) | Cmd::Pipeline(a) | Cmd::Anchor(a)) => a,
        Some(_) => return Ok(()),
    };
    if let Some(e) = &args.endpoint {
        bank_core::cli::check_http_url(e).context("--endpoint (LOAD_TEST_ENDPOINT)")?;
    }
    if let Some(h) = &args.heartbeat {
        bank_core::cli::check_http_url(h).context("--heartbeat (LOAD_TEST_HEARTBEAT)")?;
    }
    if let Some(b) = &args.kafka_brokers {
        bank_core::cli::check_brokers(b).context("KAFKA_BROKERS")?;
    }
    if let Some(r) = &args.schema_registry_url {
        bank_core::cli::check_http_url(r).context("SCHEMA_REGISTRY_URL")?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // --check-config, --probe and --print-config-vars exit here (bank_core::cli).
    let cli: Cli = bank_core::cli::parse(check);
    match cli.cmd {
        None => measure("run", cli.run).await,
        Some(Cmd::Run(a)) => measure("run", a).await,
        Some(Cmd::Pipeline(a)) => measure("pipeline", a).await,
        Some(Cmd::Anchor(a)) => measure("anchor", a).await,
        Some(Cmd::Compare(a)) => compare(a),
        Some(Cmd::Chaos(a)) => chaos::main(a).await,
    }
}
