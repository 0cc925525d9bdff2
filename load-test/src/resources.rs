//! CPU, RSS and bytes written of every component, once a second, from /proc. Components and their pids come
//! from `.openbank/state.json` (written by `cargo xtask up`); each counts with its child processes (PostgreSQL's
//! backends), and the load tester counts itself.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use bank_core::load_test_run::ResourceSample;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux architecture we run on).
const TICKS: f64 = 100.0;
const PAGE: f64 = 4096.0;

/// `(name, pid)` of every running component in xtask's state file; the load tester itself is added.
pub fn components(root: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(root.join(".openbank/state.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(list) = v["components"].as_array()
    {
        for c in list {
            if let (Some(name), Some(pid)) = (c["name"].as_str(), c["pid"].as_u64())
                && let Ok(pid) = u32::try_from(pid)
            {
                out.push((name.to_owned(), pid));
            }
        }
    }
    out.push((bank_core::load_test_run::Step::LOAD_TESTER.to_owned(), std::process::id()));
    out
}

/// `(ppid, utime + stime ticks, rss pages)` from `/proc/<pid>/stat`; the command name may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<(u32, u64, u64)> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss: i64 = f.get(21)?.parse().ok()?;
    Some((ppid, utime + stime, u64::try_from(rss).unwrap_or(0)))
}

struct Proc {
    ppid: u32,
    ticks: u64,
    rss_pages: u64,
}

/// `write_bytes` of `/proc/<pid>/io`: bytes this process caused to be written to storage, counted a page at a
/// time when the page is dirtied (a commit that dirties the WAL's last page again counts the page again); `None`
/// when the file cannot be read. The kernel folds a child's counts into its parent's when the parent reaps it.
pub fn parse_io(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

fn write_bytes(pid: u32) -> Option<u64> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

fn snapshot() -> HashMap<u32, Proc> {
    let mut all = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return all };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(text) = std::fs::read_to_string(e.path().join("stat"))
            && let Some((ppid, ticks, rss_pages)) = parse_stat(&text)
        {
            all.insert(pid, Proc { ppid, ticks, rss_pages });
        }
    }
    all
}

/// Proportional set size in kB: shared pages (PostgreSQL's shared buffers) split among the processes that map
/// them, so a process tree's memory is not counted once per process.
fn pss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `pid` and its descendants (which are alive now).
fn tree(all: &HashMap<u32, Proc>, pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (p, proc_) in all {
        children.entry(proc_.ppid).or_default().push(*p);
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if all.contains_key(&p) && out.len() < 10_000 {
            out.push(p);
            todo.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    out
}

/// What the parents in `tree` have had folded into their counters since the last sample: the last counts of the
/// children (`pid → (count, parent)`) that ended since (no longer `alive`) and whose parent is in `tree`.
fn folded(last: &HashMap<u32, (u64, u32)>, alive: impl Fn(u32) -> bool, tree: &[u32]) -> u64 {
    last.iter().filter(|(p, (_, ppid))| !alive(**p) && tree.contains(ppid)).map(|(_, (w, _))| *w).sum()
}

pub type Series = BTreeMap<String, Vec<ResourceSample>>;

/// Samples every second until `stop`; `t` is seconds since `origin`.
pub async fn sample(components: Vec<(String, u32)>, origin: Instant, stop: CancellationToken) -> Series {
    let mut series: Series = components.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
    let mut last_ticks: HashMap<u32, u64> = HashMap::new();
    // Per process: its counter and its parent at the last sample.
    let mut last_written: HashMap<u32, (u64, u32)> = HashMap::new();
    // Per component: bytes written since sampling began (the sum of every process's change, so a process that
    // ends takes nothing away).
    let mut written: HashMap<String, Option<u64>> = HashMap::new();
    let mut last_at = Instant::now();
    let mut first = true;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let all = tokio::task::spawn_blocking(snapshot).await.unwrap_or_default();
        let now = Instant::now();
        let elapsed = (now - last_at).as_secs_f64().max(0.001);
        let mut ticks_now = HashMap::new();
        let mut written_now = HashMap::new();
        for (name, pid) in &components {
            let pids = tree(&all, *pid);
            let (mut dticks, mut rss) = (0u64, 0u64);
            let mut pss_kb = 0u64;
            let mut dwritten: Option<u64> = None;
            for p in &pids {
                let Some(proc_) = all.get(p) else { continue };
                // A process new since the last sample counts from zero CPU at its start: its own total.
                dticks += proc_.ticks.saturating_sub(last_ticks.get(p).copied().unwrap_or(if first {
                    proc_.ticks
                } else {
                    0
                }));
                rss += proc_.rss_pages;
                if pids.len() > 1 {
                    pss_kb += pss(*p).unwrap_or(proc_.rss_pages * 4);
                }
                ticks_now.insert(*p, proc_.ticks);
                if let Some(w) = write_bytes(*p) {
                    let before = last_written.get(p).map(|l| l.0).unwrap_or(if first { w } else { 0 });
                    dwritten = Some(dwritten.unwrap_or(0) + w.saturating_sub(before));
                    written_now.insert(*p, (w, proc_.ppid));
                }
            }
            // A child that ended since the last sample was counted while it ran; its parent in this tree has just
            // had the child's whole count folded into its own, so that much of the parent's change is not new.
            if let Some(d) = dwritten.as_mut() {
                *d = d.saturating_sub(folded(&last_written, |p| all.contains_key(&p), &pids));
            }
            let total = written.entry(name.clone()).or_insert(None);
            if let Some(d) = dwritten {
                *total = Some(total.unwrap_or(0) + d);
            }
            if !first && let Some(s) = series.get_mut(name) {
                s.push(ResourceSample {
                    t: (now - origin).as_secs_f64(),
                    cpu_percent: dticks as f64 / TICKS / elapsed * 100.0,
                    rss_mib: if pids.len() > 1 { pss_kb as f64 / 1024.0 } else { rss as f64 * PAGE / 1_048_576.0 },
                    processes: u32::try_from(pids.len()).unwrap_or(u32::MAX),
                    write_bytes: *total,
                });
            }
        }
        last_ticks = ticks_now;
        last_written = written_now;
        last_at = now;
        first = false;
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "525 (java (kafka) x) S 1 525 525 0 -1 4194560 1 0 0 0 1500 250 0 0 20 0 80 0 100 4000000000 20000 18446744073709551615";
        assert_eq!(parse_stat(line), Some((1, 1750, 20000)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn an_ended_child_s_bytes_are_not_counted_again_in_its_parent() {
        // 10 (postmaster) had children 11 (still running) and 12 (ended, reaped by 10), and 99 ended outside.
        let last = HashMap::from([(10, (0, 1)), (11, (5_000, 10)), (12, (8_000, 10)), (99, (7_000, 1))]);
        let alive = |p: u32| p == 10 || p == 11;
        assert_eq!(folded(&last, alive, &[10, 11]), 8_000);
        assert_eq!(folded(&last, |_| true, &[10, 11]), 0);
    }

    #[test]
    fn io_files_parse() {
        let io = "rchar: 4096\nwchar: 8192\nsyscr: 3\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 12288\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), Some(12288));
        assert_eq!(parse_io("rchar: 1\n"), None);
        // This process may read its own.
        assert!(write_bytes(std::process::id()).is_some());
    }

    #[test]
    fn this_process_is_found_with_its_memory() {
        let all = snapshot();
        let me = std::process::id();
        assert!(tree(&all, me).contains(&me));
        assert!(all.get(&me).is_some_and(|p| p.rss_pages > 0));
    }
}
