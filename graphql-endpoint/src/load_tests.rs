//! Load-test results from `RESULTS_DIR` (written by the `load-test` tool), read-only: the parsed summaries of
//! `loadTestRuns` (with each step's cost), one run's CPU and memory samples for `loadTestResources`, and
//! `GET /load-tests/{id}/{graph}.svg` for the graphs of a run. Nothing else in the folder is served: the run id
//! must be a plain folder name and the file one of the graph names.

use async_graphql::SimpleObject;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bank_core::load_test_run::{RunReport, Step};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The graphs a run folder holds, the only files served.
pub const GRAPHS: [&str; 5] = ["latency.svg", "throughput.svg", "cpu.svg", "memory.svg", "cost.svg"];
/// Samples per component `loadTestResources` returns at most (evenly thinned beyond it).
pub const MAX_SAMPLES: usize = 600;
/// Runs listed at most (newest first, by folder name, which starts with the UTC time).
pub const MAX_RUNS: usize = 100;
/// `run.json` files larger than this are skipped.
const MAX_RUN_JSON: u64 = 32 * 1024 * 1024;
/// Graphs larger than this are not served.
const MAX_GRAPH: u64 = 16 * 1024 * 1024;

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

/// A run id that names a folder directly inside the results folder: no separators, no leading dot.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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

