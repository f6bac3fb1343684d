//! `overseer`: turns the load generator's stats into `latency.txt`,
//! `metrics.json` and a live dashboard. `overseer healthcheck` is what the
//! Compose healthcheck runs (the image has no curl).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use demo_common::config::{EXIT_BAD_CONFIG, ProcessEnv};
use overseer::Config;

/// Latency for the agent, metrics, and a live dashboard. Settings come from
/// environment variables (see the README).
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
    /// Exit 0 when a running overseer's /healthz answers 200, else 1.
    Healthcheck {
        /// What to probe; default: /healthz on DASHBOARD_ADDR's port (a
        /// wildcard host becomes 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
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
    let outcome = match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Run => {
            demo_common::telemetry::init();
            run(config)
        }
        Cmd::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| healthz_url(config.dashboard_addr));
            healthcheck(&url)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()
        .context("start the async runtime")?
        .block_on(overseer::run(config, demo_common::shutdown::signal()))
        .context("run the overseer")
}

/// `/healthz` of the overseer listening on `addr`, as seen from the same host.
fn healthz_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}/healthz", SocketAddr::new(ip, addr.port()))
}

fn healthcheck(url: &str) -> anyhow::Result<()> {
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("build the HTTP client")?;
        let status = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .status();
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
        Ok(())
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(probe)?;
    println!("healthy: {url}");
    Ok(())
}
