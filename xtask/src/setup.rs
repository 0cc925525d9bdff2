//! What `up` and `test` need before anything runs: Debian packages, and the service binaries.

use anyhow::{Context, bail};
use std::process::Command;

use crate::component::{self, step};
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::postgres;

/// Installs Debian packages the stack needs when they are missing (as root); otherwise says what to install.
pub fn ensure_packages(endpoints: &Endpoints) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !endpoints.external_database && postgres::server_bin().is_none() {
        missing.push("postgresql");
    }
    if !endpoints.external_kafka {
        if Command::new("java").arg("-version").output().is_err() {
            missing.push("openjdk-17-jre-headless");
        }
        if Command::new("mvn").arg("-v").output().is_err() {
            missing.push("maven");
        }
    }
    install(&missing)
}

/// Installs Debian's `docker-compose` (for the compose check of `cargo xtask test`) when it is missing.
pub fn ensure_compose() -> anyhow::Result<()> {
    let missing = Command::new("docker-compose").arg("version").output().is_err();
    install(if missing { &["docker-compose"] } else { &[] })
}

fn install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !postgres::is_root() {
        bail!("missing packages: {}; install them (sudo apt-get install {})", packages.join(", "), packages.join(" "));
    }
    step("apt", &format!("installing {}", packages.join(" ")));
    let ok = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
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
    for package in component::ALL.iter().filter_map(|c| c.package()) {
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
