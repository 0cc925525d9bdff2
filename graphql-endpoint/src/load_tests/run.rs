//! One run as GraphQL shows it: the `loadTestRuns` objects parsed from a `run.json` (the load tester's
//! [`RunReport`]), with each step's cost, errors by kind and share of the machine's floors, and the thinned CPU
//! and memory samples of `loadTestResources`.

use async_graphql::SimpleObject;
use bank_core::load_test_run::{RunReport, Step};

/// The graphs a run folder holds, the only files served.
pub const GRAPHS: [&str; 5] = ["latency.svg", "throughput.svg", "cpu.svg", "memory.svg", "cost.svg"];
/// Samples per component `loadTestResources` returns at most (evenly thinned beyond it).
pub const MAX_SAMPLES: usize = 600;

/// One load-test run.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct LoadTestRun {
    /// The run's folder name
    pub id: String,
    /// `run` (through the API), `pipeline` (heartbeat-driven) or `anchor`
    pub mode: String,
    pub started_at: String,
    /// The tool's one-line summary
    pub summary: String,
    /// Highest offered rate with p99 within the SLO and achieved ≥ 98 % of offered
    pub max_sustainable_rate: Option<f64>,
    pub slo_p99_ms: Option<f64>,
    /// The latency kind the SLO applies to
    pub slo_kind: String,
    /// `debug` or `release` build of the load tester
    pub build: String,
    pub steps: Vec<LoadTestStep>,
    /// This machine's throughput floors measured at the start of the run (Kafka records, PostgreSQL
    /// double-entry transfers and gateway HTTP no-ops, per second)
    pub floors: Vec<Floor>,
    /// Paths of the run's graphs on this server
    pub graphs: Vec<String>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct LoadTestStep {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub count: i32,
    pub confirmed: i32,
    pub failed: i32,
    pub pending: i32,
    pub errors: i32,
    pub timeouts: i32,
    /// p50 of the SLO's latency kind, in milliseconds
    pub p50_ms: Option<f64>,
    /// p99 of the SLO's latency kind, in milliseconds
    pub p99_ms: Option<f64>,
    /// Operations completed (confirmed or failed) in the measured window: what the costs are divided by
    pub completed: i32,
    /// The errors by their code, most frequent first
    pub errors_by_kind: Vec<ErrorCount>,
    /// The bank's CPU time per completed operation (every component but the load tester), in microseconds
    pub bank_cpu_us_per_op: Option<f64>,
    /// Per component, by name
    pub cost: Vec<ComponentCost>,
    /// PostgreSQL's WAL bytes per completed operation
    pub wal_bytes_per_op: Option<f64>,
    /// Bytes the machine wrote to its disks per completed operation
    pub disk_write_bytes_per_op: Option<f64>,
    /// The machine's load in the measured window
    pub load: Option<MachineLoad>,
    /// The achieved rate as a fraction of each floor (Kafka counted in records), the largest first
    pub of_floor: Vec<Floor>,
}

/// A throughput floor (per second), or a step's fraction of one.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct Floor {
    /// `kafka`, `postgres` or `http`
    pub name: String,
    pub value: f64,
}

fn floors(map: &std::collections::BTreeMap<String, f64>) -> Vec<Floor> {
    let mut out: Vec<Floor> = map.iter().map(|(name, value)| Floor { name: name.clone(), value: *value }).collect();
    out.sort_by(|a, b| b.value.total_cmp(&a.value));
    out
}

/// How often one error code came in a step.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct ErrorCount {
    pub kind: String,
    pub count: i32,
}

/// What one component spent in a step's measured window.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct ComponentCost {
    pub component: String,
    /// Mean CPU, 100 = one core
    pub cpu_percent: f64,
    /// CPU time per completed operation, in microseconds
    pub cpu_us_per_op: Option<f64>,
    pub rss_mib_max: f64,
    /// Bytes written to storage per completed operation
    pub write_bytes_per_op: Option<f64>,
}

