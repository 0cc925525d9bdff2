//! Tests that need two services at once (`tests/`), against the real Kafka, PostgreSQL and schema registry of
//! `cargo xtask up`. A service's own integration tests stay in its crate; a test lands here when it checks what
//! one service does through another one's output (the generator's commands in the handler's tables; the gateway's
//! API, subscriptions and projection with a real command-handler answering its commands: `tests/gateway_*.rs`,
//! sharing the private-bank fixture of `tests/common/`).
//!
//! The library is empty: a package needs a target, and the tests are the point.
