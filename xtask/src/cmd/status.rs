//! `cargo xtask status`: a table of components with pid, address and health.

use crate::paths::Paths;
use crate::stack;
use crate::state::State;

/// Prints a table of components; returns whether all are healthy.
pub fn status() -> anyhow::Result<bool> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    if state.components.is_empty() {
        eprintln!("nothing is up; start the stack with `cargo xtask up`");
        return Ok(false);
    }
    println!("{:<18} {:>8}  {:<22} {:<8} LOG", "COMPONENT", "PID", "ADDRESS", "HEALTH");
    let mut all = true;
    for r in &state.components {
        let ok = stack::healthy(r);
        all &= ok;
        let pid = r.pid.map_or_else(|| if r.managed { "-".into() } else { "extern".into() }, |p| p.to_string());
        let health = match (ok, r.finished()) {
            (true, true) => "done",
            (true, false) => "healthy",
            (false, _) => "DOWN",
        };
        println!("{:<18} {:>8}  {:<22} {:<8} {}", r.name, pid, r.address, health, r.log.display());
    }
    Ok(all)
}

/// Whether a previous `up` left a fully healthy stack (without printing).
pub fn status_quiet() -> bool {
    let Ok(paths) = Paths::new(false) else { return false };
    let state = State::load(&paths.state_file());
    !state.components.is_empty() && state.components.iter().all(stack::healthy)
}
