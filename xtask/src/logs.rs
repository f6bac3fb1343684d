//! `cargo xtask logs [service] [-f]`: a service's logs through Compose, or the
//! agent's log (`agent`) from the status volume.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use demo_common::status::AGENT_LOG_FILE;
use xshell::Shell;

use crate::docker::{self, Api};
use crate::project::Instance;
use crate::stack::{self, SERVICES, Stack};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One of k8s-sandbox, producer, consumer, overseer, or `agent` for what
    /// the agent loop ran and what vibectl answered. All services when absent.
    pub service: Option<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// How many recent lines to show first.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    #[command(flatten)]
    pub instance: Instance,
    /// Compose override file(s) the stack was started with.
    #[arg(long = "compose-override", value_name = "FILE")]
    pub overrides: Vec<PathBuf>,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        match self.service.as_deref() {
            Some("agent") => self.agent_log(),
            Some(s) if !SERVICES.contains(&s) => bail!(
                "unknown service {s:?}: choose one of {}, or agent",
                SERVICES.join(", ")
            ),
            service => {
                let stack = Stack::new(
                    docker::require_compose(sh)?,
                    &self.instance,
                    &self.overrides,
                );
                let tail = self.tail.to_string();
                let mut args = vec!["logs", "--tail", &tail];
                if self.follow {
                    args.push("--follow");
                }
                args.extend(service);
                stack.cmd(sh, &args).run().context("show logs")?;
                Ok(())
            }
        }
    }

    fn agent_log(&self) -> anyhow::Result<()> {
        let api = Api::connect().context("connect to Docker")?;
        let mut shown = 0usize;
        loop {
            let states = stack::service_states(&api, &self.instance.project)?;
            let Some(reader) = stack::status_reader(&states) else {
                bail!("the demo is not running (no container to read {AGENT_LOG_FILE} through)");
            };
            let text = stack::read_status_file(&api, &reader.container, AGENT_LOG_FILE)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = if shown == 0 {
                lines.len().saturating_sub(self.tail)
            } else {
                shown.min(lines.len())
            };
            for line in &lines[start..] {
                println!("{line}");
            }
            shown = lines.len();
            if !self.follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
