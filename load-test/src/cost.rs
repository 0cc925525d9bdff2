//! What each step cost: per component the mean CPU, CPU time and bytes written per completed operation and
//! the highest memory; the machine's load; PostgreSQL's WAL per operation. All from the once-a-second samples
//! whose time falls in the step's measured window (a sample covers the second before it).

use bank_core::load_test_run::{Calibration, Cost, Load, LoadSample, ResourceSample, Step};
use std::collections::BTreeMap;

/// The samples of `[start, end]`, and the last one before `start` (the baseline of the counters), if any.
fn window<T>(samples: &[T], t: impl Fn(&T) -> f64, start: f64, end: f64) -> (Option<&T>, Vec<&T>) {
    let before = samples.iter().filter(|s| t(s) <= start).last();
    let inside = samples.iter().filter(|s| t(s) > start && t(s) <= end + 0.5).collect();
    (before, inside)
}

/// The growth of a counter over a window: its last value inside less its baseline (the sample before, else
/// the first inside).
fn growth<T>(before: Option<&T>, inside: &[&T], v: impl Fn(&T) -> Option<u64>) -> Option<u64> {
    let last = v(inside.last()?)?;
    let first = match before.and_then(&v) {
        Some(b) => b,
        None => v(inside.first()?)?,
    };
    Some(last.saturating_sub(first))
}

fn per_op(total: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| total / ops as f64)
}

/// One component's cost in a step.
pub fn component(samples: &[ResourceSample], start: f64, end: f64, ops: u64) -> Option<Cost> {
    let (before, inside) = window(samples, |s| s.t, start, end);
    if inside.is_empty() {
        return None;
    }
    let cpu_percent = inside.iter().map(|s| s.cpu_percent).sum::<f64>() / inside.len() as f64;
    let secs = (end - start).max(0.0);
    Some(Cost {
        cpu_percent,
        cpu_us_per_op: per_op(cpu_percent / 100.0 * secs * 1e6, ops),
        rss_mib_max: inside.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
        write_bytes_per_op: growth(before, &inside, |s| s.write_bytes).and_then(|b| per_op(b as f64, ops)),
    })
}

/// The machine's load in a step.
pub fn load(samples: &[LoadSample], start: f64, end: f64) -> Option<Load> {
    let (before, inside) = window(samples, |s| s.t, start, end);
    let before = before.or(inside.first().copied())?;
    let last = inside.last()?;
    let d = |f: fn(&LoadSample) -> u64| f(last).saturating_sub(f(before)) as f64;
    let (user, system, iowait, steal, idle) =
        (d(|s| s.user_ticks), d(|s| s.system_ticks), d(|s| s.iowait_ticks), d(|s| s.steal_ticks), d(|s| s.idle_ticks));
    let all = (user + system + iowait + steal + idle).max(1.0);
    let share = |v: f64| (v / all * 1000.0).round() / 10.0;
    Some(Load {
        // The sampler itself is running when it reads the count.
        run_queue: inside.iter().map(|s| f64::from(s.running.saturating_sub(1))).sum::<f64>() / inside.len() as f64,
        user_percent: share(user),
        system_percent: share(system),
        iowait_percent: share(iowait),
        steal_percent: share(steal),
        idle_percent: share(idle),
    })
}

/// Fills every step's `cost`, `load` and `wal_bytes_per_op` from the run's samples.
pub fn fill(steps: &mut [Step], resources: &BTreeMap<String, Vec<ResourceSample>>, machine: &[LoadSample]) {
    for st in steps {
        let (start, end, ops) = (st.start_s, st.end_s, st.completed);
        st.cost = resources.iter().filter_map(|(n, s)| Some((n.clone(), component(s, start, end, ops)?))).collect();
        st.load = load(machine, start, end);
        let (before, inside) = window(machine, |s| s.t, start, end);
        st.wal_bytes_per_op = growth(before, &inside, |s| s.wal_bytes).and_then(|b| per_op(b as f64, ops));
        st.disk_write_bytes_per_op =
            growth(before, &inside, |s| s.disk_write_bytes).and_then(|b| per_op(b as f64, ops));
    }
}

/// Kafka records one operation writes: a transfer's command, its result and the two balance changes; the
/// pipeline's operation also has the heartbeat that caused it.
pub fn kafka_records_per_op(mode: &str) -> f64 {
    if mode == "pipeline" { 5.0 } else { 4.0 }
}

