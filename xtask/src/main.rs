//! `cargo xtask`: the Open Bank dev stack without Docker.

mod cmd;
mod component;
mod compose;
mod crash;
mod env;
mod frontend;
mod fuzz;
mod http;
mod instance;
mod java;
mod kafka;
mod kafka_auth;
mod paths;
mod ports;
mod postgres;
mod proc;
mod service;
mod setup;
mod stack;
mod state;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Open Bank dev stack: PostgreSQL, Apache Kafka (KRaft), schema registry and services"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build and start (or reuse) everything, wait until healthy, print the URLs
    Up {
        /// Run release builds of the services
        #[arg(long)]
        release: bool,
        /// Kafka brokers: 1, or a cluster of 3 (replication 3, min.insync.replicas 2); default: as running, else 1
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3))]
        brokers: Option<u32>,
        /// command-handler instances (ports 9103, 9113, ...); default: as running, else 1
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
        handlers: Option<u32>,
        /// graphql-endpoint instances (ports 8888, 8898, ...); default: as running, else 1
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
        gateways: Option<u32>,
        /// Fail when a default port is in use by another program (naming it) instead of picking a free port
        #[arg(long)]
        strict_ports: bool,
    },
    /// Stop what `up` started
    Down {
        /// Also delete data and logs
        #[arg(long)]
        clean: bool,
    },
    /// Table of components with pid, address and health; exit 0 only if all are healthy
    Status,
    /// What is installed or missing, which ports are free or taken and by what; exit 0 only if `up` can succeed
    Doctor,
    /// Where the logs are, or the last lines of one component's log
    Logs {
        component: Option<String>,
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
    /// Check the bank's invariants on the running stack (money conserved, one result per command, limits)
    Audit {
        /// Longest wait for the handler to catch up and the outbox to drain, in seconds
        #[arg(long, default_value_t = 60)]
        settle_secs: u64,
    },
    /// Start the stack with release builds and run the load test: `cargo xtask load-test [run|pipeline|anchor] [flags]`
    LoadTest {
        /// Passed to the load tester (see load-test/README.md)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restart kafka or postgres in place (used by the resilience tests); `kafka-2` restarts one broker
    Restart { component: String },
    /// Load through the API and the heartbeat while services, PostgreSQL and Kafka are killed and restarted and
    /// poison records are injected; then drain, audit, and check every confirmed transfer landed exactly once
    Chaos {
        /// Seconds of load and faults
        #[arg(long, default_value_t = 120)]
        duration: u64,
        /// Seed of the fault schedule and the load (default: from the clock, printed)
        #[arg(long)]
        seed: Option<u64>,
        /// Transfers per second through the GraphQL API
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Heartbeats per second (each becomes a command) during the run
        #[arg(long, default_value_t = 100)]
        heartbeat_rate: u32,
        /// Run what `cargo xtask test` runs instead: a 60 s chaos run, then two command-handler instances under
        /// crossing transfers
        #[arg(long)]
        ci: bool,
    },
    /// Check docker-compose.yml and the Dockerfile against the code (what a real run cannot show)
    Compose,
    /// The whole bank in containers for real: build, `docker compose up` with no .env, a round trip, the web UI in
    /// Chromium, the load-test profile, the audit, the cluster with a broker stopped, `down -v`
    #[command(name = "compose-up")]
    ComposeUp,
    /// As root, with the stack up: the non-root step of `test` alone (an ordinary user's `up` with every default
    /// port taken, `status`, a GraphQL round trip, `down`)
    #[command(name = "test-non-root")]
    TestNonRoot,
    /// Install what is missing, start the stack, run every test, stop what was started
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`
        #[arg(long)]
        no_lint: bool,
        /// Leave the stack running afterwards
        #[arg(long)]
        keep_up: bool,
    },
}

/// One `ok` / `FAIL` line per check; exit code 0 only if all passed.
fn print_checks(checks: &[(String, bool)]) -> i32 {
    for (name, ok) in checks {
        eprintln!("{} {name}", if *ok { "ok  " } else { "FAIL" });
    }
    i32::from(!checks.iter().all(|(_, ok)| *ok))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { release, brokers, handlers, gateways, strict_ports } => {
            if brokers == Some(2) {
                eprintln!("error: --brokers is 1 or 3 (a quorum of two nodes survives no failure)");
                return ExitCode::FAILURE;
            }
            let opts = cmd::up::UpOptions { release, quiet_build: false, brokers, handlers, gateways, strict_ports };
            cmd::up::up(&opts).map(|_| 0)
        }
        Cmd::Down { clean } => cmd::down::down(clean).map(|_| 0),
        Cmd::Status => cmd::status::status().map(|ok| if ok { 0 } else { 1 }),
        Cmd::Doctor => cmd::doctor::doctor(),
        Cmd::Logs { component, lines } => cmd::logs::logs(component.as_deref(), lines).map(|()| 0),
        Cmd::Audit { settle_secs } => cmd::audit::audit(settle_secs),
        Cmd::LoadTest { args } => cmd::load_test::load_test(&args),
        Cmd::Restart { component } => cmd::restart::restart(&component).map(|()| 0),
        Cmd::Chaos { ci: true, .. } => cmd::chaos::ci_checks().map(|checks| print_checks(&checks)),
        Cmd::Chaos { duration, seed, rate, heartbeat_rate, ci: false } => {
            cmd::chaos::chaos(&cmd::chaos::ChaosOptions { duration, seed, rate, heartbeat_rate })
        }
        Cmd::Compose => paths::Paths::new(false).map(|p| compose::report(&compose::checks(&p))),
        Cmd::ComposeUp => {
            paths::Paths::new(false).and_then(|p| cmd::compose_up::run(&p)).map(|outcome| print_checks(&outcome.checks))
        }
        Cmd::TestNonRoot => {
            paths::Paths::new(false).and_then(|p| cmd::nonroot::run(&p)).map(|outcome| print_checks(&outcome.checks))
        }
        Cmd::Test { no_lint, keep_up } => cmd::test::run(&cmd::test::TestOptions { lint: !no_lint, keep_up }),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
