//! `--resources docker`: CPU and memory of every container of the load tester's compose project, from the
//! Docker Engine API over its Unix socket (`/var/run/docker.sock`, mounted read-only by the compose `load-test`
//! profile): `GET /containers/json` once, then `GET /containers/{id}/stats?stream=false&one-shot=true` for each
//! container every second. CPU is the change of `cpu_stats.cpu_usage.total_usage` over the wall time between
//! two samples (100 = one core, as for `/proc`); memory is `memory_stats.usage` less the inactive page cache (what
//! `docker stats` shows). The client is a few lines of HTTP/1.1 over `std::os::unix::net::UnixStream`; every
//! answer is bounded.

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::resources::Series;
use bank_core::load_test_run::ResourceSample;

/// Where compose mounts the Docker socket.
pub const SOCKET: &str = "/var/run/docker.sock";
/// The Engine API version asked for (Docker 20.10 and later; `one-shot` needs it).
const API: &str = "/v1.41";
/// The largest answer read (a container list of a few hundred containers).
const MAX_ANSWER: u64 = 8 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One `GET` over the socket; the body of a 200 answer.
pub fn get(socket: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = UnixStream::connect(socket).with_context(|| format!("cannot connect to {}", socket.display()))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write!(s, "GET {API}{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    body(&raw).with_context(|| format!("GET {path}"))
}

/// The body of a raw HTTP/1.1 answer, de-chunked; an error unless the status is 200.
pub fn body(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default()).context("headers are not UTF-8")?;
    let rest = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).context("no status line")?;
    ensure!(status == "200", "the Docker API answered {status}");
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked { dechunk(rest) } else { Ok(rest.to_vec()) }
}

/// A `Transfer-Encoding: chunked` body joined.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").context("truncated chunk size")?;
        let size_line = std::str::from_utf8(rest.get(..eol).unwrap_or_default())?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = rest.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let Some(chunk) = rest.get(..size) else { bail!("truncated chunk") };
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// A container to sample: its id and the name its series gets (the compose service, `-N` for a second replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
}

