//! `cargo xtask doctor`: what is installed and what is missing, which of the stack's ports are free or taken and
//! by what, and what `up` would do about each. Exit 0 only if `up` can succeed; reads and changes nothing.

use std::collections::HashSet;
use std::process::Command;

use crate::paths::Paths;
use crate::ports;
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
    findings.extend(ports_in_use(&state));
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
}

impl External {
    fn from_env() -> Self {
        let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
        Self { kafka: set("KAFKA_BROKERS"), database: set("DATABASE_URL") }
    }
}

fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some(crate::proc::plain(text.lines().next().unwrap_or("")).trim().to_owned())
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
        match crate::java::installed() {
            crate::java::Java::Missing => out.push(tool("java", None, crate::java::PACKAGE, root, "Apache Kafka")),
            crate::java::Java::Found { major, line } if major >= crate::java::MIN_MAJOR => {
                out.push(tool("java", Some(line), crate::java::PACKAGE, root, "Apache Kafka"));
            }
            java => out.push(Finding {
                what: "java".into(),
                found: format!("{}: sudo apt-get install {}", java.problem().unwrap_or_default(), crate::java::PACKAGE),
                blocks_up: true,
            }),
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

/// The port of every component `up` would run, and what holds it: free, a process of this stack (kept), Debian's
/// cluster as root (used), or another program (then `up` moves the component to the port shown).
fn ports_in_use(state: &State) -> Vec<Finding> {
    let (placed, moves) = match crate::cmd::up::preview_ports() {
        Ok(plan) => plan,
        Err(e) => return vec![Finding { what: "ports".into(), found: format!("{e:#}"), blocks_up: true }],
    };
    let ours: HashSet<u32> = state.components.iter().filter_map(|r| r.pid).collect();
    placed
        .iter()
        .map(|(slot, port)| {
            let what = format!("port {port}");
            if let Some(m) = moves.iter().find(|m| m.slot == slot) {
                return Finding {
                    what: format!("port {}", m.from),
                    found: format!(
                        "in use by {}, which `up` did not start: `up` puts {slot} on {} (with --strict-ports it stops)",
                        m.holder, m.to
                    ),
                    blocks_up: false,
                };
            }
            let default = ports::default_port(slot).unwrap_or(port);
            if ports::is_free(port) {
                let found = if port == default {
                    format!("free (for {slot})")
                } else {
                    format!("free (for {slot}, recorded when its default {default} was taken)")
                };
                return Finding { what, found, blocks_up: false };
            }
            let pid = ports::holder_pid(port);
            if pid.is_some_and(|p| ours.contains(&p) || ports::parent_in(p, &ours)) {
                return Finding { what, found: format!("{slot}, started by `up`: kept"), blocks_up: false };
            }
            let by = ports::holder(port);
            if slot == "postgres" && postgres::is_root() && by.starts_with("postgres") {
                return Finding {
                    what,
                    found: format!("the system PostgreSQL cluster ({by}): `up` uses it as root"),
                    blocks_up: false,
                };
            }
            // A port that cannot move (Debian's cluster's, as root) held by something else.
            Finding { what, found: format!("{slot} must listen here, but {by} holds it: stop that"), blocks_up: true }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_sequences_are_dropped() {
        assert_eq!(crate::proc::plain("\u{1b}[1mApache Maven 3.8.7\u{1b}[m"), "Apache Maven 3.8.7");
        assert_eq!(crate::proc::plain("plain\ttext\u{1b}"), "plaintext");
    }

    #[test]
    fn a_missing_tool_blocks_up_only_when_up_cannot_install_it() {
        assert!(!tool("mvn", None, "maven", true, "x").blocks_up, "root: up installs it");
        let f = tool("mvn", None, "maven", false, "x");
        assert!(f.blocks_up && f.found.contains("sudo apt-get install maven"), "{f:?}");
        assert!(!tool("mvn", Some("Apache Maven 3.8".into()), "maven", false, "x").blocks_up);
    }
}
