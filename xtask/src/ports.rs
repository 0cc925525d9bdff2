//! Which port each part of the stack listens on. The defaults are `bank_core::ports`; `up` keeps a component on
//! its default unless a program it did not start holds that port, then picks a free one, says so, and records the
//! choice in `.openbank/state.json` (`ports`) and `.openbank/env`, which every tool and test reads. With
//! `--strict-ports` it fails instead, naming the port and the process that holds it.
//!
//! A slot is a component instance's record name (`postgres`, `kafka-2`, `command-handler`), or a Kafka node's
//! controller listener (`kafka-controller`, `kafka-2-controller`).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;

use bank_core::ports;

use crate::instance::{instance_name, split_instance};

const CONTROLLER: &str = "-controller";

/// The ports the stack runs on, by slot; a slot not in the table is on its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ports(BTreeMap<String, u16>);

impl Ports {
    /// Kafka node `n`'s client and controller addresses.
    pub fn kafka_node(&self, n: u32) -> (String, String) {
        let node = instance_name("kafka", n);
        (self.local(&node), self.local(&controller_slot(&node)))
    }

    /// The bootstrap list of a Kafka cluster of `count` nodes.
    pub fn kafka_bootstrap(&self, count: u32) -> String {
        (1..=count.max(1)).map(|n| self.kafka_node(n).0).collect::<Vec<_>>().join(",")
    }

    /// The slot's port: as recorded, else its default (0 for a slot that has none).
    pub fn port(&self, slot: &str) -> u16 {
        self.0.get(slot).copied().or_else(|| default_port(slot)).unwrap_or(0)
    }

    /// `127.0.0.1:<port>`: where a service of ours listens (loopback only).
    pub fn listen(&self, slot: &str) -> String {
        format!("127.0.0.1:{}", self.port(slot))
    }

    /// `localhost:<port>`: how clients reach Kafka and PostgreSQL (which listen on `localhost`).
    pub fn local(&self, slot: &str) -> String {
        format!("localhost:{}", self.port(slot))
    }

    /// `http://localhost:<port>`.
    pub fn url(&self, slot: &str) -> String {
        format!("http://localhost:{}", self.port(slot))
    }

    pub fn set(&mut self, slot: &str, port: u16) {
        self.0.insert(slot.to_owned(), port);
    }

    /// Every slot placed, with its port.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u16)> {
        self.0.iter().map(|(slot, &port)| (slot.as_str(), port))
    }

    pub fn recorded(&self, slot: &str) -> Option<u16> {
        self.0.get(slot).copied()
    }

    /// Slots whose port is not their default, with both.
    pub fn moved(&self) -> Vec<(String, u16, u16)> {
        self.0
            .iter()
            .filter_map(|(slot, &port)| default_port(slot).filter(|&d| d != port).map(|d| (slot.clone(), d, port)))
            .collect()
    }
}

/// Kafka node `n`'s controller slot.
pub fn controller_slot(node: &str) -> String {
    format!("{node}{CONTROLLER}")
}

/// The default port of a slot: `bank_core::ports`, moved up for further instances (by 2 per Kafka node, by 10 per
/// service instance). `None` for a slot the stack does not have.
pub fn default_port(slot: &str) -> Option<u16> {
    let (base, controller) = match slot.strip_suffix(CONTROLLER) {
        Some(b) => (b, true),
        None => (slot, false),
    };
    let (component, n) = split_instance(base);
    let (address, step) = match (component, controller) {
        ("postgres", false) => (ports::POSTGRES, 0),
        ("kafka", false) => (ports::KAFKA_BROKERS, 2),
        ("kafka", true) => (ports::KAFKA_CONTROLLER, 2),
        ("schema-registry", false) => (ports::SCHEMA_REGISTRY_LISTEN, 0),
        ("heartbeat", false) => (ports::HEARTBEAT_LISTEN, 10),
        ("command-handler", false) => (ports::COMMAND_HANDLER_LISTEN, 10),
        ("graphql-endpoint", false) => (ports::GRAPHQL_LISTEN, 10),
        ("command-generator", false) => (ports::COMMAND_GENERATOR_LISTEN, 10),
        _ => return None,
    };
    if step == 0 && n > 1 {
        return None;
    }
    let port = port_of(address)?;
    port.checked_add(u16::try_from(n - 1).ok()?.checked_mul(step)?)
}

