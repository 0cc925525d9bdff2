//! `cargo xtask logs`: where the logs are, or the last lines of one component's log.

use anyhow::Context;
use std::path::Path;

use crate::component;
use crate::paths::Paths;
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
            let log = component::find(name).map_or_else(|| r.log.clone(), |c| c.log(r));
            println!("{}", tail(&log, lines));
        }
    }
    Ok(())
}

/// The last `n` lines of a file (empty when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines.get(lines.len().saturating_sub(n)..).unwrap_or_default().join("\n")
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
}
