//! `cargo xtask status [--json]`: each service's state and health, the
//! sandbox's phases, and the latest metrics.json.

use anyhow::Context;
use demo_common::stats::MetricsSnapshot;
use demo_common::status::{METRICS_FILE, Phase};
use serde::Serialize;
use xshell::Shell;

use crate::docker::Api;
use crate::project::Instance;
use crate::stack::{self, ServiceState};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: Instance,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    running: bool,
    services: Vec<ServiceState>,
    phases_done: Vec<Phase>,
    metrics: Option<MetricsSnapshot>,
}

impl Args {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        let api = Api::connect().context("connect to Docker")?;
        let services = stack::service_states(&api, &self.instance.project)?;
        let reader = stack::status_reader(&services);
        let mut phases_done = Vec::new();
        let mut metrics = None;
        if let Some(r) = reader {
            for phase in Phase::ALL {
                if stack::read_status_file(&api, &r.container, phase.file_name())?.is_some() {
                    phases_done.push(phase);
                }
            }
            metrics = stack::read_status_file(&api, &r.container, METRICS_FILE)?
                .and_then(|b| serde_json::from_slice(&b).ok());
        }
        let status = Status {
            running: reader.is_some(),
            services,
            phases_done,
            metrics,
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", render(&status));
        }
        Ok(())
    }
}

fn render(s: &Status) -> String {
    if s.services.is_empty() {
        return "the demo is not running (`cargo xtask demo` starts it)\n".into();
    }
    let mut out = String::new();
    for svc in &s.services {
        out.push_str(&format!(
            "{:12} {:10} {:10} {}\n",
            svc.service, svc.state, svc.health, svc.container
        ));
    }
    let phases: Vec<&str> = s.phases_done.iter().map(|p| p.describe()).collect();
    out.push_str(&format!(
        "phases done: {}\n",
        if phases.is_empty() {
            "none".into()
        } else {
            phases.join(", ")
        }
    ));
    match &s.metrics {
        Some(m) => out.push_str(&format!(
            "metrics: {}\n",
            crate::demo::live_line(Some(m), None)
        )),
        None => out.push_str("metrics: none yet\n"),
    }
    out
}