/// One slot `up` needs, and whether its port is already settled: held by a process of this stack that keeps
/// running (or Debian's PostgreSQL cluster, whose port is its own configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub slot: String,
    pub fixed: Option<u16>,
}

/// What the plan did about a slot that could not have its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub slot: String,
    pub from: u16,
    pub to: u16,
    pub holder: String,
}

impl std::fmt::Display for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} is in use by {}; using {}", self.slot, self.from, self.holder, self.to)
    }
}

/// How far above its default a moved slot looks for a free port before asking the OS for any.
const SEARCH: u16 = 200;

/// The ports for `wants`: fixed ones as they are; else the recorded port, else the default, whichever is free
/// first; else the next free port above the default that is no other slot's default. `strict`: the default or an
/// error naming what holds it. `free` says whether nothing listens on a port, `holder` names what does.
pub fn plan(
    wants: &[Want],
    recorded: &Ports,
    strict: bool,
    free: &dyn Fn(u16) -> bool,
    holder: &dyn Fn(u16) -> String,
) -> anyhow::Result<(Ports, Vec<Move>)> {
    let mut out = Ports::default();
    let mut used: HashSet<u16> = HashSet::new();
    let defaults: HashSet<u16> = wants.iter().filter_map(|w| default_port(&w.slot)).collect();
    for w in wants {
        if let Some(p) = w.fixed {
            out.set(&w.slot, p);
            used.insert(p);
        }
    }
    let mut moves = Vec::new();
    for w in wants.iter().filter(|w| w.fixed.is_none()) {
        let default = default_port(&w.slot).with_context(|| format!("no default port for `{}`", w.slot))?;
        // `--strict-ports` means the defaults, as they are.
        let mut candidates = recorded.recorded(&w.slot).filter(|_| !strict).into_iter().chain([default]);
        if let Some(p) = candidates.find(|p| !used.contains(p) && free(*p)) {
            out.set(&w.slot, p);
            used.insert(p);
            continue;
        }
        let by = holder(default);
        if strict {
            anyhow::bail!(
                "{}: port {default} is in use by {by}; stop it, or run `up` without --strict-ports to let it pick \
                 another port",
                w.slot
            );
        }
        let to = (1..=SEARCH)
            .filter_map(|k| default.checked_add(k))
            .find(|p| !used.contains(p) && !defaults.contains(p) && free(*p))
            .or_else(any_free_port)
            .with_context(|| format!("{}: port {default} is in use by {by} and no free port was found", w.slot))?;
        out.set(&w.slot, to);
        used.insert(to);
        moves.push(Move { slot: w.slot.clone(), from: default, to, holder: by });
    }
    Ok((out, moves))
}

/// A port the OS hands out as free.
fn any_free_port() -> Option<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?.local_addr().ok().map(|a| a.port())
}

/// Whether a component could listen on `port` on loopback: nothing listens on it (on any address) and binding it
/// on 127.0.0.1, and on ::1 where the machine has IPv6, works.
pub fn is_free(port: u16) -> bool {
    if listening_sockets().contains_key(&port) {
        return false;
    }
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    let v6 = match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(_) => true,
        // No IPv6 on this machine (or on loopback): nothing can hold the port there.
        Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(97),
    };
    v4 && v6
}

/// What listens on `port`: `postgres (pid 812)`, or `a process of another user` when its descriptors cannot be
/// read, or `nothing` when nothing does.
pub fn holder(port: u16) -> String {
    if !listening_sockets().contains_key(&port) {
        return "nothing".into();
    }
    match holder_pid(port) {
        Some(pid) => format!("{} (pid {pid})", process_name(pid)),
        None => "a process of another user".into(),
    }
}

