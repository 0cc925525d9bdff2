//! The `run.json` document: what a run measured, in a form that reads back for `compare` and the gateway.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run: `results/<id>/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Format version of this document.
    pub version: u32,
    pub id: String,
    /// `run`, `pipeline` or `anchor`.
    pub mode: String,
    pub started_at: String,
    pub finished_at: String,
    /// The command line's settings.
    pub config: Config,
    pub machine: Machine,
    pub calibration: Calibration,
    pub steps: Vec<Step>,
    /// The highest offered rate whose step had p99 ≤ SLO and achieved ≥ 98 % of offered; `None` when no step did.
    pub max_sustainable_rate: Option<f64>,
    /// Whether Ctrl-C ended the run early (the interrupted step is kept and flagged).
    pub interrupted: bool,
    /// Per component: one sample a second.
    pub resources: BTreeMap<String, Vec<ResourceSample>>,
    /// The one-line summary printed last.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub git_commit: String,
    pub build: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Why a measurement is missing.
    pub notes: Vec<String>,
}

impl Calibration {
    /// The floor a latency kind is compared with: HTTP for the API path, Kafka for the pipeline.
    pub fn floor_ms(&self, kind: &str) -> Option<f64> {
        match kind {
            "answer" | "event" | "probe" => self.http_round_trip_p50_ms,
            _ => self.kafka_round_trip_p50_ms,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub missing_events: u64,
    /// Set when Ctrl-C cut the step short.
    pub interrupted: bool,
    /// When the measured window began and ended, in seconds since the run started (for the resource graphs).
    #[serde(default)]
    pub start_s: f64,
    #[serde(default)]
    pub end_s: f64,
    /// Per latency kind (`answer` and `event` for `run`; `result` and `balance_changed` for `pipeline`).
    pub latency: BTreeMap<String, Latency>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
pub struct ResourceSample {
    /// Seconds since the run started.
    pub t: f64,
    /// 100 = one core.
    pub cpu_percent: f64,
    pub rss_mib: f64,
    /// Processes counted (a component with its children, e.g. PostgreSQL's backends).
    pub processes: u32,
}

/// The spec's rule: the highest offered rate with p99 of `kind` ≤ `slo_ms` and achieved ≥ 98 % of offered.
/// A step that lost transfers (errors or timeouts) is not sustained either.
pub fn max_sustainable_rate(steps: &[Step], kind: &str, slo_ms: f64) -> Option<f64> {
    best(steps.iter().filter(|s| s.achieved_rate >= 0.98 * s.offered_rate), kind, slo_ms)
}

/// `anchor`: the offered rate is the background load and the achieved rate the probes' (one a second), so only
/// the probes' p99 and their losses decide.
pub fn max_probe_rate(steps: &[Step], kind: &str, slo_ms: f64) -> Option<f64> {
    best(steps.iter(), kind, slo_ms)
}

fn best<'a>(steps: impl Iterator<Item = &'a Step>, kind: &str, slo_ms: f64) -> Option<f64> {
    steps
        .filter(|s| !s.interrupted && s.count > 0)
        .filter(|s| s.errors == 0 && s.timeouts == 0 && s.missing_events == 0)
        .filter(|s| s.latency.get(kind).is_some_and(|l| l.count > 0 && l.p99_ms <= slo_ms))
        .map(|s| s.offered_rate)
        .fold(None, |best: Option<f64>, r| Some(best.map_or(r, |b| b.max(r))))
}

impl RunReport {
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(s: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(s)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, p99: f64) -> Step {
        let mut latency = BTreeMap::new();
        latency.insert("answer".to_owned(), Latency { count: 10, p99_ms: p99, ..Latency::default() });
        Step {
            mode: "run".into(),
            offered_rate: offered,
            achieved_rate: achieved,
            count: 10,
            latency,
            ..Step::default()
        }
    }

    #[test]
    fn max_sustainable_is_the_highest_step_within_slo_and_rate() {
        let steps = vec![
            step(100.0, 100.0, 20.0),
            step(250.0, 249.0, 40.0),
            step(500.0, 480.0, 60.0), // achieved 96 %: not sustained
            step(1000.0, 1000.0, 99.0),
            step(2000.0, 2000.0, 150.0), // p99 over the SLO
        ];
        assert_eq!(max_sustainable_rate(&steps, "answer", 100.0), Some(1000.0));
        assert_eq!(max_sustainable_rate(&steps, "answer", 30.0), Some(100.0));
        assert_eq!(max_sustainable_rate(&steps, "answer", 10.0), None);
        assert_eq!(max_sustainable_rate(&steps, "event", 100.0), None, "a kind nobody measured sustains nothing");
    }

    #[test]
    fn exactly_98_percent_and_exactly_the_slo_count_as_sustained() {
        assert_eq!(max_sustainable_rate(&[step(100.0, 98.0, 100.0)], "answer", 100.0), Some(100.0));
        assert_eq!(max_sustainable_rate(&[step(100.0, 97.9, 100.0)], "answer", 100.0), None);
        assert_eq!(max_sustainable_rate(&[step(100.0, 98.0, 100.1)], "answer", 100.0), None);
    }

    #[test]
    fn errors_timeouts_and_interrupted_steps_are_not_sustained() {
        let mut e = step(100.0, 100.0, 10.0);
        e.errors = 1;
        let mut t = step(200.0, 200.0, 10.0);
        t.timeouts = 1;
        let mut i = step(300.0, 300.0, 10.0);
        i.interrupted = true;
        assert_eq!(max_sustainable_rate(&[e, t, i], "answer", 100.0), None);
    }

    #[test]
    fn anchor_steps_are_judged_by_their_probes_alone() {
        // One probe a second against a background of 100 and 200/s: achieved is the probes' rate.
        let steps = [step(100.0, 1.0, 50.0), step(200.0, 1.0, 150.0)];
        assert_eq!(max_sustainable_rate(&steps, "answer", 100.0), None);
        assert_eq!(max_probe_rate(&steps, "answer", 100.0), Some(100.0));
    }

    #[test]
    fn run_json_round_trips() {
        let mut resources = BTreeMap::new();
        resources.insert(
            "kafka".to_owned(),
            vec![ResourceSample { t: 1.0, cpu_percent: 40.5, rss_mib: 812.25, processes: 1 }],
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
            steps: vec![step(20.0, 20.0, 12.5)],
            max_sustainable_rate: Some(20.0),
            interrupted: false,
            resources,
            summary: "max sustainable 20/s".into(),
        };
        let text = r.to_json().unwrap();
        assert_eq!(RunReport::from_json(&text).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["steps"][0]["latency"]["answer"]["p99_ms"], 12.5);
        assert_eq!(v["max_sustainable_rate"], 20.0);
    }
}
