//! `cargo xtask load-test …`: starts the stack with release builds and runs the load tester (release) with the
//! given arguments. Also the short real run that `cargo xtask test` makes of it.

use std::path::Path;
use std::process::Command;

use crate::cmd::up::{UpOptions, up};
use crate::paths::Paths;

fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root);
    c
}

/// `cargo xtask load-test [run|pipeline|anchor|compare] [flags]`: everything after `load-test` goes to the tool.
pub fn load_test(args: &[String]) -> anyhow::Result<i32> {
    up(&UpOptions { release: true, quiet_build: false, ..Default::default() })?;
    let paths = Paths::new(true)?;
    let status = cargo(&paths.root).args(["run", "--release", "-q", "-p", "load-test", "--"]).args(args).status()?;
    Ok(status.code().unwrap_or(1))
}

/// Checks a finished run's folder: every step sent something, every sent transfer has a latency or an error
/// recorded, and `run.json` and the four graphs exist and parse. The problems found, none when it is good.
pub fn check_output(dir: &Path, latency_kind: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let run: serde_json::Value = match std::fs::read_to_string(dir.join("run.json"))
        .map_err(anyhow::Error::from)
        .and_then(|t| Ok(serde_json::from_str(&t)?))
    {
        Ok(v) => v,
        Err(e) => return vec![format!("{}: run.json: {e}", dir.display())],
    };
    let steps = run.get("steps").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    if steps.is_empty() {
        problems.push("run.json has no steps".into());
    }
    let n = |s: &serde_json::Value, k: &str| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    for s in &steps {
        let rate = s.get("offered_rate").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let count = n(s, "count");
        let answered = n(s, "confirmed") + n(s, "failed") + n(s, "pending");
        let accounted = answered + n(s, "errors") + n(s, "timeouts");
        let timed =
            s.pointer(&format!("/latency/{latency_kind}/count")).and_then(serde_json::Value::as_u64).unwrap_or(0);
        if count == 0 {
            problems.push(format!("{rate}/s: nothing sent"));
        }
        if accounted != count {
            problems.push(format!("{rate}/s: {count} sent but {accounted} answered, failed or timed out"));
        }
        if timed != answered {
            problems.push(format!("{rate}/s: {answered} answered but {timed} {latency_kind} latencies"));
        }
    }
    for g in ["latency.svg", "throughput.svg", "cpu.svg", "memory.svg"] {
        let text = std::fs::read_to_string(dir.join(g)).unwrap_or_default();
        if !(text.starts_with("<svg") && text.trim_end().ends_with("</svg>")) {
            problems.push(format!("{g} is missing or not an SVG document"));
        }
    }
    problems
}

/// A short real run of both modes against the running stack (debug build), checked with [`check_output`].
pub fn check(paths: &Paths) -> anyhow::Result<bool> {
    let runs: [(&str, &[&str], &str); 2] = [
        ("run", &["--rates", "20,50", "--step-secs", "5", "--warmup-secs", "1", "--users", "20"], "answer"),
        ("pipeline", &["--rates", "200,500", "--step-secs", "5", "--warmup-secs", "1"], "result"),
    ];
    let mut ok = true;
    for (mode, flags, kind) in runs {
        let out = paths.root.join("results").join(format!("xtask-test-{mode}"));
        let _ = std::fs::remove_dir_all(&out);
        let status = cargo(&paths.root)
            .args(["run", "-q", "-p", "load-test", "--", mode])
            .args(flags)
            .arg("--out")
            .arg(&out)
            .status()?;
        let problems = if status.success() { check_output(&out, kind) } else { vec![format!("exit {status}")] };
        for p in &problems {
            eprintln!("FAIL load-test {mode}: {p}");
        }
        ok &= problems.is_empty();
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_checks_find_unaccounted_transfers_and_missing_graphs() {
        let dir = std::env::temp_dir().join(format!("xtask-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = r#"{"steps":[{"offered_rate":20.0,"count":10,"confirmed":8,"failed":1,"pending":0,"errors":1,"timeouts":0,"latency":{"answer":{"count":9}}}]}"#;
        std::fs::write(dir.join("run.json"), good).unwrap();
        for g in ["latency.svg", "throughput.svg", "cpu.svg", "memory.svg"] {
            std::fs::write(dir.join(g), "<svg xmlns=\"http://www.w3.org/2000/svg\">\n</svg>\n").unwrap();
        }
        assert_eq!(check_output(&dir, "answer"), Vec::<String>::new());
        let lost = good.replace(r#""errors":1"#, r#""errors":0"#).replace(r#""count":9"#, r#""count":8"#);
        std::fs::write(dir.join("run.json"), lost).unwrap();
        std::fs::remove_file(dir.join("cpu.svg")).unwrap();
        let problems = check_output(&dir, "answer");
        assert_eq!(problems.len(), 3, "{problems:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
