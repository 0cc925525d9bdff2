//! `--resources docker`: CPU and memory of every container of the load tester's compose project, from the
//! Docker Engine API over its Unix socket (`/var/run/docker.sock`, mounted read-only by the compose `load-test`
//! profile), through bollard: the container list once, then each container's one-shot stats every second.
//! CPU is the change of `cpu_stats.cpu_usage.total_usage` over the wall time between two samples (100 = one
//! core, as for `/proc`); memory is `memory_stats.usage` less the inactive page cache (what `docker stats`
//! shows); bytes written are the block I/O writes (`blkio_stats.io_service_bytes_recursive`).

use anyhow::{Context, ensure};
use bollard::Docker;
use bollard::models::{ContainerStatsResponse, ContainerSummary};
use bollard::query_parameters::{ListContainersOptions, StatsOptionsBuilder};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::resources::Series;
use bank_core::load_test_run::ResourceSample;

/// Where compose mounts the Docker socket.
pub const SOCKET: &str = "/var/run/docker.sock";
/// Seconds one request may take.
const TIMEOUT_SECS: u64 = 5;

/// A client of the engine behind `socket`.
pub fn connect(socket: &str) -> anyhow::Result<Docker> {
    Docker::connect_with_unix(socket, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .with_context(|| format!("cannot use {socket}"))
}

/// A container to sample: its id and the name its series gets (the compose service, `-N` for a second replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
}

/// The containers of compose project `project` (all of them when `None`) in a container list, by name.
pub fn containers(list: &[ContainerSummary], project: Option<&str>) -> Vec<Container> {
    let mut out = Vec::new();
    for c in list {
        let label = |key: &str| c.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
        if project.is_some_and(|p| label("com.docker.compose.project") != Some(p)) {
            continue;
        }
        let Some(id) = c.id.as_deref() else { continue };
        let name = match (label("com.docker.compose.service"), label("com.docker.compose.container-number")) {
            (Some(service), Some(n)) if n != "1" => format!("{service}-{n}"),
            (Some(service), _) => service.to_owned(),
            (None, _) => {
                let first = c.names.as_ref().and_then(|n| n.first()).map_or(id, String::as_str);
                first.trim_start_matches('/').to_owned()
            }
        };
        out.push(Container { id: id.to_owned(), name });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One container's counters from a stats answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use less the inactive page cache, in bytes.
    pub memory: u64,
    pub pids: u32,
    /// Bytes written to block devices since the container started; `None` when the engine gives none.
    pub written: Option<u64>,
}

/// The counters of a stats answer; `None` for a stopped container (its answer has none).
pub fn stats(v: &ContainerStatsResponse) -> Option<Stats> {
    let cpu_ns = v.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage?;
    let memory = v.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let stat = |key: &str| memory.stats.as_ref().and_then(|s| s.get(key)).copied();
    // cgroup v2 names it inactive_file, v1 total_inactive_file.
    let inactive = stat("inactive_file").or_else(|| stat("total_inactive_file")).unwrap_or(0);
    let pids = v.pids_stats.as_ref().and_then(|p| p.current).and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
    let written = v.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref()).map(|entries| {
        entries
            .iter()
            .filter(|e| e.op.as_deref().is_some_and(|op| op.eq_ignore_ascii_case("write")))
            .filter_map(|e| e.value)
            .sum()
    });
    Some(Stats { cpu_ns, memory: usage.saturating_sub(inactive), pids, written })
}

/// A host name that can only name a container (compose names a service's container by its host name).
fn plain_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The compose project of the container named `host`; `None` outside a container of a compose project.
async fn project_of(docker: &Docker, host: &str) -> Option<String> {
    if !plain_host_name(host) {
        return None;
    }
    let me = docker.inspect_container(host, None).await.ok()?;
    me.config?.labels?.remove("com.docker.compose.project")
}

/// The containers to sample: those of the compose project of the container named `host` (this process's own,
/// from `/etc/hostname`), or every running one when that is no container of a compose project.
pub async fn discover(docker: &Docker, host: &str) -> anyhow::Result<Vec<Container>> {
    let project = project_of(docker, host).await;
    let list = docker.list_containers(None::<ListContainersOptions>).await.context("listing the containers")?;
    let found = containers(&list, project.as_deref());
    ensure!(!found.is_empty(), "no running containers (project {project:?})");
    Ok(found)
}

