//! The files of a run: `run.json`, `steps.csv`, `resources.csv`, the graphs, and the one-line summary.

use std::fmt::Write as _;
use std::path::Path;

use crate::graphs;
use bank_core::load_test_run::{RunReport, Step};
use std::collections::BTreeSet;

pub fn write(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("run.json"), report.to_json()?)?;
    std::fs::write(dir.join("steps.csv"), steps_csv(&report.steps))?;
    std::fs::write(dir.join("resources.csv"), resources_csv(report))?;
    graphs::latency(&[report], &dir.join("latency.svg"))?;
    graphs::throughput(&[report], &dir.join("throughput.svg"))?;
    graphs::resources(report, &dir.join("cpu.svg"), graphs::Resource::Cpu)?;
    graphs::resources(report, &dir.join("memory.svg"), graphs::Resource::Memory)?;
    graphs::cost(report, &dir.join("cost.svg"))?;
    Ok(())
}

/// One row per step and latency kind; the step's cost columns (CPU µs per operation of each component, the
/// bank's sum, WAL bytes per operation, the machine's load) repeat on each of its rows.
pub fn steps_csv(steps: &[Step]) -> String {
    let components: BTreeSet<&str> = steps.iter().flat_map(|st| st.cost.keys().map(String::as_str)).collect();
    let mut s = String::from(
        "mode,offered_rate,achieved_rate,count,confirmed,failed,pending,errors,timeouts,missing_events,kind,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,completed,bank_cpu_us_per_op,wal_bytes_per_op,disk_write_bytes_per_op,run_queue,system_percent,steal_percent,iowait_percent",
    );
    for c in &components {
        let _ = write!(s, ",cpu_us_per_op:{c},rss_mib_max:{c},write_bytes_per_op:{c}");
    }
    s.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    for st in steps {
        let mut tail = format!(
            "{},{},{},{},{},{},{},{}",
            st.completed,
            opt(st.bank_cpu_us_per_op()),
            opt(st.wal_bytes_per_op),
            opt(st.disk_write_bytes_per_op),
            opt(st.load.as_ref().map(|l| l.run_queue)),
            opt(st.load.as_ref().map(|l| l.system_percent)),
            opt(st.load.as_ref().map(|l| l.steal_percent)),
            opt(st.load.as_ref().map(|l| l.iowait_percent)),
        );
        for c in &components {
            let k = st.cost.get(*c);
            let _ = write!(
                tail,
                ",{},{},{}",
                opt(k.and_then(|k| k.cpu_us_per_op)),
                opt(k.map(|k| k.rss_mib_max)),
                opt(k.and_then(|k| k.write_bytes_per_op))
            );
        }
        for (kind, l) in &st.latency {
            let _ = writeln!(
                s,
                "{},{},{:.1},{},{},{},{},{},{},{},{kind},{},{},{},{},{},{tail}",
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

/// A step's cost on one line: the bank's CPU per operation and its parts, WAL per operation, the machine.
pub fn cost_line(st: &Step) -> String {
    let Some(total) = st.bank_cpu_us_per_op() else {
        return format!("cost at {}/s: nothing completed or no samples", st.offered_rate);
    };
    let mut parts: Vec<(&str, f64)> = st
        .cost
        .iter()
        .filter_map(|(n, c)| Some((n.as_str(), c.cpu_us_per_op?)))
        .filter(|(n, _)| *n != Step::LOAD_TESTER)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts = parts.iter().map(|(n, v)| format!("{n} {v:.0}")).collect::<Vec<_>>().join(", ");
    let tester = st
        .cost
        .get(Step::LOAD_TESTER)
        .and_then(|c| c.cpu_us_per_op)
        .map_or(String::new(), |v| format!("; load tester {v:.0}"));
    let wal = st.wal_bytes_per_op.map_or(String::new(), |w| format!("; WAL {w:.0} B/op"));
    let disk = st.disk_write_bytes_per_op.map_or(String::new(), |w| format!(", disks {w:.0} B/op"));
    let machine = st.load.as_ref().map_or(String::new(), |l| {
        format!(
            "; machine: run queue {:.1}, user {:.0} %, system {:.0} %, iowait {:.0} %, steal {:.0} %, idle {:.0} %",
            l.run_queue, l.user_percent, l.system_percent, l.iowait_percent, l.steal_percent, l.idle_percent
        )
    });
    let floor = st
        .of_floor
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(String::new(), |(name, f)| format!("; {:.1} % of the {name} floor", f * 100.0));
    format!(
        "cost at {}/s: {total:.0} µs of CPU per operation ({parts}{tester}){wal}{disk}{floor}{machine}",
        st.offered_rate
    )
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

/// The errors by kind, most frequent first: ` (OVERLOADED 1200, transport 720)`; empty without errors.
fn error_kinds(st: &Step) -> String {
    if st.errors_by_kind.is_empty() {
        return String::new();
    }
    let mut kinds: Vec<(&String, &u64)> = st.errors_by_kind.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    format!(" ({})", kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "))
}

/// One step on one line (printed as each step ends).
pub fn step_line(st: &Step) -> String {
    format!(
        "{} {}/s: achieved {:.1}/s, {} sent, {} confirmed, {} failed, {} pending, {} errors{}, {} timeouts, {} missing events; {}{}",
        st.mode,
        st.offered_rate,
        st.achieved_rate,
        st.count,
        st.confirmed,
        st.failed,
        st.pending,
        st.errors,
        error_kinds(st),
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
    // The cost at the highest sustainable step (else the first), where it is a figure of a working bank.
    let at = r.steps.iter().find(|s| Some(s.offered_rate) == r.max_sustainable_rate).or(r.steps.first());
    let cost = at
        .and_then(|s| Some((s.offered_rate, s.bank_cpu_us_per_op()?)))
        .map_or(String::new(), |(rate, us)| format!("; bank CPU {us:.0} µs/op at {rate}/s"));
    let rate = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    format!(
        "{} {}: max sustainable {max} ({kind} p99 ≤ {} ms); {kind} p50/p99 ms: {steps}{cost}; floor: kafka p50 {} ms and {} records/s, postgres {} commits/s and {} transfers/s, http p50 {} ms and {} requests/s{}",
        r.mode,
        r.id,
        r.config.slo_p99_ms,
        f(c.kafka_round_trip_p50_ms),
        rate(c.kafka_records_per_sec),
        rate(c.postgres_commits_per_sec),
        rate(c.postgres_transfers_per_sec),
        f(c.http_round_trip_p50_ms),
        rate(c.http_requests_per_sec),
        if r.interrupted { " (interrupted)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::load_test_run::{Calibration, Config, Cost, Latency, Machine, ResourceSample};
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
        for (i, st) in steps.iter_mut().enumerate() {
            st.completed = 10;
            for (c, us) in [("kafka", 200.0), ("postgres", 300.0), ("load-test", 150.0)] {
                let cost = Cost { cpu_us_per_op: Some(us * (i as f64 + 1.0)), ..Cost::default() };
                st.cost.insert(c.to_owned(), cost);
            }
        }
        for c in ["kafka", "postgres", "load-test"] {
            let s = (0..30u32)
                .map(|t| ResourceSample {
                    t: f64::from(t),
                    cpu_percent: 50.0,
                    rss_mib: 100.0,
                    processes: 1,
                    write_bytes: Some(u64::from(t) * 1000),
                })
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
            load: Vec::new(),
            warm_up: None,
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
        let header: Vec<&str> = steps.lines().next().unwrap().split(',').collect();
        let row: Vec<&str> = steps.lines().last().unwrap().split(',').collect();
        assert_eq!(header.len(), row.len(), "{steps}");
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(row[col("cpu_us_per_op:postgres")], "900.0");
        assert_eq!(row[col("bank_cpu_us_per_op")], "1500.0", "the load tester is not the bank's cost");
        assert_eq!(std::fs::read_to_string(dir.join("resources.csv")).unwrap().lines().count(), 1 + 3 * 30);
        for svg in ["latency", "throughput", "cpu", "memory", "cost"] {
            let text = std::fs::read_to_string(dir.join(format!("{svg}.svg"))).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{svg}.svg");
            if svg != "cost" {
                assert!(text.contains("<polyline"), "{svg}.svg has no line");
            }
        }
        let cost = std::fs::read_to_string(dir.join("cost.svg")).unwrap();
        assert!(cost.contains("postgres") && cost.contains("load-test") && cost.contains("500/s"), "{cost}");
        // Three steps of three components: nine bars and three legend boxes.
        assert!(cost.matches("<rect").count() >= 12, "{cost}");
        // The bars' heights: the totals above them.
        assert!(cost.contains("\n650\n") && cost.contains("\n1950\n"), "{cost}");
        let latency = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        assert!(latency.contains("event p99") && latency.contains("answer p50"), "legend: {latency}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_step_s_cost_and_errors_read_on_one_line() {
        let mut st = report().steps.remove(2);
        let line = cost_line(&st);
        assert!(
            line.starts_with("cost at 500/s: 1500 µs of CPU per operation (postgres 900, kafka 600; load tester 450)"),
            "{line}"
        );
        st.errors = 30;
        st.errors_by_kind = [("transport".to_owned(), 10), ("OVERLOADED".to_owned(), 20)].into();
        let line = step_line(&st);
        assert!(line.contains("30 errors (OVERLOADED 20, transport 10)"), "{line}");
        assert!(cost_line(&Step::default()).contains("nothing completed"));
    }

    #[test]
    fn the_summary_names_the_max_rate_and_each_step() {
        let s = summary(&report());
        assert!(s.contains("bank CPU 1500 µs/op at 500/s"), "{s}");
        assert!(s.contains("max sustainable 500/s"), "{s}");
        assert!(s.contains("100/s 10.0/30.0") && s.contains("500/s 30.0/90.0"), "{s}");
    }
}
