//! `overseer`: turns the load generator's stats into `latency.txt`,
//! `metrics.json` and a live dashboard. `overseer healthcheck` is what the
//! Compose healthcheck runs (the image has no curl).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use demo_common::config::{EXIT_BAD_CONFIG, ProcessEnv};
use overseer::Config;

/// Latency for the agent, metrics, and a live dashboard.
#[derive(Parser)]
#[command(name = "overseer", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Poll the load generator, write the status files, serve the dashboard (the default).
    Run,
    /// Exit 0 when this container's dashboard answers /healthz, else 1.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Healthcheck => runtime.block_on(healthcheck(&config)),
        Cmd::Run => {
            demo_common::telemetry::init();
            match runtime.block_on(overseer::run(config, demo_common::shutdown::signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let mut message = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        message.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    tracing::error!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn healthcheck(config: &Config) -> ExitCode {
    let url = format!("http://127.0.0.1:{}/healthz", config.dashboard_addr.port());
    let answer = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(client) => client.get(&url).send().await,
        Err(e) => {
            println!("not healthy: {e}");
            return ExitCode::FAILURE;
        }
    };
    match answer {
        Ok(r) if r.status().is_success() => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("not healthy: {url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("not healthy: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