/// One container's counters now; `None` when it cannot be read.
async fn read(docker: &Docker, id: &str) -> Option<Stats> {
    let once = StatsOptionsBuilder::default().stream(false).one_shot(true).build();
    let answer = docker.stats(id, Some(once)).next().await?.ok()?;
    stats(&answer)
}

/// Samples every second until `stop`; `t` is seconds since `origin`. Containers that cannot be read are left
/// out of that sample.
pub async fn sample(docker: Docker, containers: Vec<Container>, origin: Instant, stop: CancellationToken) -> Series {
    let mut series: Series = containers.iter().map(|c| (c.name.clone(), Vec::new())).collect();
    let mut last: HashMap<&str, (u64, Instant)> = HashMap::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let reads = futures::future::join_all(containers.iter().map(|c| async {
            let s = read(&docker, &c.id).await;
            (c.name.as_str(), s, Instant::now())
        }))
        .await;
        for (name, s, at) in reads {
            let Some(s) = s else { continue };
            if let Some((cpu_before, at_before)) = last.insert(name, (s.cpu_ns, at))
                && let Some(points) = series.get_mut(name)
            {
                let wall_ns = (at - at_before).as_nanos().max(1) as f64;
                points.push(ResourceSample {
                    t: (at - origin).as_secs_f64(),
                    cpu_percent: s.cpu_ns.saturating_sub(cpu_before) as f64 / wall_ns * 100.0,
                    rss_mib: s.memory as f64 / 1_048_576.0,
                    processes: s.pids,
                    write_bytes: s.written,
                });
            }
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A `GET /containers/{id}/stats?stream=false&one-shot=true` answer of Docker 27 on cgroup v2
    /// (trimmed to the fields that matter and a few around them).
    const STATS: &str = r#"{"read":"2026-11-30T21:10:04.123456789Z","preread":"0001-01-01T00:00:00Z",
        "pids_stats":{"current":12,"limit":18446744073709551615},
        "num_procs":0,"storage_stats":{},
        "blkio_stats":{"io_service_bytes_recursive":[{"major":254,"minor":0,"op":"read","value":1048576},
            {"major":254,"minor":0,"op":"write","value":3145728},{"major":254,"minor":16,"op":"write","value":4096}]},
        "cpu_stats":{"cpu_usage":{"total_usage":8123456789,"usage_in_kernelmode":1200000000,"usage_in_usermode":6923456789},
            "system_cpu_usage":912345670000000,"online_cpus":2,"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},
        "precpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"usage_in_usermode":0},"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},
        "memory_stats":{"usage":52428800,"stats":{"active_anon":30000000,"active_file":4000000,"anon":33554432,
            "file":12582912,"inactive_anon":0,"inactive_file":8388608,"kernel":1000000,"pgfault":12000},"limit":8221065216},
        "name":"/openbank-command-handler-1","id":"4f2c0e9d7a1b",
        "networks":{"eth0":{"rx_bytes":123456,"rx_packets":800,"tx_bytes":654321,"tx_packets":900}}}"#;

    /// A `GET /containers/json` answer: two containers of project `openbank`, one of another project.
    const LIST: &str = r#"[
        {"Id":"aaa111","Names":["/openbank-graphql-endpoint-1"],"Image":"open-bank/graphql-endpoint","State":"running",
         "Labels":{"com.docker.compose.project":"openbank","com.docker.compose.service":"graphql-endpoint","com.docker.compose.container-number":"1"}},
        {"Id":"bbb222","Names":["/openbank-command-handler-2"],"Image":"open-bank/command-handler","State":"running",
         "Labels":{"com.docker.compose.project":"openbank","com.docker.compose.service":"command-handler","com.docker.compose.container-number":"2"}},
        {"Id":"ccc333","Names":["/other-db-1"],"Image":"postgres:17","State":"running",
         "Labels":{"com.docker.compose.project":"other","com.docker.compose.service":"db"}},
        {"Id":"ddd444","Names":["/plain"],"Image":"busybox","State":"running","Labels":{}}
    ]"#;

    /// A `GET /containers/{id}/json` answer of the load tester's own container (trimmed).
    const SELF: &str = r#"{"Id":"eee555","Name":"/openbank-load-test-run-1","State":{"Status":"running","Running":true},
        "Config":{"Hostname":"eee555","Labels":{"com.docker.compose.project":"openbank","com.docker.compose.service":"load-test"}}}"#;

    #[test]
    fn stats_parse_from_a_recorded_answer() {
        let v: ContainerStatsResponse = serde_json::from_str(STATS).unwrap();
        assert_eq!(
            stats(&v),
            Some(Stats { cpu_ns: 8_123_456_789, memory: 52_428_800 - 8_388_608, pids: 12, written: Some(3_149_824) })
        );
        // cgroup v1 names the cache total_inactive_file.
        let v1: ContainerStatsResponse = serde_json::from_str(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},"memory_stats":{"usage":100,"stats":{"total_inactive_file":40}}}"#,
        )
        .unwrap();
        assert_eq!(stats(&v1), Some(Stats { cpu_ns: 5, memory: 60, pids: 0, written: None }));
        // A stopped container's answer has no counters.
        let stopped: ContainerStatsResponse = serde_json::from_str(r#"{"cpu_stats":{},"memory_stats":{}}"#).unwrap();
        assert_eq!(stats(&stopped), None);
    }

    #[test]
    fn containers_of_the_project_are_named_by_service() {
        let list: Vec<ContainerSummary> = serde_json::from_str(LIST).unwrap();
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
        assert!(containers(&[], None).is_empty());
    }

    #[test]
    fn only_a_plain_host_name_is_looked_up() {
        assert!(plain_host_name("eee555"));
        assert!(plain_host_name("openbank-load-test-run-1"));
        assert!(!plain_host_name(""));
        assert!(!plain_host_name("../../images/json?"));
        assert!(!plain_host_name("a/b"));
    }

    /// A fake engine on a Unix socket: answers the requests bollard sends with the recorded answers, one request
    /// per connection (bollard keeps no idle connection), and records the request lines.
    async fn fake_engine(path: std::path::PathBuf, requests: tokio::sync::mpsc::UnboundedSender<String>) {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
            let path = line.split_whitespace().nth(1).unwrap_or_default();
            // With or without an API version in front.
            let path = path.strip_prefix("/v1.").map_or(path, |p| p.trim_start_matches(|c: char| c.is_ascii_digit()));
            let (status, body) = if path.starts_with("/containers/json") {
                ("200 OK", LIST.to_owned())
            } else if path.starts_with("/containers/eee555/json") {
                ("200 OK", SELF.to_owned())
            } else if path.starts_with("/containers/aaa111/stats") || path.starts_with("/containers/bbb222/stats") {
                ("200 OK", STATS.replace('\n', " "))
            } else {
                ("404 Not Found", r#"{"message":"No such container"}"#.to_owned())
            };
            let _ = requests.send(line);
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    }

    #[tokio::test]
    async fn the_project_s_containers_are_found_and_sampled_through_the_socket() {
        let dir = std::env::temp_dir().join(format!("load-test-docker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = tokio::spawn(fake_engine(path.clone(), tx));
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let docker = connect(path.to_str().unwrap()).unwrap();

        // Inside a compose container: its project's containers only.
        let found = discover(&docker, "eee555").await.unwrap();
        assert_eq!(
            found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["command-handler-2", "graphql-endpoint"]
        );
        // Outside one (the engine does not know the host name): every container.
        assert_eq!(discover(&docker, "laptop").await.unwrap().len(), 4);
        // A container that cannot be read is left out.
        assert_eq!(read(&docker, "ccc333").await, None);
        assert_eq!(read(&docker, "aaa111").await.map(|s| s.pids), Some(12));

        let stop = CancellationToken::new();
        let origin = Instant::now();
        let sampler = tokio::spawn(sample(docker, found, origin, stop.clone()));
        tokio::time::sleep(Duration::from_millis(2300)).await;
        stop.cancel();
        let series = sampler.await.unwrap();
        // The counters did not move between samples (a recorded answer), so CPU is 0 and memory the answer's.
        for name in ["command-handler-2", "graphql-endpoint"] {
            let points = &series[name];
            assert!(!points.is_empty(), "{name}: no sample");
            assert!(points.iter().all(|p| p.cpu_percent == 0.0 && p.processes == 12));
            assert!(points.iter().all(|p| (p.rss_mib - 42.0).abs() < 1e-9 && p.write_bytes == Some(3_149_824)));
        }
        engine.abort();
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        assert!(lines.iter().any(|l| l.contains("/containers/aaa111/stats?") && l.contains("one-shot=true")));
        assert!(lines.iter().all(|l| l.ends_with("HTTP/1.1")), "{lines:?}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(connect(dir.join("none.sock").to_str().unwrap()).is_err());
    }
}
