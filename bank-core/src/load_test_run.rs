//! The `run.json` document of a load-test run (`results/<id>/run.json`): written by the load tester, read back by
//! its `compare` and by the gateway's `loadTestRuns`, so both read one type. Every field but `steps` may be
//! missing (an older or hand-made file still reads); a document without `steps` is not a run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run: `results/<id>/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Format version of this document.
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub id: String,
    /// `run`, `pipeline` or `anchor`.
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    /// The command line's settings.
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub machine: Machine,
    #[serde(default)]
    pub calibration: Calibration,
    pub steps: Vec<Step>,
    /// The highest offered rate whose step had p99 ≤ SLO and achieved ≥ 98 % of offered; `None` when no step did.
    #[serde(default)]
    pub max_sustainable_rate: Option<f64>,
    /// Whether Ctrl-C ended the run early (the interrupted step is kept and flagged).
    #[serde(default)]
    pub interrupted: bool,
    /// Per component: one sample a second.
    #[serde(default)]
    pub resources: BTreeMap<String, Vec<ResourceSample>>,
    /// The whole machine: one sample a second.
    #[serde(default)]
    pub load: Vec<LoadSample>,
    /// How the stack was brought to a steady state before the first step; `None` when it was not.
    #[serde(default)]
    pub warm_up: Option<WarmUp>,
    /// The one-line summary printed last.
    #[serde(default)]
    pub summary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub rates: Vec<f64>,
    pub step_secs: u64,
    pub warmup_secs: u64,
    pub users: usize,
    pub slo_p99_ms: f64,
    pub endpoint: String,
    pub label: String,
    /// The latency kind the SLO applies to (`answer`, `event`, `result`, `probe`).
    pub slo_kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub git_commit: String,
    pub build: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Calibration {
    /// Kafka produce → consume of one record at a time.
    pub kafka_round_trip_p50_ms: Option<f64>,
    pub kafka_round_trip_p99_ms: Option<f64>,
    /// One single-row commit at a time.
    pub postgres_commits_per_sec: Option<f64>,
    pub postgres_commit_p50_ms: Option<f64>,
    /// `GET /health` on the gateway, one at a time.
    pub http_round_trip_p50_ms: Option<f64>,
    pub http_round_trip_p99_ms: Option<f64>,
    /// Throughput floors: what this machine does at most, measured at the start of the run with the bank's own
    /// settings. Kafka: records produced (batched, the bank's producer) and consumed back, per second.
    pub kafka_records_per_sec: Option<f64>,
    /// PostgreSQL: double-entry transfers (two balance updates and a ledger insert each) per second, committed
    /// in transactions of the handler's batch size.
    pub postgres_transfers_per_sec: Option<f64>,
    /// HTTP: `GET /health` through the gateway per second, many at once.
    pub http_requests_per_sec: Option<f64>,
    /// Why a measurement is missing.
    pub notes: Vec<String>,
}

impl Calibration {
    /// The throughput floors by name (`kafka`, `postgres`, `http`), those measured.
    pub fn floors(&self) -> BTreeMap<String, f64> {
        [
            ("kafka", self.kafka_records_per_sec),
            ("postgres", self.postgres_transfers_per_sec),
            ("http", self.http_requests_per_sec),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.filter(|v| *v > 0.0)?)))
        .collect()
    }

    /// The floor a latency kind is compared with: HTTP for the API path, Kafka for the pipeline.
    pub fn floor_ms(&self, kind: &str) -> Option<f64> {
        match kind {
            "answer" | "event" | "probe" => self.http_round_trip_p50_ms,
            _ => self.kafka_round_trip_p50_ms,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    pub mode: String,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    /// Seconds of the measured window (after warm-up).
    pub window_secs: f64,
    /// Sent in the measured window.
    pub count: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub pending: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Answered transfers whose balance change never arrived (`run`), or confirmed commands without one.
    pub missing_events: u64,
    /// Set when Ctrl-C cut the step short.
    pub interrupted: bool,
    /// When the measured window began and ended, in seconds since the run started (for the resource graphs).
    pub start_s: f64,
    pub end_s: f64,
    /// Per latency kind (`answer` and `event` for `run`; `result` and `balance_changed` for `pipeline`).
    pub latency: BTreeMap<String, Latency>,
    /// The errors by their code (`OVERLOADED`, `UNAVAILABLE`, `transport`, `HTTP 503`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Operations the bank completed in the measured window (transfers or commands answered confirmed or
    /// failed): what the costs are divided by.
    pub completed: u64,
    /// Per component, over the measured window.
    pub cost: BTreeMap<String, Cost>,
    /// The machine over the measured window; `None` without samples.
    pub load: Option<Load>,
    /// PostgreSQL's WAL written in the measured window (`pg_stat_wal`), per completed operation.
    pub wal_bytes_per_op: Option<f64>,
    /// Bytes the machine wrote to its disks in the measured window, per completed operation.
    pub disk_write_bytes_per_op: Option<f64>,
    /// The achieved rate as a fraction of each throughput floor (`Calibration::floors`); the largest is the floor
    /// that bounds the step, and 1.0 would be this machine's limit.
    pub of_floor: BTreeMap<String, f64>,
}

/// The unmeasured load before the first step: short windows at the first rate until two in a row have a p99
/// within [`WarmUp::STEADY`] of each other (a fresh stack's JIT, caches and first elections cost more).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarmUp {
    pub rate: f64,
    pub secs: f64,
    /// The SLO kind's p99 of each window, in order.
    pub window_p99_ms: Vec<f64>,
    /// Whether it became steady before its time ran out.
    pub steady: bool,
}

