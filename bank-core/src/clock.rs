//! Wall-clock time as Unix time, read the same way everywhere (Kafka timestamps, ages and delays, records'
//! start times, stamps in names). A clock set before 1970 reads as 0.

use std::time::{Duration, SystemTime};

/// Time since 1970-01-01 UTC.
pub fn since_epoch() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// Milliseconds since 1970-01-01 UTC, the unit of Kafka timestamps.
pub fn unix_millis() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Whole seconds since 1970-01-01 UTC.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let (ms, s) = (unix_millis(), unix_secs());
        assert!(ms > 1_700_000_000_000, "{ms}");
        assert!((ms / 1000).abs_diff(i64::try_from(s).unwrap()) <= 1);
    }
}
