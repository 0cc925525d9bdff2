//! The machine's load once a second: `/proc/stat`'s CPU counters and runnable threads, the bytes written to the
//! block devices (`/proc/diskstats`), and PostgreSQL's WAL counter (`pg_stat_wal`), so a reader of a run can
//! tell a slow bank from a busy machine and see what each operation writes. Inside a container these files
//! are the host's: the machine, as wanted.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use bank_core::load_test_run::LoadSample;

/// The counters of a `/proc/stat` text (`t` and `wal_bytes` left for the caller); `None` without a `cpu` line.
pub fn parse_stat(text: &str) -> Option<LoadSample> {
    let mut s = LoadSample::default();
    let cpu = text.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user already)
    let f: Vec<u64> = cpu.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    s.user_ticks = at(0) + at(1);
    s.system_ticks = at(2) + at(5) + at(6);
    s.idle_ticks = at(3);
    s.iowait_ticks = at(4);
    s.steal_ticks = at(7);
    s.running =
        text.lines().find_map(|l| l.strip_prefix("procs_running")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    Some(s)
}

/// Bytes written to the machine's disks in a `/proc/diskstats` text: sectors written (field 10, always 512
/// bytes) of every whole disk (partitions, loop, RAM and device-mapper devices left out so nothing counts twice).
pub fn parse_diskstats(text: &str) -> Option<u64> {
    let mut total = None;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(name), Some(sectors)) = (f.get(2), f.get(9).and_then(|s| s.parse::<u64>().ok())) else { continue };
        let whole = ["sd", "vd", "xvd", "hd"].iter().any(|p| {
            name.strip_prefix(p).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase()))
        }) || (name.starts_with("nvme") && !name.contains('p'));
        if whole {
            *total.get_or_insert(0) += sectors * 512;
        }
    }
    total
}

async fn wal_bytes(db: &mut Option<PgConnection>, url: &str) -> Option<u64> {
    if url.is_empty() {
        return None;
    }
    if db.is_none() {
        *db = tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(url)).await.ok()?.ok();
    }
    let conn = db.as_mut()?;
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT wal_bytes::bigint AS b FROM pg_stat_wal").fetch_one(&mut *conn),
    )
    .await;
    match read {
        Ok(Ok(row)) => row.try_get::<i64, _>("b").ok().and_then(|b| u64::try_from(b).ok()),
        // A restarted database or a slow answer: connect again next time.
        _ => {
            *db = None;
            None
        }
    }
}

/// Samples every second until `stop`; `t` is seconds since `origin`.
pub async fn sample(database_url: String, origin: Instant, stop: CancellationToken) -> Vec<LoadSample> {
    let mut out = Vec::new();
    let mut db = None;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let stat = tokio::fs::read_to_string("/proc/stat").await.ok();
        let Some(mut s) = stat.as_deref().and_then(parse_stat) else { continue };
        s.t = (Instant::now() - origin).as_secs_f64();
        s.disk_write_bytes =
            tokio::fs::read_to_string("/proc/diskstats").await.ok().as_deref().and_then(parse_diskstats);
        s.wal_bytes = wal_bytes(&mut db, &database_url).await;
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_file_parses() {
        let text = "cpu  1000 20 300 5000 40 5 7 9 0 0\ncpu0 500 10 150 2500 20 2 3 4 0 0\nintr 1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            (s.user_ticks, s.system_ticks, s.idle_ticks, s.iowait_ticks, s.steal_ticks),
            (1020, 312, 5000, 40, 9)
        );
        assert_eq!(s.running, 3);
        assert_eq!(parse_stat("nothing"), None);
        let disks = "   8       0 sda 100 0 2000 50 300 0 4000 90 0 0 0\n   8       1 sda1 90 0 1800 40 290 0 3900 80 0 0 0\n 259 0 nvme0n1 1 0 1 1 1 0 1000 1 0 0 0\n 259 1 nvme0n1p1 1 0 1 1 1 0 999 1 0 0 0\n   7       0 loop0 1 0 1 1 1 0 77 1 0 0 0\n 254 0 vda 1 0 1 1 1 0 10 1 0 0 0\n";
        assert_eq!(parse_diskstats(disks), Some((4000 + 1000 + 10) * 512));
        assert_eq!(parse_diskstats("garbage"), None);
        // This machine's own.
        assert!(parse_stat(&std::fs::read_to_string("/proc/stat").unwrap()).is_some_and(|s| s.running >= 1));
    }
}