/// The pid that holds a listening socket on `port`, where this user may see it.
pub fn holder_pid(port: u16) -> Option<u32> {
    let listening = listening_sockets();
    let inodes = listening.get(&port)?;
    let owners = socket_owners(&inodes.iter().copied().collect());
    inodes.iter().find_map(|i| owners.get(i)).copied()
}

/// The port of a `host:port` address.
pub fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// Whether `pid`'s parent is one of `pids` (a PostgreSQL or Kafka child of a process `up` started).
pub fn parent_in(pid: u32, pids: &HashSet<u32>) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parent_of_stat(&s))
        .is_some_and(|ppid| pids.contains(&ppid))
}

/// The parent pid in a `/proc/<pid>/stat` line (after the command name, which may hold spaces and parentheses).
pub fn parent_of_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// Listening TCP sockets (IPv4 and IPv6): port → socket inodes.
pub fn listening_sockets() -> HashMap<u16, Vec<u64>> {
    let mut out: HashMap<u16, Vec<u64>> = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (port, inode) in parse_listening(&text) {
            out.entry(port).or_default().push(inode);
        }
    }
    out
}

/// The (port, inode) of every LISTEN line (state `0A`) of a `/proc/net/tcp` or `tcp6` table.
pub fn parse_listening(table: &str) -> Vec<(u16, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            if *fields.get(3)? != "0A" {
                return None;
            }
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

/// Which process holds each of `inodes` (only processes whose descriptors this user may read).
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'))
                && let Ok(inode) = inode.parse::<u64>()
                && inodes.contains(&inode)
            {
                out.entry(inode).or_insert(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(slot: &str) -> Want {
        Want { slot: slot.into(), fixed: None }
    }

    fn run(wants: &[Want], recorded: &Ports, strict: bool, taken: &[u16]) -> anyhow::Result<(Ports, Vec<Move>)> {
        let taken: HashSet<u16> = taken.iter().copied().collect();
        plan(wants, recorded, strict, &|p| !taken.contains(&p), &|p| format!("holder-of-{p}"))
    }

    #[test]
    fn defaults_follow_the_table_and_instances_move_up() {
        assert_eq!(default_port("postgres"), Some(5432));
        assert_eq!(default_port("kafka"), Some(9092));
        assert_eq!(default_port("kafka-controller"), Some(9093));
        assert_eq!(default_port("kafka-3"), Some(9096));
        assert_eq!(default_port("kafka-3-controller"), Some(9097));
        assert_eq!(default_port("command-handler-2"), Some(9113));
        assert_eq!(default_port("graphql-endpoint-3"), Some(8908));
        assert_eq!(default_port("postgres-2"), None);
        assert_eq!(default_port("schema-registry-controller"), None);
        assert_eq!(default_port("nothing"), None);
        let p = Ports::default();
        assert_eq!(
            (p.listen("heartbeat"), p.local("kafka"), p.url("graphql-endpoint")),
            ("127.0.0.1:17888".into(), "localhost:9092".into(), "http://localhost:8888".into())
        );
    }

    #[test]
    fn free_defaults_are_kept_and_a_taken_one_moves_to_the_next_free_port() {
        let wants = ["postgres", "kafka", "kafka-controller", "graphql-endpoint"].map(want);
        let (p, moves) = run(&wants, &Ports::default(), false, &[]).unwrap();
        assert!(moves.is_empty() && p.moved().is_empty());
        assert_eq!(p.port("postgres"), 5432);

        // The machine's PostgreSQL holds 5432, and something holds 5433 too.
        let (p, moves) = run(&wants, &Ports::default(), false, &[5432, 5433]).unwrap();
        assert_eq!(p.port("postgres"), 5434);
        assert_eq!(
            moves,
            vec![Move { slot: "postgres".into(), from: 5432, to: 5434, holder: "holder-of-5432".into() }]
        );
        assert_eq!(moves[0].to_string(), "postgres: 5432 is in use by holder-of-5432; using 5434");
        assert_eq!(p.moved(), vec![("postgres".to_owned(), 5432, 5434)]);
    }

    #[test]
    fn a_moved_port_never_takes_another_slots_default_or_a_port_already_given() {
        // Kafka's client port is taken: 9093 is the controller's default, so the broker goes to 9094.
        let wants = ["kafka", "kafka-controller"].map(want);
        let (p, _) = run(&wants, &Ports::default(), false, &[9092]).unwrap();
        assert_eq!((p.port("kafka"), p.port("kafka-controller")), (9094, 9093));
        // Both taken: the controller must not land on the port the broker just got.
        let (p, moves) = run(&wants, &Ports::default(), false, &[9092, 9093]).unwrap();
        assert_eq!((p.port("kafka"), p.port("kafka-controller")), (9094, 9095));
        assert_eq!(moves.len(), 2);
        // A fixed slot (a process of ours keeps running there) is never given away.
        let wants = [Want { slot: "graphql-endpoint".into(), fixed: Some(8889) }, want("command-handler")];
        let mut recorded = Ports::default();
        recorded.set("command-handler", 8889);
        let (p, moves) = run(&wants, &recorded, false, &[]).unwrap();
        assert_eq!((p.port("graphql-endpoint"), p.port("command-handler")), (8889, 9103));
        assert!(moves.is_empty());
    }

    #[test]
    fn a_recorded_port_stays_while_it_is_free_and_the_default_comes_back_when_it_is_not() {
        let mut recorded = Ports::default();
        recorded.set("postgres", 5433);
        let (p, moves) = run(&[want("postgres")], &recorded, false, &[5432]).unwrap();
        assert_eq!((p.port("postgres"), moves.len()), (5433, 0));
        let (p, _) = run(&[want("postgres")], &recorded, false, &[5433]).unwrap();
        assert_eq!(p.port("postgres"), 5432);
    }

    #[test]
    fn strict_ports_fail_naming_the_port_and_its_holder() {
        let e = run(&[want("postgres")], &Ports::default(), true, &[5432]).unwrap_err().to_string();
        assert!(e.contains("port 5432 is in use by holder-of-5432") && e.contains("--strict-ports"), "{e}");
        assert!(run(&[want("postgres")], &Ports::default(), true, &[]).is_ok());
        // A port picked earlier does not count: strict means the default.
        let mut recorded = Ports::default();
        recorded.set("postgres", 5433);
        assert!(run(&[want("postgres")], &recorded, true, &[5432]).is_err());
    }

    #[test]
    fn the_table_round_trips_through_the_state_file_format() {
        let mut p = Ports::default();
        p.set("postgres", 5433);
        p.set("kafka-2-controller", 9195);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"{"kafka-2-controller":9195,"postgres":5433}"#);
        assert_eq!(serde_json::from_str::<Ports>(&text).unwrap(), p);
    }

    #[test]
    fn a_port_someone_listens_on_is_not_free_and_its_holder_is_named() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!is_free(port));
        let name = holder(port);
        assert!(name.contains(&format!("(pid {})", std::process::id())), "{name}");
    }

    #[test]
    fn listening_lines_give_their_port_and_inode_and_other_states_are_skipped() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 40147 1 0
   1: 0100007F:22B8 0100007F:C35A 01 00000000:00000000 00:00000000 00000000     0        0 51234 1 0
   2: 00000000000000000000000001000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 777 1 0
garbage line";
        assert_eq!(parse_listening(table), vec![(5432, 40147), (8888, 777)]);
        assert!(parse_listening("").is_empty());
    }

    #[test]
    fn the_parent_pid_survives_spaces_and_parentheses_in_the_name() {
        assert_eq!(parent_of_stat("1234 (java) S 99 1234 1234 0 -1"), Some(99));
        assert_eq!(parent_of_stat("77 (a (weird) name) R 5 77 77"), Some(5));
        assert_eq!(parent_of_stat("truncated"), None);
    }
}
