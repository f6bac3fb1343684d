//! `sandbox`: the k8s-sandbox container's entrypoint.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use demo_common::config::{EXIT_BAD_CONFIG, ProcessEnv, Settings};
use demo_common::status::DEFAULT_STATUS_DIR;
use sandbox::Config;

/// Kafka in a throwaway k3d cluster, tuned by a vibectl agent.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// All phases: k3d cluster, Kafka, port-forward, agent loop (the default).
    Run,
    /// Only the agent loop, for stacks where Kafka runs elsewhere; marks
    /// kafka_ready once KAFKA_BROKER accepts connections.
    Agent,
    /// Exit 0 when Kafka is reachable (STATUS_DIR/kafka_ready exists), else 1.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cmd = cli.cmd.unwrap_or(Cmd::Run);
    if let Cmd::Healthcheck = cmd {
        return healthcheck();
    }
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    demo_common::telemetry::init();
    match run(cmd, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            Cmd::Agent => sandbox::run_agent_only(config, demo_common::shutdown::signal())
                .await
                .context("agent loop"),
            _ => sandbox::run(config, demo_common::shutdown::signal())
                .await
                .context("sandbox"),
        }
    })
}

/// Quick and quiet: Compose runs this every few seconds.
fn healthcheck() -> ExitCode {
    let status_dir = match Settings::new(&ProcessEnv).string("STATUS_DIR", DEFAULT_STATUS_DIR) {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    if sandbox::is_ready(&status_dir) {
        println!("ready");
        ExitCode::SUCCESS
    } else {
        println!("not ready: no kafka_ready in {}", status_dir.display());
        ExitCode::FAILURE
    }
}