/// The samples of run `id` in `dir`; none for an id that names no run.
pub async fn resources(dir: PathBuf, id: String) -> Vec<ResourceSeries> {
    if !valid_id(&id) {
        return Vec::new();
    }
    tokio::task::spawn_blocking(move || {
        let file = dir.join(&id).join("run.json");
        if std::fs::metadata(&file).ok()?.len() > MAX_RUN_JSON {
            return None;
        }
        Some(parse_resources(&std::fs::read_to_string(&file).ok()?))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

fn read_runs(dir: &Path) -> Vec<LoadTestRun> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| valid_id(id))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.into_iter()
        .filter_map(|id| {
            let file = dir.join(&id).join("run.json");
            if std::fs::metadata(&file).ok()?.len() > MAX_RUN_JSON {
                return None;
            }
            parse_run(&id, &std::fs::read_to_string(&file).ok()?)
        })
        .take(MAX_RUNS)
        .collect()
}

/// The runs in `dir`, newest first; an absent or unreadable folder has none.
pub async fn runs(dir: PathBuf) -> Vec<LoadTestRun> {
    tokio::task::spawn_blocking(move || read_runs(&dir)).await.unwrap_or_default()
}

/// `GET /load-tests/{id}/{graph}`: one of a run's SVG graphs, nothing else.
pub fn routes(dir: &Path) -> Router {
    Router::new().route("/load-tests/{id}/{file}", get(graph)).with_state(Arc::new(dir.to_path_buf()))
}

async fn graph(State(dir): State<Arc<PathBuf>>, UrlPath((id, file)): UrlPath<(String, String)>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    if !valid_id(&id) || !GRAPHS.contains(&file.as_str()) {
        return not_found();
    }
    let path = dir.join(&id).join(&file);
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() && m.len() <= MAX_GRAPH => {}
        _ => return not_found(),
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // An SVG opened on its own runs no script and loads nothing.
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"version":1,"id":"20261130T120000Z-x","mode":"run","started_at":"2026-11-30T12:00:00Z",
        "config":{"slo_p99_ms":100.0,"slo_kind":"event","rates":[20.0]},"machine":{"build":"release"},
        "steps":[{"offered_rate":20.0,"achieved_rate":19.8,"count":100,"confirmed":99,"failed":1,"pending":0,
        "errors":3,"timeouts":0,"latency":{"event":{"p50_ms":12.5,"p99_ms":40.0},"answer":{"p50_ms":9.0,"p99_ms":30.0}},
        "errors_by_kind":{"transport":1,"OVERLOADED":2},"completed":100,
        "cost":{"postgres":{"cpu_percent":14.0,"cpu_us_per_op":700.0,"rss_mib_max":80.0,"write_bytes_per_op":9000.0},
                "load-test":{"cpu_percent":5.0,"cpu_us_per_op":250.0,"rss_mib_max":30.0}},
        "wal_bytes_per_op":1800.0,"load":{"run_queue":1.5,"user_percent":30.0,"system_percent":10.0,"idle_percent":60.0},
        "of_floor":{"http":0.004,"kafka":0.002}}],
        "calibration":{"kafka_records_per_sec":40000.0,"http_requests_per_sec":5000.0},
        "resources":{"postgres":[{"t":1.0,"cpu_percent":14.0,"rss_mib":80.0,"processes":9},{"t":2.0,"cpu_percent":15.0,"rss_mib":81.0,"processes":9}]},
        "max_sustainable_rate":20.0,"summary":"run x: max sustainable 20/s"}"#;

    fn folder() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-load-tests-{}", uuid::Uuid::new_v4()));
        for id in ["20261130T120000Z-x", "20261130T130000Z-y"] {
            std::fs::create_dir_all(dir.join(id)).unwrap();
            std::fs::write(dir.join(id).join("run.json"), RUN).unwrap();
            std::fs::write(dir.join(id).join("latency.svg"), "<svg></svg>").unwrap();
        }
        std::fs::create_dir_all(dir.join("broken")).unwrap();
        std::fs::write(dir.join("broken").join("run.json"), "{not json").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::fs::write(dir.join("20261130T120000Z-x").join("run.json.bak"), "secret").unwrap();
        dir
    }

    #[test]
    fn ids_are_plain_folder_names() {
        assert!(valid_id("20261130T120000Z-label_1.2"));
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "../x", "a%2Fb", "é", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn runs_are_parsed_newest_first_and_broken_ones_skipped() {
        let dir = folder();
        let found = runs(dir.clone()).await;
        assert_eq!(
            found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["20261130T130000Z-y", "20261130T120000Z-x"]
        );
        let r = &found[1];
        assert_eq!((r.mode.as_str(), r.slo_kind.as_str(), r.build.as_str()), ("run", "event", "release"));
        assert_eq!((r.max_sustainable_rate, r.slo_p99_ms), (Some(20.0), Some(100.0)));
        assert_eq!(r.summary, "run x: max sustainable 20/s");
        assert_eq!(
            r.steps,
            [LoadTestStep {
                offered_rate: 20.0,
                achieved_rate: 19.8,
                count: 100,
                confirmed: 99,
                failed: 1,
                pending: 0,
                errors: 3,
                timeouts: 0,
                p50_ms: Some(12.5),
                p99_ms: Some(40.0),
                completed: 100,
                errors_by_kind: vec![
                    ErrorCount { kind: "OVERLOADED".into(), count: 2 },
                    ErrorCount { kind: "transport".into(), count: 1 }
                ],
                bank_cpu_us_per_op: Some(700.0),
                cost: vec![
                    ComponentCost {
                        component: "load-test".into(),
                        cpu_percent: 5.0,
                        cpu_us_per_op: Some(250.0),
                        rss_mib_max: 30.0,
                        write_bytes_per_op: None
                    },
                    ComponentCost {
                        component: "postgres".into(),
                        cpu_percent: 14.0,
                        cpu_us_per_op: Some(700.0),
                        rss_mib_max: 80.0,
                        write_bytes_per_op: Some(9000.0)
                    },
                ],
                wal_bytes_per_op: Some(1800.0),
                disk_write_bytes_per_op: None,
                load: Some(MachineLoad {
                    run_queue: 1.5,
                    user_percent: 30.0,
                    system_percent: 10.0,
                    iowait_percent: 0.0,
                    steal_percent: 0.0,
                    idle_percent: 60.0
                }),
                of_floor: vec![
                    Floor { name: "http".into(), value: 0.004 },
                    Floor { name: "kafka".into(), value: 0.002 }
                ],
            }]
        );
        assert_eq!(
            r.floors,
            [Floor { name: "kafka".into(), value: 40000.0 }, Floor { name: "http".into(), value: 5000.0 }]
        );
        assert_eq!(r.graphs[0], "/load-tests/20261130T120000Z-x/latency.svg");
        assert!(runs(dir.join("absent")).await.is_empty());
        let series = resources(dir.clone(), "20261130T120000Z-x".into()).await;
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].component, "postgres");
        assert_eq!(series[0].samples[1], ResourceSample { t: 2.0, cpu_percent: 15.0, rss_mib: 81.0 });
        for id in ["broken", "../20261130T120000Z-x", "absent"] {
            assert!(resources(dir.clone(), id.into()).await.is_empty(), "{id}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn long_series_are_thinned_evenly() {
        let samples: Vec<String> =
            (0..1500).map(|t| format!(r#"{{"t":{t}.0,"cpu_percent":1.0,"rss_mib":2.0}}"#)).collect();
        let json = format!(r#"{{"steps":[],"resources":{{"kafka":[{}]}}}}"#, samples.join(","));
        let series = parse_resources(&json);
        assert_eq!(series[0].samples.len(), 500);
        assert_eq!((series[0].samples[0].t, series[0].samples[1].t, series[0].samples[499].t), (0.0, 3.0, 1497.0));
        assert!(parse_resources("{").is_empty());
    }

    #[tokio::test]
    async fn only_the_graphs_are_served_and_paths_cannot_leave_the_folder() {
        let dir = folder();
        let inner = dir.join("20261130T120000Z-x");
        // The served folder is a run's folder's parent; files beside it must stay out of reach too.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes(&dir);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &str| {
            let url = format!("http://{addr}{path}");
            async move {
                let r = reqwest::Client::new().get(url).send().await.unwrap();
                let status = r.status().as_u16();
                let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
                (status, ct, r.text().await.unwrap())
            }
        };
        let (status, ct, body) = get("/load-tests/20261130T120000Z-x/latency.svg").await;
        assert_eq!((status, ct.as_deref(), body.as_str()), (200, Some("image/svg+xml"), "<svg></svg>"));
        for path in [
            "/load-tests/20261130T120000Z-x/run.json.bak",
            "/load-tests/20261130T120000Z-x/throughput.svg",
            "/load-tests/../secret.txt",
            "/load-tests/..%2Fsecret.txt/latency.svg",
            "/load-tests/%2E%2E/latency.svg",
            "/load-tests/..%2F20261130T120000Z-x/latency.svg",
            "/load-tests/20261130T120000Z-x/..%2F..%2Fsecret.txt",
            "/load-tests/20261130T120000Z-x/%2E%2E%2Fsecret.txt",
            "/load-tests/%2Fetc/latency.svg",
            "/load-tests/.hidden/latency.svg",
        ] {
            let (status, _, body) = get(path).await;
            assert_eq!(status, 404, "{path}");
            assert!(!body.contains("secret"), "{path}");
        }
        assert!(inner.join("latency.svg").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
