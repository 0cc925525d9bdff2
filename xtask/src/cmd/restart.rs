//! `cargo xtask restart`: Kafka or PostgreSQL in place (same data, same address), for resilience tests and
//! operators; `kafka-2` restarts only the second broker of a cluster.

use anyhow::bail;

use crate::paths::Paths;
use crate::stack;
use crate::state::State;

pub fn restart(name: &str) -> anyhow::Result<()> {
    let paths = Paths::new(false)?;
    let mut state = State::load(&paths.state_file());
    match stack::find(name) {
        Some(c) => c.restart_instance(&paths, &mut state, name),
        None => bail!("cannot restart `{name}`: only kafka and postgres can be restarted in place"),
    }
}
