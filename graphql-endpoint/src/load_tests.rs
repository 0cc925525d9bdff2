//! Load-test results from `RESULTS_DIR` (written by the `load-test` tool), read-only: the parsed summaries of
//! `loadTestRuns` and `GET /load-tests/{id}/{graph}.svg` for the four graphs of a run. Nothing else in the
//! folder is served: the run id must be a plain folder name and the file one of the four graph names.

use async_graphql::SimpleObject;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bank_core::load_test_run::RunReport;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The graphs a run folder holds, the only files served.
pub const GRAPHS: [&str; 4] = ["latency.svg", "throughput.svg", "cpu.svg", "memory.svg"];
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
        steps,
        graphs: GRAPHS.iter().map(|g| format!("/load-tests/{id}/{g}")).collect(),
    })
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

/// `GET /load-tests/{id}/{graph}`: one of a run's four SVG graphs, nothing else.
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
        "errors":0,"timeouts":0,"latency":{"event":{"p50_ms":12.5,"p99_ms":40.0},"answer":{"p50_ms":9.0,"p99_ms":30.0}}}],
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
                errors: 0,
                timeouts: 0,
                p50_ms: Some(12.5),
                p99_ms: Some(40.0),
            }]
        );
        assert_eq!(r.graphs[0], "/load-tests/20261130T120000Z-x/latency.svg");
        assert!(runs(dir.join("absent")).await.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
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
