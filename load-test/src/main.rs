//! Open-loop load tester (spec section 7). Not written yet: it needs the pipeline and the GraphQL gateway.

use clap::Parser;

#[derive(Parser)]
#[command(name = "load-test", about = "Open-loop load test of a running Open Bank (not implemented yet)")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    anyhow::bail!("the load test is not implemented yet; it arrives after the pipeline and the GraphQL gateway")
}
