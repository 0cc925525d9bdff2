//! What `up` and `test` need before anything runs: Debian packages, and the service binaries.

use anyhow::{Context, bail};
use std::process::Command;

use crate::component::step;
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::postgres;
use crate::stack;

/// A Debian package something needs, and what for.
pub struct Need {
    pub package: &'static str,
    pub what: String,
}

/// Installs the Debian packages the stack needs when they are missing (as root); otherwise fails saying, for each,
/// what is missing and the command that installs it.
pub fn ensure_packages(endpoints: &Endpoints) -> anyhow::Result<()> {
    let mut needs = Vec::new();
    if !endpoints.external_database && postgres::server_bin().is_none() {
        needs.push(Need {
            package: "postgresql",
            what: "initdb and the PostgreSQL server, for the bank's database (or set DATABASE_URL)".into(),
        });
    }
    if !endpoints.external_kafka {
        let what = match crate::java::installed() {
            crate::java::Java::Missing => Some("Java 17 or newer, for Apache Kafka (or set KAFKA_BROKERS)".to_owned()),
            crate::java::Java::Found { major, .. } if major < crate::java::MIN_MAJOR => {
                Some(format!("Java 17 or newer, for Apache Kafka (`java` is Java {major}; or set KAFKA_BROKERS)"))
            }
            _ => None,
        };
        if let Some(what) = what {
            needs.push(Need { package: crate::java::PACKAGE, what });
        }
        if Command::new("mvn").arg("-v").output().is_err() {
            needs.push(Need { package: "maven", what: "mvn, to fetch Kafka's jars from Maven Central".into() });
        }
    }
    install(&needs)
}

/// What a non-root user is told when `needs` are missing.
pub fn missing_message(needs: &[Need]) -> String {
    let lines: Vec<String> =
        needs.iter().map(|n| format!("  - {}: sudo apt-get install {}", n.what, n.package)).collect();
    let mut all: Vec<&str> = needs.iter().map(|n| n.package).collect();
    all.dedup();
    format!(
        "missing:\n{}\non Debian or Ubuntu, all at once: `sudo apt-get install {}` (run as root, `cargo xtask up` \
         installs them itself); `cargo xtask doctor` lists what is there",
        lines.join("\n"),
        all.join(" ")
    )
}

/// Installs `needs` with apt as root, or fails with [`missing_message`].
pub fn install(needs: &[Need]) -> anyhow::Result<()> {
    apt(needs, false)
}

/// [`install`], with the packages' recommended packages too (Chromium's fonts, say).
pub fn install_with_recommends(needs: &[Need]) -> anyhow::Result<()> {
    apt(needs, true)
}

fn apt(needs: &[Need], recommends: bool) -> anyhow::Result<()> {
    if needs.is_empty() {
        return Ok(());
    }
    if !postgres::is_root() {
        bail!("{}", missing_message(needs));
    }
    let packages: Vec<&str> = needs.iter().map(|n| n.package).collect();
    step("apt", &format!("installing {}", packages.join(" ")));
    let ok = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q"])
            .args((!recommends).then_some("--no-install-recommends"))
            .args(&packages)
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        bail!("apt-get could not install {}", packages.join(" "));
    }
    Ok(())
}

/// Builds the service binaries.
pub fn build(paths: &Paths, release: bool, quiet: bool) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.root).args(["build", "--bins"]);
    for package in stack::ALL.iter().filter_map(|c| c.package()) {
        cmd.args(["-p", package]);
    }
    // The audit, which `cargo xtask audit` and `cargo xtask test` run.
    cmd.args(["-p", "bank-audit"]);
    if release {
        cmd.arg("--release");
    }
    if quiet {
        cmd.arg("--quiet");
    }
    step("build", &format!("cargo build ({})", if release { "release" } else { "debug" }));
    if !cmd.status().context("failed to run cargo")?.success() {
        bail!("building the services failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_with_what_it_is_for_and_the_command_that_installs_it() {
        let needs = [
            Need { package: "postgresql", what: "initdb and the PostgreSQL server".into() },
            Need { package: "openjdk-17-jre-headless", what: "Java 17 or newer (`java` is Java 11)".into() },
        ];
        let m = missing_message(&needs);
        assert!(m.contains("  - initdb and the PostgreSQL server: sudo apt-get install postgresql\n"), "{m}");
        assert!(m.contains("Java 11): sudo apt-get install openjdk-17-jre-headless"), "{m}");
        assert!(m.contains("`sudo apt-get install postgresql openjdk-17-jre-headless`"), "{m}");
        assert!(m.contains("as root, `cargo xtask up` installs them itself"), "{m}");
    }
}
