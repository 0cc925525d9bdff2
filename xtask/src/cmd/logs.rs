//! `cargo xtask logs`: where the logs are, or the last lines of one component's log.

use anyhow::Context;

use crate::paths::Paths;
use crate::stack;
use crate::state::State;

pub fn logs(name: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let paths = Paths::new(false)?;
    let state = State::load(&paths.state_file());
    match name {
        None => {
            println!("{}", paths.logs().join("latest").display());
            for r in state.components.iter().filter(|r| !r.log.as_os_str().is_empty()) {
                println!("  {:<18} {}", r.name, r.log.display());
            }
        }
        Some(name) => {
            let r = state.get(name).with_context(|| {
                format!(
                    "no component named {name}; known: {}",
                    state.components.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            let log = stack::find(name).map_or_else(|| r.log.clone(), |c| c.log(r));
            println!("{}", crate::proc::tail(&log, lines));
        }
    }
    Ok(())
}
