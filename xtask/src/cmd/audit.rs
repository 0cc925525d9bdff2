//! `cargo xtask audit`: the bank's invariants on the running stack, checked by `bank-audit`.

use anyhow::Context;
use std::process::Command;

use crate::env::Endpoints;
use crate::paths::Paths;
use crate::setup;

/// Runs `bank-audit` against the stack; returns its exit code.
pub fn audit(settle_secs: u64) -> anyhow::Result<i32> {
    let paths = Paths::new(false)?;
    let endpoints = Endpoints::resolve(&paths)?;
    let bin = paths.bin("bank-audit");
    if !bin.exists() {
        setup::build(&paths, false, true)?;
    }
    let mut cmd = Command::new(&bin);
    endpoints.apply(&mut cmd);
    cmd.env("AUDIT_SETTLE_SECS", settle_secs.to_string());
    let status = cmd.status().with_context(|| format!("failed to run {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}