impl WarmUp {
    /// Two windows whose p99s differ by at most this share of the larger are steady.
    pub const STEADY: f64 = 0.25;

    /// Whether the last two windows are steady.
    pub fn is_steady(p99s: &[f64]) -> bool {
        match p99s {
            [.., a, b] if a.is_finite() && b.is_finite() && a.max(*b) > 0.0 => {
                (a - b).abs() <= Self::STEADY * a.max(*b)
            }
            _ => false,
        }
    }
}

/// What one component spent in a step's measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cost {
    /// Mean CPU, 100 = one core.
    pub cpu_percent: f64,
    /// CPU time per completed operation, in microseconds; `None` when nothing completed.
    pub cpu_us_per_op: Option<f64>,
    /// Highest memory seen.
    pub rss_mib_max: f64,
    /// Bytes written to storage per completed operation (`/proc/<pid>/io` or the container's block I/O).
    pub write_bytes_per_op: Option<f64>,
}

/// The machine in a step's measured window: whether the bank was slow or the machine busy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Load {
    /// Mean of the runnable threads (`procs_running`), against `Machine::cores`.
    pub run_queue: f64,
    /// Shares of all cores' time, in percent.
    pub user_percent: f64,
    pub system_percent: f64,
    pub iowait_percent: f64,
    pub steal_percent: f64,
    pub idle_percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// p50 divided by the calibration floor of this kind.
    pub p50_floor_multiple: Option<f64>,
    pub p99_floor_multiple: Option<f64>,
    /// The HdrHistogram (microseconds), V2 serialized and base64 encoded, so runs can be merged.
    pub histogram: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceSample {
    /// Seconds since the run started.
    pub t: f64,
    /// 100 = one core.
    pub cpu_percent: f64,
    pub rss_mib: f64,
    /// Processes counted (a component with its children, e.g. PostgreSQL's backends).
    pub processes: u32,
    /// Bytes written to storage so far (a counter; `None` when it cannot be read).
    pub write_bytes: Option<u64>,
}

/// The whole machine at one instant: `/proc/stat`'s counters (in clock ticks of all cores), and PostgreSQL's WAL
/// counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadSample {
    /// Seconds since the run started.
    pub t: f64,
    /// Runnable threads now (`procs_running`).
    pub running: u32,
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub iowait_ticks: u64,
    pub steal_ticks: u64,
    pub idle_ticks: u64,
    /// `pg_stat_wal.wal_bytes` (a counter); `None` when the database cannot be asked.
    pub wal_bytes: Option<u64>,
    /// Bytes written to the machine's disks so far (`/proc/diskstats`, a counter); `None` without it.
    pub disk_write_bytes: Option<u64>,
}

impl Step {
    /// The component name of the load tester itself, whose cost is not the bank's.
    pub const LOAD_TESTER: &str = "load-test";

    /// The bank's CPU time per completed operation in this step, in microseconds: every component's but the
    /// load tester's; `None` without a figure.
    pub fn bank_cpu_us_per_op(&self) -> Option<f64> {
        let parts: Vec<f64> = self
            .cost
            .iter()
            .filter(|(n, _)| n.as_str() != Self::LOAD_TESTER)
            .filter_map(|(_, c)| c.cpu_us_per_op)
            .collect();
        (!parts.is_empty()).then(|| parts.iter().sum())
    }
}

