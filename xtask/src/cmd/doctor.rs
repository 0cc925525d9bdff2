//! `cargo xtask doctor`: what is installed and what is missing, which of the stack's ports are free or taken and
//! by what, and what `up` would do about each. Exit 0 only if `up` can succeed; reads and changes nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use bank_core::ports;

use crate::paths::Paths;
use crate::postgres;
use crate::state::State;

/// One line of the report: what was checked, what was found, and whether it stops `up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub found: String,
    pub blocks_up: bool,
}

pub fn doctor() -> anyhow::Result<i32> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    let root = postgres::is_root();
    let external = External::from_env();
    let mut findings = tools(root, &external);
    findings.extend(ports_in_use(&state, root, &external));
    findings.push(kafka_jars(&paths, &external));
    println!("{:<22} {:<8} FOUND / WHAT `up` WOULD DO", "CHECK", "");
    for f in &findings {
        println!("{:<22} {:<8} {}", f.what, if f.blocks_up { "PROBLEM" } else { "ok" }, f.found);
    }
    let problems = findings.iter().filter(|f| f.blocks_up).count();
    if problems == 0 {
        println!(
            "\n`cargo xtask up` can start the stack{}.",
            if root { " (as root it installs what is missing)" } else { "" }
        );
        Ok(0)
    } else {
        println!("\n{problems} problem(s) stop `cargo xtask up`; each line above says what to do.");
        Ok(1)
    }
}

/// Infrastructure chosen through the environment instead of started by `up`.
#[derive(Debug, Default, Clone, Copy)]
pub struct External {
    pub kafka: bool,
    pub database: bool,
    pub registry: bool,
}

impl External {
    fn from_env() -> Self {
        let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
        Self { kafka: set("KAFKA_BROKERS"), database: set("DATABASE_URL"), registry: set("SCHEMA_REGISTRY_URL") }
    }
}

fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some(plain(text.lines().next().unwrap_or("")).trim().to_owned())
}

/// `line` without terminal colour sequences (`ESC [ … letter`) or other control characters.
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// The major version in `java -version`'s first line (`openjdk version "17.0.9" …`, or `"1.8.0_392"` for 8).
pub fn java_major(first_line: &str) -> Option<u32> {
    let quoted = first_line.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '_', '-', '+']);
    match parts.next()?.parse::<u32>().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

/// A tool `up` needs: found, installable by `up` (as root), or what to install.
fn tool(what: &str, version: Option<String>, package: &str, root: bool, needed_for: &str) -> Finding {
    match version {
        Some(v) => Finding { what: what.into(), found: v, blocks_up: false },
        None if root => Finding {
            what: what.into(),
            found: format!("missing; `up` installs it as root (apt-get install {package}), for {needed_for}"),
            blocks_up: false,
        },
        None => Finding {
            what: what.into(),
            found: format!("missing, needed for {needed_for}: sudo apt-get install {package}"),
            blocks_up: true,
        },
    }
}

fn tools(root: bool, external: &External) -> Vec<Finding> {
    let mut out = Vec::new();
    if !external.database {
        let pg = postgres::server_bin().map(|(v, bin)| format!("PostgreSQL {v} ({})", bin.display()));
        let mut f = tool("postgresql (initdb)", pg, "postgresql", root, "the bank's database");
        if !root && !f.blocks_up {
            f.found.push_str("; as a non-root user `up` runs a private cluster under .openbank/data/postgres");
        }
        out.push(f);
    }
    if !external.kafka {
        let java = version_of("java", &["-version"]);
        match java.as_deref().map(java_major) {
            Some(Some(major)) if major < 17 => out.push(Finding {
                what: "java".into(),
                found: format!(
                    "Java {major} found; Kafka needs 17 or newer: sudo apt-get install openjdk-17-jre-headless"
                ),
                blocks_up: true,
            }),
            _ => out.push(tool("java", java, "openjdk-17-jre-headless", root, "Apache Kafka")),
        }
        out.push(tool("mvn", version_of("mvn", &["-B", "-v"]), "maven", root, "fetching Kafka from Maven Central"));
    }
    let node = version_of("node", &["--version"]).zip(version_of("npm", &["--version"]));
    let node = node.map(|(n, m)| format!("node {n}, npm {m}"));
    out.push(tool("node, npm", node, "nodejs npm", root, "building the web UI"));
    // Only `cargo xtask test` needs these; they never stop `up`.
    for (what, program, args, package) in [
        ("chromium (tests)", "chromium", &["--version"][..], "chromium"),
        ("docker-compose (tests)", "docker-compose", &["version"][..], "docker-compose"),
    ] {
        let mut f = tool(what, version_of(program, args), package, root, "`cargo xtask test`");
        f.blocks_up = false;
        out.push(f);
    }
    out
}

