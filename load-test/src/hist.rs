//! HdrHistograms of latencies in microseconds, their summary, and their serialized form (so runs merge).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use std::time::Duration;

use bank_core::load_test_run::Latency;

/// Highest value kept: one hour; anything above is clamped to it (and so still counted).
const MAX_US: u64 = 3_600_000_000;

pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(MAX_US).clamp(1, MAX_US);
    h.saturating_record(us);
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    match V2Serializer::new().serialize(h, &mut buf) {
        Ok(_) => STANDARD.encode(buf),
        Err(_) => String::new(),
    }
}

pub fn decode(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = STANDARD.decode(s)?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    Ok(h)
}

/// Adds `other` into `into` (histograms from several steps or runs).
pub fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) -> anyhow::Result<()> {
    into.add(other).map_err(|e| anyhow::anyhow!("histograms do not merge: {e:?}"))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn summarize(h: &Histogram<u64>, floor_ms: Option<f64>) -> Latency {
    let empty = h.is_empty();
    let q = |q: f64| if empty { 0.0 } else { ms(h.value_at_quantile(q)) };
    let p50 = q(0.5);
    let p99 = q(0.99);
    let multiple = |v: f64| floor_ms.filter(|f| *f > 0.0 && !empty).map(|f| (v / f * 10.0).round() / 10.0);
    Latency {
        count: h.len(),
        p50_ms: p50,
        p90_ms: q(0.9),
        p99_ms: p99,
        p999_ms: q(0.999),
        max_ms: if empty { 0.0 } else { ms(h.max()) },
        p50_floor_multiple: multiple(p50),
        p99_floor_multiple: multiple(p99),
        histogram: encode(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_hold_both_sets_of_values() {
        let mut a = new();
        let mut b = new();
        for ms in 1..=100 {
            record(&mut a, Duration::from_millis(ms));
        }
        for _ in 0..100 {
            record(&mut b, Duration::from_millis(1000));
        }
        // Through the serialized form, as `compare` does with two run.json files.
        let mut merged = decode(&encode(&a)).unwrap();
        merge(&mut merged, &decode(&encode(&b)).unwrap()).unwrap();
        assert_eq!(merged.len(), 200);
        let s = summarize(&merged, Some(2.0));
        assert!((49.0..=51.0).contains(&s.p50_ms) || (99.0..=101.0).contains(&s.p50_ms), "{s:?}");
        assert!((999.0..=1001.0).contains(&s.p99_ms), "{s:?}");
        assert!((999.0..=1001.0).contains(&s.max_ms), "{s:?}");
        let only_a = summarize(&a, Some(2.0));
        assert!((49.0..=51.0).contains(&only_a.p50_ms), "{only_a:?}");
        assert_eq!(only_a.p50_floor_multiple, Some((only_a.p50_ms / 2.0 * 10.0).round() / 10.0));
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(100_000));
        assert_eq!(h.len(), 2);
        let empty = summarize(&new(), Some(1.0));
        assert_eq!((empty.count, empty.p99_ms, empty.p50_floor_multiple), (0, 0.0, None));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode("not base64!").is_err());
        assert!(decode(&STANDARD.encode(b"\x1c\x84\x93\x13garbage")).is_err());
    }
}
