//! The files of a run: `run.json`, `steps.csv`, `resources.csv`, the graphs, and the one-line summary.

use std::fmt::Write as _;
use std::path::Path;

use crate::graphs;
use bank_core::load_test_run::{RunReport, Step};

pub fn write(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("run.json"), report.to_json()?)?;
    std::fs::write(dir.join("steps.csv"), steps_csv(&report.steps))?;
    std::fs::write(dir.join("resources.csv"), resources_csv(report))?;
    graphs::latency(&[report], &dir.join("latency.svg"))?;
    graphs::throughput(&[report], &dir.join("throughput.svg"))?;
    graphs::resources(report, &dir.join("cpu.svg"), graphs::Resource::Cpu)?;
    graphs::resources(report, &dir.join("memory.svg"), graphs::Resource::Memory)?;
    Ok(())
}

pub fn steps_csv(steps: &[Step]) -> String {
    let mut s = String::from(
        "mode,offered_rate,achieved_rate,count,confirmed,failed,pending,errors,timeouts,missing_events,kind,p50_ms,p90_ms,p99_ms,p999_ms,max_ms\n",
    );
    for st in steps {
        for (kind, l) in &st.latency {
            let _ = writeln!(
                s,
                "{},{},{:.1},{},{},{},{},{},{},{},{kind},{},{},{},{},{}",
                st.mode,
                st.offered_rate,
                st.achieved_rate,
                st.count,
                st.confirmed,
                st.failed,
                st.pending,
                st.errors,
                st.timeouts,
                st.missing_events,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms
            );
        }
    }
    s
}

pub fn resources_csv(r: &RunReport) -> String {
    let mut s = String::from("component,t_s,cpu_percent,rss_mib,processes\n");
    for (name, samples) in &r.resources {
        for x in samples {
            let _ = writeln!(s, "{name},{:.1},{:.1},{:.1},{}", x.t, x.cpu_percent, x.rss_mib, x.processes);
        }
    }
    s
}

fn lat(st: &Step) -> String {
    st.latency
        .iter()
        .filter(|(k, _)| k.as_str() != "probe")
        .map(|(k, l)| format!("{k} p50 {:.1}/p99 {:.1} ms", l.p50_ms, l.p99_ms))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One step on one line (printed as each step ends).
pub fn step_line(st: &Step) -> String {
    format!(
        "{} {}/s: achieved {:.1}/s, {} sent, {} confirmed, {} failed, {} pending, {} errors, {} timeouts, {} missing events; {}{}",
        st.mode,
        st.offered_rate,
        st.achieved_rate,
        st.count,
        st.confirmed,
        st.failed,
        st.pending,
        st.errors,
        st.timeouts,
        st.missing_events,
        lat(st),
        if st.interrupted { " (interrupted)" } else { "" }
    )
}

/// The run on one line: max sustainable rate, p50/p99 of the SLO's kind per step, calibration.
pub fn summary(r: &RunReport) -> String {
    let kind = &r.config.slo_kind;
    let max = r.max_sustainable_rate.map_or("none".to_owned(), |m| format!("{m}/s"));
    let steps = r
        .steps
        .iter()
        .map(|s| match s.latency.get(kind) {
            Some(l) => format!("{}/s {:.1}/{:.1}", s.offered_rate, l.p50_ms, l.p99_ms),
            None => format!("{}/s -", s.offered_rate),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let c = &r.calibration;
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    format!(
        "{} {}: max sustainable {max} ({kind} p99 ≤ {} ms); {kind} p50/p99 ms: {steps}; floor: kafka p50 {} ms, postgres {} commits/s, http p50 {} ms{}",
        r.mode,
        r.id,
        r.config.slo_p99_ms,
        f(c.kafka_round_trip_p50_ms),
        c.postgres_commits_per_sec.map_or("-".to_owned(), |v| format!("{v:.0}")),
        f(c.http_round_trip_p50_ms),
        if r.interrupted { " (interrupted)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::load_test_run::{Calibration, Config, Latency, Machine, ResourceSample};
    use std::collections::BTreeMap;

    fn report() -> RunReport {
        let mut steps = Vec::new();
        for (i, rate) in [100.0, 250.0, 500.0].into_iter().enumerate() {
            let mut latency = BTreeMap::new();
            let base = 10.0 * (i as f64 + 1.0);
            for kind in ["answer", "event"] {
                latency.insert(
                    kind.to_owned(),
                    Latency {
                        count: 10,
                        p50_ms: base,
                        p90_ms: base * 2.0,
                        p99_ms: base * 3.0,
                        p999_ms: base * 4.0,
                        max_ms: base * 5.0,
                        ..Latency::default()
                    },
                );
            }
            steps.push(Step {
                mode: "run".into(),
                offered_rate: rate,
                achieved_rate: rate,
                count: 10,
                confirmed: 10,
                start_s: i as f64 * 10.0,
                end_s: i as f64 * 10.0 + 5.0,
                latency,
                ..Step::default()
            });
        }
        let mut resources = BTreeMap::new();
        for c in ["kafka", "postgres", "load-test"] {
            let s = (0..30)
                .map(|t| ResourceSample { t: f64::from(t), cpu_percent: 50.0, rss_mib: 100.0, processes: 1 })
                .collect();
            resources.insert(c.to_owned(), s);
        }
        RunReport {
            version: 1,
            id: "t".into(),
            mode: "run".into(),
            started_at: String::new(),
            finished_at: String::new(),
            config: Config {
                rates: vec![100.0, 250.0, 500.0],
                step_secs: 5,
                warmup_secs: 0,
                users: 2,
                slo_p99_ms: 100.0,
                endpoint: String::new(),
                label: String::new(),
                slo_kind: "event".into(),
            },
            machine: Machine::default(),
            calibration: Calibration::default(),
            steps,
            max_sustainable_rate: Some(500.0),
            interrupted: false,
            resources,
            summary: "s".into(),
        }
    }

    #[test]
    fn a_run_writes_json_csv_and_four_svgs() {
        let dir = std::env::temp_dir().join(format!("load-test-output-{}", uuid::Uuid::new_v4()));
        let r = report();
        write(&r, &dir).unwrap();
        let back = RunReport::from_json(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(back, r);
        let steps = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
        assert_eq!(steps.lines().count(), 1 + 3 * 2, "a header and one row per step and kind");
        assert_eq!(std::fs::read_to_string(dir.join("resources.csv")).unwrap().lines().count(), 1 + 3 * 30);
        for svg in ["latency", "throughput", "cpu", "memory"] {
            let text = std::fs::read_to_string(dir.join(format!("{svg}.svg"))).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{svg}.svg");
            assert!(text.contains("<polyline"), "{svg}.svg has no line");
        }
        let latency = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        assert!(latency.contains("event p99") && latency.contains("answer p50"), "legend: {latency}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_summary_names_the_max_rate_and_each_step() {
        let s = summary(&report());
        assert!(s.contains("max sustainable 500/s"), "{s}");
        assert!(s.contains("100/s 10.0/30.0") && s.contains("500/s 30.0/90.0"), "{s}");
    }
}
