//! Load-test results from `RESULTS_DIR` (written by the `load-test` tool), read-only: the parsed summaries of
//! `loadTestRuns` (with each step's cost), one run's CPU and memory samples for `loadTestResources`, and
//! `GET /load-tests/{id}/{graph}.svg` for the graphs of a run. Nothing else in the folder is served: the run id
//! must be a plain folder name and the file one of the graph names.

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::path::{Path, PathBuf};

mod run;

pub use run::{
    ComponentCost, ErrorCount, Floor, GRAPHS, LoadTestRun, LoadTestStep, MAX_SAMPLES, MachineLoad, ResourceSample,
    ResourceSeries, parse_resources, parse_run,
};
use std::sync::Arc;

/// Runs listed at most (newest first, by folder name, which starts with the UTC time).
pub const MAX_RUNS: usize = 100;
/// `run.json` files larger than this are skipped.
const MAX_RUN_JSON: u64 = 32 * 1024 * 1024;
/// Graphs larger than this are not served.
const MAX_GRAPH: u64 = 16 * 1024 * 1024;

/// A run id that names a folder directly inside the results folder: no separators, no leading dot.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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