impl RunReport {
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn from_json(s: &str) -> serde_json::Result<Self> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_round_trips() {
        let mut resources = BTreeMap::new();
        resources.insert(
            "kafka".to_owned(),
            vec![ResourceSample { t: 1.0, cpu_percent: 40.5, rss_mib: 812.25, processes: 1, write_bytes: Some(4096) }],
        );
        let r = RunReport {
            version: 1,
            id: "20261130T120000Z-x".into(),
            mode: "run".into(),
            started_at: "2026-11-30T12:00:00Z".into(),
            finished_at: "2026-11-30T12:01:00Z".into(),
            config: Config {
                rates: vec![20.0, 50.0],
                step_secs: 5,
                warmup_secs: 1,
                users: 20,
                slo_p99_ms: 100.0,
                endpoint: "http://localhost:8888".into(),
                label: "x".into(),
                slo_kind: "answer".into(),
            },
            machine: Machine {
                cores: 2,
                memory_mib: 7900,
                kernel: "6.1".into(),
                git_commit: "abc".into(),
                build: "debug".into(),
            },
            calibration: Calibration {
                kafka_round_trip_p50_ms: Some(1.5),
                postgres_commits_per_sec: Some(1700.0),
                notes: vec!["x".into()],
                ..Calibration::default()
            },
            steps: vec![Step {
                offered_rate: 20.0,
                latency: [("answer".to_owned(), Latency { p99_ms: 12.5, ..Latency::default() })].into(),
                errors_by_kind: [("OVERLOADED".to_owned(), 3)].into(),
                completed: 90,
                cost: [("kafka".to_owned(), Cost { cpu_percent: 40.5, cpu_us_per_op: Some(225.0), ..Cost::default() })]
                    .into(),
                load: Some(Load { run_queue: 1.5, steal_percent: 0.5, ..Load::default() }),
                wal_bytes_per_op: Some(1200.0),
                ..Step::default()
            }],
            max_sustainable_rate: Some(20.0),
            interrupted: false,
            resources,
            load: vec![LoadSample { t: 1.0, running: 2, user_ticks: 10, wal_bytes: None, ..LoadSample::default() }],
            warm_up: Some(WarmUp { rate: 20.0, secs: 6.1, window_p99_ms: vec![300.0, 40.0, 35.0], steady: true }),
            summary: "max sustainable 20/s".into(),
        };
        let text = r.to_json().unwrap();
        assert_eq!(RunReport::from_json(&text).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["steps"][0]["latency"]["answer"]["p99_ms"], 12.5);
        assert_eq!(v["max_sustainable_rate"], 20.0);
        assert_eq!(v["steps"][0]["cost"]["kafka"]["cpu_us_per_op"], 225.0);
        assert_eq!(v["steps"][0]["errors_by_kind"]["OVERLOADED"], 3);
    }

    #[test]
    fn the_bank_s_cost_leaves_the_load_tester_out() {
        let c = |us: f64| Cost { cpu_us_per_op: Some(us), ..Cost::default() };
        let st = Step {
            cost: BTreeMap::from([
                ("load-test".into(), c(900.0)),
                ("postgres".into(), c(300.0)),
                ("kafka".into(), c(200.0)),
            ]),
            ..Step::default()
        };
        assert_eq!(st.bank_cpu_us_per_op(), Some(500.0));
        assert_eq!(Step::default().bank_cpu_us_per_op(), None);
    }

    #[test]
    fn a_warm_up_is_steady_when_two_windows_agree() {
        assert!(!WarmUp::is_steady(&[]));
        assert!(!WarmUp::is_steady(&[10.0]));
        assert!(!WarmUp::is_steady(&[300.0, 40.0]));
        assert!(WarmUp::is_steady(&[300.0, 40.0, 35.0]));
        assert!(!WarmUp::is_steady(&[0.0, 0.0]));
        assert!(!WarmUp::is_steady(&[f64::NAN, 1.0]));
    }

    #[test]
    fn a_partial_document_reads_and_one_without_steps_is_not_a_run() {
        let r = RunReport::from_json(r#"{"mode":"run","steps":[{"offered_rate":20.0}]}"#).unwrap();
        assert_eq!((r.mode.as_str(), r.steps.len(), r.steps[0].offered_rate), ("run", 1, 20.0));
        assert!(RunReport::from_json(r#"{"mode":"run"}"#).is_err());
    }
}