/// The machine in a step's measured window, in percent of all cores' time.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct MachineLoad {
    /// Mean runnable threads
    pub run_queue: f64,
    pub user_percent: f64,
    pub system_percent: f64,
    pub iowait_percent: f64,
    pub steal_percent: f64,
    pub idle_percent: f64,
}

/// One component's CPU and memory over a run.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct ResourceSeries {
    pub component: String,
    pub samples: Vec<ResourceSample>,
}

/// One sample of a component.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct ResourceSample {
    /// Seconds since the run started
    pub t: f64,
    /// 100 = one core
    pub cpu_percent: f64,
    pub rss_mib: f64,
}

/// A run from its `run.json` (the load tester's [`RunReport`]); `None` when it is not one.
pub fn parse_run(id: &str, json: &str) -> Option<LoadTestRun> {
    let run = RunReport::from_json(json).ok()?;
    let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let slo_kind = run.config.slo_kind;
    let steps = run
        .steps
        .iter()
        .map(|s| {
            let l = s.latency.get(&slo_kind);
            LoadTestStep {
                offered_rate: s.offered_rate,
                achieved_rate: s.achieved_rate,
                count: count(s.count),
                confirmed: count(s.confirmed),
                failed: count(s.failed),
                pending: count(s.pending),
                errors: count(s.errors),
                timeouts: count(s.timeouts),
                p50_ms: l.map(|l| l.p50_ms),
                p99_ms: l.map(|l| l.p99_ms),
                completed: count(s.completed),
                errors_by_kind: errors_by_kind(s),
                bank_cpu_us_per_op: s.bank_cpu_us_per_op(),
                cost: s
                    .cost
                    .iter()
                    .map(|(component, c)| ComponentCost {
                        component: component.clone(),
                        cpu_percent: c.cpu_percent,
                        cpu_us_per_op: c.cpu_us_per_op,
                        rss_mib_max: c.rss_mib_max,
                        write_bytes_per_op: c.write_bytes_per_op,
                    })
                    .collect(),
                wal_bytes_per_op: s.wal_bytes_per_op,
                disk_write_bytes_per_op: s.disk_write_bytes_per_op,
                load: s.load.as_ref().map(|l| MachineLoad {
                    run_queue: l.run_queue,
                    user_percent: l.user_percent,
                    system_percent: l.system_percent,
                    iowait_percent: l.iowait_percent,
                    steal_percent: l.steal_percent,
                    idle_percent: l.idle_percent,
                }),
                of_floor: floors(&s.of_floor),
            }
        })
        .collect();
    Some(LoadTestRun {
        id: id.to_owned(),
        mode: run.mode,
        started_at: run.started_at,
        summary: run.summary,
        max_sustainable_rate: run.max_sustainable_rate,
        slo_p99_ms: (run.config.slo_p99_ms > 0.0).then_some(run.config.slo_p99_ms),
        slo_kind,
        build: run.machine.build,
        floors: floors(&run.calibration.floors()),
        steps,
        graphs: GRAPHS.iter().map(|g| format!("/load-tests/{id}/{g}")).collect(),
    })
}

fn errors_by_kind(s: &Step) -> Vec<ErrorCount> {
    let mut out: Vec<ErrorCount> = s
        .errors_by_kind
        .iter()
        .map(|(kind, n)| ErrorCount { kind: kind.clone(), count: i32::try_from(*n).unwrap_or(i32::MAX) })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    out
}

/// Every component's samples of a run's `run.json`, each thinned evenly to at most [`MAX_SAMPLES`].
pub fn parse_resources(json: &str) -> Vec<ResourceSeries> {
    let Ok(run) = RunReport::from_json(json) else { return Vec::new() };
    run.resources
        .into_iter()
        .map(|(component, samples)| {
            let every = samples.len().div_ceil(MAX_SAMPLES).max(1);
            let samples = samples
                .iter()
                .step_by(every)
                .map(|s| ResourceSample { t: s.t, cpu_percent: s.cpu_percent, rss_mib: s.rss_mib })
                .collect();
            ResourceSeries { component, samples }
        })
        .collect()
}
