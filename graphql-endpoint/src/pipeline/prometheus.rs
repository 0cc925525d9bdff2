//! Reading the few numbers the pipeline view needs from a service's Prometheus text (`/metrics`). Total: any text
//! gives an answer, lines it cannot read are passed over.

/// One sample line: its metric name, its labels (`key="value"`, as written) and its value.
fn samples(text: &str) -> impl Iterator<Item = (&str, Vec<&str>, f64)> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').filter(|c| *c > open)?;
                let labels = line.get(open + 1..close)?;
                (
                    line.get(..open)?,
                    labels.split(',').map(str::trim).filter(|l| !l.is_empty()).collect(),
                    line.get(close + 1..)?,
                )
            }
            None => {
                let (name, rest) = line.split_once(char::is_whitespace)?;
                (name, Vec::new(), rest)
            }
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        value.is_finite().then_some((name.trim(), labels, value))
    })
}

/// The sum of every sample of counter `name`, leaving out those carrying the label `skip` (`key="value"`);
/// `None` when there is none.
pub fn sum(text: &str, name: &str, skip: Option<&str>) -> Option<f64> {
    let mut found = None;
    for (n, labels, value) in samples(text) {
        if n == name && !skip.is_some_and(|s| labels.contains(&s)) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Quantile `q` (as written in the label, e.g. `0.99`) of summary `name`.
pub fn quantile(text: &str, name: &str, q: &str) -> Option<f64> {
    let label = format!("quantile=\"{q}\"");
    samples(text).find(|(n, labels, _)| *n == name && labels.contains(&label.as_str())).map(|(_, _, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE handler_commands_total counter
handler_commands_total{outcome="confirmed"} 10
handler_commands_total{outcome="failed"} 2
handler_commands_total{outcome="skipped"} 100
heartbeat_beats_sent_total 42 1700000000000
# TYPE handler_command_age_seconds summary
handler_command_age_seconds{quantile="0.5"} 0.012
handler_command_age_seconds{quantile="0.99"} 0.25
handler_command_age_seconds_sum 3.5
handler_command_age_seconds_count 120
broken_line{outcome="x" 5
nan_value NaN
"#;

    #[test]
    fn counters_are_summed_over_their_labels_except_the_skipped_ones() {
        assert_eq!(sum(TEXT, "handler_commands_total", Some("outcome=\"skipped\"")), Some(12.0));
        assert_eq!(sum(TEXT, "handler_commands_total", None), Some(112.0));
        assert_eq!(sum(TEXT, "heartbeat_beats_sent_total", None), Some(42.0));
        assert_eq!(sum(TEXT, "handler_command_age_seconds_count", None), Some(120.0));
        assert_eq!(sum(TEXT, "absent_total", None), None);
        assert_eq!(sum(TEXT, "nan_value", None), None, "a value that is not a number is no value");
    }

    #[test]
    fn quantiles_are_read_by_their_label() {
        assert_eq!(quantile(TEXT, "handler_command_age_seconds", "0.5"), Some(0.012));
        assert_eq!(quantile(TEXT, "handler_command_age_seconds", "0.99"), Some(0.25));
        assert_eq!(quantile(TEXT, "handler_command_age_seconds", "0.9"), None);
    }

    #[test]
    fn any_text_gives_an_answer() {
        for text in ["", "{", "}", "a{b}", "a{", "x{}} 1", "é{ü=\"}\"} 1", "\u{0} 1", "a 1e400", "{ 1"] {
            let _ = sum(text, "a", None);
            let _ = quantile(text, "a", "0.5");
        }
        assert_eq!(sum("x{} 3\nx 4", "x", None), Some(7.0));
    }
}
