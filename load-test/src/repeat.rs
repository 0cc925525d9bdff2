//! `--repeat N`: the same run N times, each its own folder; then the headline figures over the repetitions as
//! min / median / max (max sustainable rate; per offered rate the SLO kind's p99 and the bank's CPU per
//! operation), printed and written with the compared graphs.

use bank_core::load_test_run::RunReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `(min, median, max)` of `values`; the median of an even count is the mean of the middle two.
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (first, last) = (*v.first()?, *v.last()?);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] };
    Some((first, median, last))
}

fn show((lo, mid, hi): (f64, f64, f64), unit: &str) -> String {
    format!("{lo:.1} / {mid:.1} / {hi:.1}{unit}")
}

/// The lines of the summary over `runs` (the repetitions of one run).
pub fn summary(runs: &[RunReport]) -> Vec<String> {
    let Some(first) = runs.first() else { return Vec::new() };
    let kind = &first.config.slo_kind;
    let mut out = vec![format!("{} repetitions of `{}` (min / median / max):", runs.len(), first.mode)];
    let maxes: Vec<f64> = runs.iter().map(|r| r.max_sustainable_rate.unwrap_or(0.0)).collect();
    let none = runs.iter().filter(|r| r.max_sustainable_rate.is_none()).count();
    let mut line = format!("  max sustainable rate: {}", spread(&maxes).map_or("-".into(), |s| show(s, "/s")));
    if none > 0 {
        let _ = write!(line, " ({none} with no sustainable step, counted as 0)");
    }
    out.push(line);
    let mut by_rate: BTreeMap<u64, (f64, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in runs {
        for s in &r.steps {
            let e = by_rate.entry(s.offered_rate.to_bits()).or_insert((s.offered_rate, Vec::new(), Vec::new()));
            if let Some(l) = s.latency.get(kind).filter(|l| l.count > 0) {
                e.1.push(l.p99_ms);
            }
            if let Some(c) = s.bank_cpu_us_per_op() {
                e.2.push(c);
            }
        }
    }
    let mut rates: Vec<_> = by_rate.into_values().collect();
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (rate, p99, cpu) in rates {
        out.push(format!(
            "  {rate}/s: {kind} p99 {} over {} runs; bank CPU {}",
            spread(&p99).map_or("-".into(), |s| show(s, " ms")),
            p99.len(),
            spread(&cpu).map_or("-".into(), |s| show(s, " µs/op")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::load_test_run::{Config, Cost, Latency, Step};

    #[test]
    fn spreads_are_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[f64::NAN]), None);
    }

    #[test]
    fn the_summary_has_each_rate_over_the_repetitions() {
        let run = |max: Option<f64>, p99: f64, cpu: f64| RunReport {
            mode: "run".into(),
            config: Config { slo_kind: "event".into(), ..Config::default() },
            max_sustainable_rate: max,
            steps: vec![Step {
                offered_rate: 500.0,
                latency: [("event".to_owned(), Latency { count: 10, p99_ms: p99, ..Latency::default() })].into(),
                cost: [("postgres".to_owned(), Cost { cpu_us_per_op: Some(cpu), ..Cost::default() })].into(),
                ..Step::default()
            }],
            ..RunReport::from_json(r#"{"steps":[]}"#).unwrap()
        };
        let lines = summary(&[run(Some(500.0), 80.0, 900.0), run(None, 120.0, 1100.0), run(Some(500.0), 90.0, 1000.0)]);
        assert_eq!(lines[0], "3 repetitions of `run` (min / median / max):");
        assert_eq!(
            lines[1],
            "  max sustainable rate: 0.0 / 500.0 / 500.0/s (1 with no sustainable step, counted as 0)"
        );
        assert_eq!(
            lines[2],
            "  500/s: event p99 80.0 / 90.0 / 120.0 ms over 3 runs; bank CPU 900.0 / 1000.0 / 1100.0 µs/op"
        );
        assert!(summary(&[]).is_empty());
    }
}
