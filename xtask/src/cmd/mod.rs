//! One module per `cargo xtask` subcommand (and `nonroot`, a step of `test`).

pub mod audit;
pub mod chaos;
pub mod compose_up;
pub mod doctor;
pub mod down;
pub mod load_test;
pub mod logs;
pub mod nonroot;
pub mod restart;
pub mod status;
pub mod test;
pub mod up;