/// Every step's achieved rate as a fraction of each throughput floor the run measured (Kafka in records, so a
/// step's records are its operations times [`kafka_records_per_op`]).
pub fn of_floor(steps: &mut [Step], calibration: &Calibration) {
    let floors = calibration.floors();
    for st in steps {
        st.of_floor = floors
            .iter()
            .map(|(name, floor)| {
                let per_op = if name == "kafka" { kafka_records_per_op(&st.mode) } else { 1.0 };
                (name.clone(), (st.achieved_rate * per_op / floor * 1000.0).round() / 1000.0)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(cpu: f64, bytes_per_s: u64) -> Vec<ResourceSample> {
        (1..=20u32)
            .map(|t| ResourceSample {
                t: f64::from(t),
                cpu_percent: if (6..=15).contains(&t) { cpu } else { 1.0 },
                rss_mib: f64::from(t),
                processes: 1,
                write_bytes: Some(u64::from(t) * bytes_per_s),
            })
            .collect()
    }

    #[test]
    fn a_component_s_cost_is_its_window_s_cpu_and_writes_per_operation() {
        // 10 s at 50 % of a core = 5 s of CPU over 1000 operations = 5000 µs each; 4096 B/s for 10 s.
        let c = component(&samples(50.0, 4096), 5.0, 15.0, 1000).unwrap();
        assert!((c.cpu_percent - 50.0).abs() < 1e-9, "{c:?}");
        assert!((c.cpu_us_per_op.unwrap() - 5000.0).abs() < 1e-6, "{c:?}");
        assert!((c.write_bytes_per_op.unwrap() - 40.96).abs() < 1e-9, "{c:?}");
        assert_eq!(c.rss_mib_max, 15.0);
        // Nothing completed: no per-operation figures, the rest still.
        let idle = component(&samples(50.0, 0), 5.0, 15.0, 0).unwrap();
        assert_eq!((idle.cpu_us_per_op, idle.write_bytes_per_op), (None, None));
        // A window with no samples has no cost.
        assert_eq!(component(&samples(50.0, 0), 40.0, 50.0, 10), None);
    }

    #[test]
    fn the_machine_s_load_is_shares_of_its_ticks() {
        let at = |t: f64, k: u64, running: u32| LoadSample {
            t,
            running,
            user_ticks: 50 * k,
            system_ticks: 25 * k,
            iowait_ticks: 5 * k,
            steal_ticks: 0,
            idle_ticks: 20 * k,
            wal_bytes: Some(1_000 * k),
            disk_write_bytes: Some(3_000 * k),
        };
        let machine: Vec<LoadSample> = (0..=10).map(|k| at(k as f64, k, 4)).collect();
        let l = load(&machine, 2.0, 8.0).unwrap();
        assert_eq!((l.user_percent, l.system_percent, l.iowait_percent, l.idle_percent), (50.0, 25.0, 5.0, 20.0));
        assert_eq!(l.run_queue, 3.0);
        let mut steps = vec![Step { start_s: 2.0, end_s: 8.0, completed: 600, ..Step::default() }];
        fill(&mut steps, &BTreeMap::from([("postgres".to_owned(), samples(80.0, 0))]), &machine);
        // 6 s of WAL at 1000 B/s over 600 operations.
        assert_eq!(steps[0].wal_bytes_per_op, Some(10.0));
        assert_eq!(steps[0].disk_write_bytes_per_op, Some(30.0));
        assert!(steps[0].load.is_some() && steps[0].cost.contains_key("postgres"));
        assert!(load(&[], 0.0, 1.0).is_none());
    }

    #[test]
    fn steps_are_fractions_of_each_floor() {
        let c = Calibration {
            kafka_records_per_sec: Some(40_000.0),
            postgres_transfers_per_sec: Some(20_000.0),
            http_requests_per_sec: None,
            ..Calibration::default()
        };
        let mut steps = vec![Step { mode: "run".into(), achieved_rate: 1000.0, ..Step::default() }];
        of_floor(&mut steps, &c);
        assert_eq!(steps[0].of_floor, BTreeMap::from([("kafka".to_owned(), 0.1), ("postgres".to_owned(), 0.05)]));
    }
}
