//! Processes and probes without extra dependencies: spawn detached, check liveness via /proc, signal via
//! `kill`, probe HTTP and Kafka over plain TCP.

use anyhow::{Context, bail};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns `cmd` in its own process group (so ctrl-c on `cargo xtask` does not reach it) with output to `log`.
pub fn spawn_detached(cmd: &mut Command, log: &Path) -> anyhow::Result<u32> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {:?}", cmd.get_program()))?;
    Ok(child.id())
}

/// Whether `pid` is a live (non-zombie) process whose command line contains `needle`.
pub fn alive(pid: u32, needle: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // Field 3 (after the parenthesised name) is the state.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(needle)
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// A process's resident memory in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// How a process stopped: how long after SIGTERM, and whether it had to be killed.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub took: Duration,
    pub killed: bool,
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub fn stop(pid: u32, needle: &str, grace: Duration) -> Stopped {
    let start = Instant::now();
    if !alive(pid, needle) {
        return Stopped { took: Duration::ZERO, killed: false };
    }
    signal(pid, "TERM");
    let deadline = start + grace;
    while Instant::now() < deadline {
        if !alive(pid, needle) {
            return Stopped { took: start.elapsed(), killed: false };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(pid, "KILL");
    std::thread::sleep(Duration::from_millis(200));
    Stopped { took: start.elapsed(), killed: true }
}

fn addr(host_port: &str) -> Option<SocketAddr> {
    host_port.to_socket_addrs().ok()?.find(SocketAddr::is_ipv4).or_else(|| host_port.to_socket_addrs().ok()?.next())
}

/// Whether something accepts TCP connections on `host_port`.
pub fn port_open(host_port: &str) -> bool {
    addr(host_port).is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// `GET path` over HTTP/1.0; returns the status code.
pub fn http_status(host_port: &str, path: &str) -> Option<u16> {
    let a = addr(host_port)?;
    let mut s = TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A small HTTP/1.0 request; returns status and body.
pub fn http(host_port: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    request(host_port, method, path, body, "", Duration::from_secs(5))
}

/// A GraphQL request over HTTP/1.0 (`token` as a bearer); returns the JSON response.
pub fn graphql(host_port: &str, token: Option<&str>, query: &str) -> Option<serde_json::Value> {
    let body = serde_json::json!({ "query": query }).to_string();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let (_, body) = request(host_port, "POST", "/graphql", Some(&body), &auth, Duration::from_secs(15))?;
    serde_json::from_str(&body).ok()
}

/// `extra_headers` are complete header lines, each ending in CRLF.
fn request(
    host_port: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &str,
    read_timeout: Duration,
) -> Option<(u16, String)> {
    let a = addr(host_port)?;
    let mut s = TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host_port}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Sum of the samples of a Prometheus counter in a `/metrics` body.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends a Kafka Metadata (v1, all topics) request and returns the number of live brokers in the answer.
pub fn kafka_brokers(host_port: &str) -> anyhow::Result<i32> {
    let a = addr(host_port).with_context(|| format!("cannot resolve {host_port}"))?;
    let mut s = TcpStream::connect_timeout(&a, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(&metadata_request(7))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let len = usize::try_from(i32::from_be_bytes(size)).context("negative frame size")?;
    if !(8..=64 * 1024 * 1024).contains(&len) {
        bail!("unexpected kafka frame size {len}");
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    parse_metadata_brokers(&body, 7)
}

fn metadata_request(correlation_id: i32) -> Vec<u8> {
    let client = b"xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    body.extend_from_slice(&1i16.to_be_bytes()); // api version 1
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&i16::try_from(client.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(client);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // null topic array: all topics
    let mut frame = i32::try_from(body.len()).unwrap_or(0).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn parse_metadata_brokers(body: &[u8], correlation_id: i32) -> anyhow::Result<i32> {
    if body.len() < 8 {
        bail!("short metadata response");
    }
    let corr = i32::from_be_bytes(body[0..4].try_into()?);
    if corr != correlation_id {
        bail!("metadata response for another request ({corr})");
    }
    Ok(i32::from_be_bytes(body[4..8].try_into()?))
}

/// Polls `check` every 100 ms until it passes or `timeout` elapses; prints a dot every few seconds.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut next_dot = Duration::from_secs(3);
    loop {
        if check() {
            if next_dot > Duration::from_secs(3) {
                eprintln!();
            }
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what} did not become healthy within {}s", timeout.as_secs());
        }
        if start.elapsed() > next_dot {
            eprint!(".");
            next_dot += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_request_is_well_formed() {
        let f = metadata_request(7);
        let size = i32::from_be_bytes(f[0..4].try_into().unwrap());
        assert_eq!(usize::try_from(size).unwrap(), f.len() - 4);
        assert_eq!(&f[4..6], &3i16.to_be_bytes());
        assert_eq!(&f[f.len() - 4..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn parses_broker_count() {
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(parse_metadata_brokers(&body, 7).unwrap(), 1);
        assert!(parse_metadata_brokers(&body, 8).is_err());
        assert!(parse_metadata_brokers(&body[..5], 7).is_err());
    }

    #[test]
    fn own_process_is_alive_and_others_are_not() {
        let me = std::process::id();
        assert!(alive(me, "xtask"));
        assert!(!alive(me, "definitely-not-this-binary"));
        assert!(!alive(u32::MAX - 1, ""));
    }
}
