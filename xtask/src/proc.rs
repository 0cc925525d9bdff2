//! Processes: spawn detached, check liveness and memory via /proc, signal with `kill(2)`, wait for a condition.

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use std::fs::File;
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

/// Sends `sig` to `pid`; a process that is already gone is not an error.
fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
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
    signal(pid, Signal::TERM);
    let deadline = start + grace;
    while Instant::now() < deadline {
        if !alive(pid, needle) {
            return Stopped { took: start.elapsed(), killed: false };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(pid, Signal::KILL);
    // SIGKILL is not instant either: wait (briefly) until the process is really gone.
    let _ = wait_quietly(Duration::from_secs(2), || !alive(pid, needle));
    Stopped { took: start.elapsed(), killed: true }
}

/// SIGKILL (a crash: no shutdown hooks run), then waits briefly until the process is gone.
pub fn kill(pid: u32, needle: &str) {
    if alive(pid, needle) {
        signal(pid, Signal::KILL);
        let _ = wait_quietly(Duration::from_secs(5), || !alive(pid, needle));
    }
}

/// The first IPv4 address of `host_port` (the stack binds loopback IPv4), else the first one.
pub fn addr(host_port: &str) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = host_port.to_socket_addrs().ok()?.collect();
    all.iter().find(|a| a.is_ipv4()).or_else(|| all.first()).copied()
}

/// Whether something accepts TCP connections on `host_port`.
pub fn port_open(host_port: &str) -> bool {
    addr(host_port).is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
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

/// Polls `check` every 20 ms until it passes (true) or `timeout` elapses (false), printing nothing.
pub fn wait_quietly(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with its standard output passed through to ours and also collected; returns whether it succeeded
/// and what it printed (the test runner counts results from it).
pub fn run_teeing(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("failed to run {cmd:?}"))?;
    let stdout = child.stdout.take().context("no output pipe")?;
    let mut output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        output.push_str(&line);
        output.push('\n');
    }
    Ok((child.wait()?.success(), output))
}

/// The last `n` lines of a file (empty when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines.get(lines.len().saturating_sub(n)..).unwrap_or_default().join("\n")
}

/// `line` without terminal colour sequences or other control characters.
pub fn plain(line: &str) -> String {
    strip_ansi(line).chars().filter(|c| !c.is_control()).collect()
}

/// `line` without terminal colour sequences (CSI: `ESC [` … a final byte in `@`..=`~`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_the_last_lines() {
        let file = std::env::temp_dir().join(format!("openbank-tail-{}", std::process::id()));
        std::fs::write(&file, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&file, 2), "b\nc");
        assert_eq!(tail(&file, 10), "a\nb\nc");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(tail(&file, 2), "");
    }

    #[test]
    fn own_process_is_alive_and_others_are_not() {
        let me = std::process::id();
        assert!(alive(me, "xtask"));
        assert!(!alive(me, "definitely-not-this-binary"));
        assert!(!alive(u32::MAX - 1, ""));
    }

    #[test]
    fn stop_terminates_a_child_and_reports_it() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        // Reap the child as soon as it exits, as a detached process's init would.
        let reaper = std::thread::spawn(move || child.wait());
        let s = stop(pid, "sleep", Duration::from_secs(5));
        assert!(!s.killed, "sleep ignores no SIGTERM");
        reaper.join().unwrap().unwrap();
        assert!(!alive(pid, "sleep"));
        // Stopping what is gone is instant and harmless.
        assert_eq!(stop(pid, "sleep", Duration::from_secs(5)).took, Duration::ZERO);
    }

    #[test]
    fn reads_resident_memory() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