fn kafka_jars(paths: &Paths, external: &External) -> Finding {
    let libs = crate::kafka::libs(paths);
    let found = if external.kafka {
        "KAFKA_BROKERS is set: `up` uses that Kafka".into()
    } else if libs.join(".complete").exists() {
        format!("cached in {}", libs.display())
    } else {
        format!("not cached; `up` fetches them with Maven into {}", libs.display())
    };
    Finding { what: "kafka jars".into(), found, blocks_up: false }
}

/// The stack's default ports, each with the component that listens on it.
fn stack_ports(external: &External) -> Vec<(&'static str, u16)> {
    let port = |addr: &str| addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).unwrap_or(0);
    let mut out = Vec::new();
    if !external.database {
        out.push(("postgres", port(ports::POSTGRES)));
    }
    if !external.kafka {
        out.push(("kafka", port(ports::KAFKA_BROKERS)));
        out.push(("kafka controller", port(ports::KAFKA_CONTROLLER)));
    }
    if !external.registry {
        out.push(("schema-registry", port(ports::SCHEMA_REGISTRY_LISTEN)));
    }
    out.extend([
        ("heartbeat", port(ports::HEARTBEAT_LISTEN)),
        ("command-generator", port(ports::COMMAND_GENERATOR_LISTEN)),
        ("command-handler", port(ports::COMMAND_HANDLER_LISTEN)),
        ("graphql-endpoint", port(ports::GRAPHQL_LISTEN)),
    ]);
    out
}

fn ports_in_use(state: &State, root: bool, external: &External) -> Vec<Finding> {
    let listening = listening_sockets();
    let owners = socket_owners(&listening.values().flatten().copied().collect());
    let ours: HashSet<u32> = state.components.iter().filter_map(|r| r.pid).collect();
    stack_ports(external)
        .into_iter()
        .map(|(component, port)| {
            let what = format!("port {port}");
            let Some(inodes) = listening.get(&port) else {
                return Finding { what, found: format!("free (for {component})"), blocks_up: false };
            };
            let holder = inodes.iter().find_map(|i| owners.get(i)).copied();
            let (name, pid) = match holder {
                Some(pid) => (process_name(pid), Some(pid)),
                None => ("a process of another user".to_owned(), None),
            };
            let by = pid.map_or_else(|| name.clone(), |p| format!("{name} (pid {p})"));
            if pid.is_some_and(|p| ours.contains(&p) || parent_in(p, &ours)) {
                return Finding { what, found: format!("{component}, started by `up`: kept"), blocks_up: false };
            }
            if component == "postgres" && root && name.starts_with("postgres") {
                return Finding {
                    what,
                    found: format!("the system PostgreSQL cluster ({by}): `up` uses it as root"),
                    blocks_up: false,
                };
            }
            Finding {
                what,
                found: format!(
                    "in use by {by}, which `up` did not start: {component} cannot listen there; stop it, or point \
                     the stack elsewhere (see README)"
                ),
                blocks_up: true,
            }
        })
        .collect()
}

/// Whether `pid`'s parent is one of `pids` (a PostgreSQL or Kafka child of a process `up` started).
fn parent_in(pid: u32, pids: &HashSet<u32>) -> bool {
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

fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// Listening TCP sockets (IPv4 and IPv6): port → socket inodes.
fn listening_sockets() -> HashMap<u16, Vec<u64>> {
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
fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, u32> {
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
    fn colour_sequences_are_dropped() {
        assert_eq!(plain("\u{1b}[1mApache Maven 3.8.7\u{1b}[m"), "Apache Maven 3.8.7");
        assert_eq!(plain("plain\ttext\u{1b}"), "plaintext");
    }

    #[test]
    fn java_versions_old_and_new_style() {
        assert_eq!(java_major(r#"openjdk version "17.0.9" 2023-10-17"#), Some(17));
        assert_eq!(java_major(r#"openjdk version "21" 2023-09-19"#), Some(21));
        assert_eq!(java_major(r#"java version "1.8.0_392""#), Some(8));
        assert_eq!(java_major("no version here"), None);
    }

    #[test]
    fn the_parent_pid_survives_spaces_and_parentheses_in_the_name() {
        assert_eq!(parent_of_stat("1234 (java) S 99 1234 1234 0 -1"), Some(99));
        assert_eq!(parent_of_stat("77 (a (weird) name) R 5 77 77"), Some(5));
        assert_eq!(parent_of_stat("truncated"), None);
    }

    #[test]
    fn a_missing_tool_blocks_up_only_when_up_cannot_install_it() {
        assert!(!tool("mvn", None, "maven", true, "x").blocks_up, "root: up installs it");
        let f = tool("mvn", None, "maven", false, "x");
        assert!(f.blocks_up && f.found.contains("sudo apt-get install maven"), "{f:?}");
        assert!(!tool("mvn", Some("Apache Maven 3.8".into()), "maven", false, "x").blocks_up);
    }
}
