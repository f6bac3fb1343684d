//! `cargo xtask`: the demo's orchestration CLI. Each subcommand is a module
//! with an `Args` struct whose `run` reads as a checklist of steps.

mod apikey;
mod bench;
mod build;
mod clean;
mod demo;
mod docker;
mod down;
mod gid;
mod knobs;
mod logs;
mod prereqs;
mod project;
mod stack;
mod status;
mod test;

use std::path::Path;

use anyhow::Context;
use clap::{Parser, Subcommand};
use xshell::Shell;

/// Run a Kafka-tuning LLM agent demo in a throwaway k3d sandbox.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the demo: check, build, start, wait until ready, then watch (Ctrl+C removes it all).
    Demo(Box<demo::Args>),
    /// Stop the services but keep the cluster for a fast restart.
    Down(down::Args),
    /// Show a service's logs, or the agent's (`agent`).
    Logs(logs::Args),
    /// Show each service's health and the latest metrics.
    Status(status::Args),
    /// Run a benchmark and print its ratios against in-run baselines.
    Bench(bench::Args),
    /// Build the demo's images (producer/consumer, overseer, sandbox).
    Build(build::Args),
    /// Check that this machine can run the demo, and say what to fix.
    CheckPrereqs(prereqs::Args),
    /// Remove everything the demo created (containers, k3d cluster, networks, volumes).
    Clean(clean::Args),
    /// Prepare what the tests need (first run only), then run every check and test.
    Test(test::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new().context("start shell")?;
    // Every command works from the repository root, wherever cargo ran it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    sh.change_dir(root);
    match cli.cmd {
        Cmd::Demo(args) => args.run(&sh),
        Cmd::Down(args) => args.run(&sh),
        Cmd::Logs(args) => args.run(&sh),
        Cmd::Status(args) => args.run(&sh),
        Cmd::Bench(args) => args.run(&sh),
        Cmd::Build(args) => args.run(&sh),
        Cmd::CheckPrereqs(args) => args.run(&sh),
        Cmd::Clean(args) => args.run(&sh),
        Cmd::Test(args) => args.run(&sh),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks flag and group definitions only when a command is used;
    /// this checks every subcommand at once.
    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
