//! What a run's steps add up to: the highest sustainable rate by the spec's rule. The `run.json` document itself
//! is [`bank_core::load_test_run`].

use bank_core::load_test_run::Step;

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

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::load_test_run::Latency;
    use std::collections::BTreeMap;

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
}