/// The running containers of compose project `project` (all of them when `None`) in a `/containers/json` answer.
pub fn containers(list: &Value, project: Option<&str>) -> Vec<Container> {
    let mut out = Vec::new();
    for c in list.as_array().into_iter().flatten() {
        let labels = &c["Labels"];
        if project.is_some_and(|p| labels["com.docker.compose.project"].as_str() != Some(p)) {
            continue;
        }
        let Some(id) = c["Id"].as_str() else { continue };
        let name = match (
            labels["com.docker.compose.service"].as_str(),
            labels["com.docker.compose.container-number"].as_str(),
        ) {
            (Some(service), Some(n)) if n != "1" => format!("{service}-{n}"),
            (Some(service), _) => service.to_owned(),
            (None, _) => c["Names"][0].as_str().unwrap_or(id).trim_start_matches('/').to_owned(),
        };
        out.push(Container { id: id.to_owned(), name });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One container's counters from a `/containers/{id}/stats` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use less the inactive page cache, in bytes.
    pub memory: u64,
    pub pids: u32,
}

pub fn stats(v: &Value) -> Option<Stats> {
    let cpu_ns = v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64()?;
    let usage = v["memory_stats"]["usage"].as_u64()?;
    let s = &v["memory_stats"]["stats"];
    // cgroup v2 names it inactive_file, v1 total_inactive_file.
    let inactive = s["inactive_file"].as_u64().or_else(|| s["total_inactive_file"].as_u64()).unwrap_or(0);
    let pids = v["pids_stats"]["current"].as_u64().and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
    Some(Stats { cpu_ns, memory: usage.saturating_sub(inactive), pids })
}

/// The compose project this process runs in: its container is named by its host name.
fn own_project(socket: &Path) -> Option<String> {
    let host = std::fs::read_to_string("/etc/hostname").ok()?;
    let host = host.trim();
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    let me: Value =
        serde_json::from_slice(&get(socket, &format!("/containers/{host}/json")).ok()?).ok().filter(|_| ok)?;
    me["Config"]["Labels"]["com.docker.compose.project"].as_str().map(str::to_owned)
}

/// The containers to sample: those of this process's compose project (every running one outside compose).
pub fn discover(socket: &Path) -> anyhow::Result<Vec<Container>> {
    let project = own_project(socket);
    let list: Value = serde_json::from_slice(&get(socket, "/containers/json")?)?;
    let found = containers(&list, project.as_deref());
    ensure!(!found.is_empty(), "no running containers (project {project:?})");
    Ok(found)
}

/// Samples every second until `stop`; `t` is seconds since `origin`. Containers that cannot be read are left
/// out of that sample.
pub async fn sample(socket: PathBuf, containers: Vec<Container>, origin: Instant, stop: CancellationToken) -> Series {
    let mut series: Series = containers.iter().map(|c| (c.name.clone(), Vec::new())).collect();
    let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let (sock, list) = (socket.clone(), containers.clone());
        let read = tokio::task::spawn_blocking(move || {
            list.into_iter()
                .filter_map(|c| {
                    let body = get(&sock, &format!("/containers/{}/stats?stream=false&one-shot=true", c.id)).ok()?;
                    let s = stats(&serde_json::from_slice(&body).ok()?)?;
                    Some((c.name, s, Instant::now()))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (name, s, at) in read {
            if let Some((cpu_before, at_before)) = last.insert(name.clone(), (s.cpu_ns, at))
                && let Some(points) = series.get_mut(&name)
            {
                let wall_ns = (at - at_before).as_nanos().max(1) as f64;
                points.push(ResourceSample {
                    t: (at - origin).as_secs_f64(),
                    cpu_percent: s.cpu_ns.saturating_sub(cpu_before) as f64 / wall_ns * 100.0,
                    rss_mib: s.memory as f64 / 1_048_576.0,
                    processes: s.pids,
                });
            }
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `GET /v1.41/containers/{id}/stats?stream=false&one-shot=true` answer of Docker 27 on cgroup v2
    /// (trimmed to the fields that matter and a few around them).
    const STATS: &str = r#"{"read":"2026-11-30T21:10:04.123456789Z","preread":"0001-01-01T00:00:00Z",
        "pids_stats":{"current":12,"limit":18446744073709551615},
        "num_procs":0,"storage_stats":{},
        "cpu_stats":{"cpu_usage":{"total_usage":8123456789,"usage_in_kernelmode":1200000000,"usage_in_usermode":6923456789},
            "system_cpu_usage":912345670000000,"online_cpus":2,"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},
        "precpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"usage_in_usermode":0},"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},
        "memory_stats":{"usage":52428800,"stats":{"active_anon":30000000,"active_file":4000000,"anon":33554432,
            "file":12582912,"inactive_anon":0,"inactive_file":8388608,"kernel":1000000,"pgfault":12000},"limit":8221065216},
        "name":"/openbank-command-handler-1","id":"4f2c0e9d7a1b",
        "networks":{"eth0":{"rx_bytes":123456,"rx_packets":800,"tx_bytes":654321,"tx_packets":900}}}"#;

    /// A `GET /v1.41/containers/json` answer: two containers of project `openbank`, one of another project.
    const LIST: &str = r#"[
        {"Id":"aaa111","Names":["/openbank-graphql-endpoint-1"],"Image":"open-bank/graphql-endpoint","State":"running",
         "Labels":{"com.docker.compose.project":"openbank","com.docker.compose.service":"graphql-endpoint","com.docker.compose.container-number":"1"}},
        {"Id":"bbb222","Names":["/openbank-command-handler-2"],"Image":"open-bank/command-handler","State":"running",
         "Labels":{"com.docker.compose.project":"openbank","com.docker.compose.service":"command-handler","com.docker.compose.container-number":"2"}},
        {"Id":"ccc333","Names":["/other-db-1"],"Image":"postgres:17","State":"running",
         "Labels":{"com.docker.compose.project":"other","com.docker.compose.service":"db"}},
        {"Id":"ddd444","Names":["/plain"],"Image":"busybox","State":"running","Labels":{}}
    ]"#;

    #[test]
    fn stats_parse_from_a_recorded_answer() {
        let v: Value = serde_json::from_str(STATS).unwrap();
        assert_eq!(stats(&v), Some(Stats { cpu_ns: 8_123_456_789, memory: 52_428_800 - 8_388_608, pids: 12 }));
        // cgroup v1 names the cache total_inactive_file.
        let v1: Value = serde_json::from_str(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},"memory_stats":{"usage":100,"stats":{"total_inactive_file":40}}}"#,
        )
        .unwrap();
        assert_eq!(stats(&v1), Some(Stats { cpu_ns: 5, memory: 60, pids: 0 }));
        // A stopped container's answer has no counters.
        assert_eq!(stats(&serde_json::from_str(r#"{"cpu_stats":{},"memory_stats":{}}"#).unwrap()), None);
    }

    #[test]
    fn containers_of_the_project_are_named_by_service() {
        let list: Value = serde_json::from_str(LIST).unwrap();
        assert_eq!(
            containers(&list, Some("openbank")),
            [
                Container { id: "bbb222".into(), name: "command-handler-2".into() },
                Container { id: "aaa111".into(), name: "graphql-endpoint".into() },
            ]
        );
        let all = containers(&list, None);
        assert_eq!(all.len(), 4);
        assert!(all.iter().any(|c| c.name == "plain"));
        assert!(containers(&Value::Null, None).is_empty());
    }

    #[test]
    fn answers_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
        assert_eq!(body(plain).unwrap(), b"[]");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), b"{\"a\":1}");
        assert!(body(b"HTTP/1.1 404 Not Found\r\n\r\n{}").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nshort").is_err());
        assert!(body(b"garbage").is_err());
    }

    #[test]
    fn a_request_over_a_unix_socket_reads_the_answer() {
        let dir = std::env::temp_dir().join(format!("load-test-docker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = s.read(&mut req).unwrap();
            let req = String::from_utf8_lossy(&req[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n").unwrap();
            req
        });
        assert_eq!(get(&path, "/containers/json").unwrap(), b"[]");
        assert!(server.join().unwrap().starts_with("GET /v1.41/containers/json HTTP/1.1\r\n"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(get(&dir.join("none.sock"), "/x").is_err());
    }
}
