//! `cargo xtask demo`: check the machine, get the API key, build the images,
//! start the stack, wait for each phase with visible progress, say where to
//! look, then stay attached with a live line until Ctrl+C, which removes
//! everything.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use demo_common::stats::MetricsSnapshot;
use demo_common::status::{self, AgentLogLine, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use xshell::Shell;

use crate::build::show;
use crate::docker::{self, Api};
use crate::knobs::Knobs;
use crate::project::Instance;
use crate::stack::{self, ServiceState, Stack};
use crate::{apikey, build, clean, prereqs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: Instance,
    #[command(flatten)]
    pub knobs: Knobs,
    #[command(flatten)]
    pub build: build::Args,
    /// Use the images already built instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Return once everything is ready instead of staying attached.
    #[arg(long)]
    pub detach: bool,
    /// Compose file(s) layered over compose.yml (the tests use one to stand in
    /// for what cannot run on a test machine).
    #[arg(long = "compose-override", value_name = "FILE")]
    pub overrides: Vec<PathBuf>,
    /// Give up waiting for readiness after this many seconds.
    #[arg(long, default_value_t = 1500)]
    pub timeout_s: u64,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        self.knobs.validate()?;
        let interrupted = watch_interrupts()?;
        let gid = check_prereqs(sh, self.knobs.dashboard_port)?;
        let key = apikey::obtain()?;
        let api = Api::connect().context("connect to Docker")?;
        if !self.no_build {
            build::build_all(sh, &api, &self.build).context("build the images")?;
        }
        let mut stack = Stack::new(
            docker::require_compose(sh)?,
            &self.instance,
            &self.overrides,
        );
        stack.env.extend(self.knobs.env(&self.instance.cluster));
        stack.env.push(("DOCKER_GID".into(), gid.to_string()));
        stack.env.push((
            "DOCKER_SOCKET".into(),
            docker::daemon_side_socket(&api.endpoint)
                .display()
                .to_string(),
        ));
        stack
            .env
            .push(("DEMO_IMAGE_PREFIX".into(), self.build.image_prefix.clone()));
        stack
            .env
            .push(("DEMO_IMAGE_TAG".into(), build::IMAGE_TAG.into()));
        if self.build.verbose {
            stack.env.push(("RUST_LOG".into(), "debug".into()));
        }
        let (key_var, key_value) = apikey::as_env(&key);
        stack.env.push((key_var.into(), key_value.into()));

        let ready = start_and_wait(
            &api,
            &stack,
            Duration::from_secs(self.timeout_s),
            &interrupted,
        );
        if let Err(e) = ready {
            eprintln!("✗ {e:#}");
            eprintln!("removing what the demo created...");
            print!("{}", clean::clean(sh, &api, &self.instance, false)?);
            bail!("the demo did not start");
        }
        print_where_to_look(self.knobs.dashboard_port);
        if self.detach {
            return Ok(());
        }
        watch_live(&api, &self.instance.project, &interrupted);
        println!("\nstopping: removing everything the demo created...");
        print!("{}", clean::clean(sh, &api, &self.instance, false)?);
        Ok(())
    }
}

/// Ctrl+C (and SIGTERM) set a flag the waits look at, so the demo can clean up
/// instead of dying with containers left behind.
fn watch_interrupts() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    ctrlc::set_handler(move || setter.store(true, Ordering::SeqCst))
        .context("listen for Ctrl+C")?;
    Ok(flag)
}

/// Run the prerequisite checks; stop on a missing requirement. Returns the
/// Docker GID for the sandbox.
fn check_prereqs(sh: &Shell, dashboard_port: u16) -> anyhow::Result<u32> {
    let findings = prereqs::probe(sh, dashboard_port);
    let report = prereqs::Report::from(&findings);
    print!("{}", report.render());
    if !report.ok {
        bail!("prerequisites missing (see the ✗ lines above)");
    }
    Ok(report.docker_gid.unwrap_or(crate::gid::FALLBACK_GID))
}

/// What the wait is on, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Milestone {
    Phase(Phase),
    Healthy(&'static str),
}

impl Milestone {
    fn describe(self) -> String {
        match self {
            Milestone::Phase(p) => p.describe().to_string(),
            Milestone::Healthy(service) => format!("{service} healthy"),
        }
    }
}

const MILESTONES: [Milestone; 7] = [
    Milestone::Phase(Phase::Cluster),
    Milestone::Phase(Phase::Kafka),
    Milestone::Phase(Phase::KafkaReady),
    Milestone::Healthy("k8s-sandbox"),
    Milestone::Healthy("producer"),
    Milestone::Healthy("consumer"),
    Milestone::Healthy("overseer"),
];

/// `compose up -d` in the background while watching containers and phase
/// files; fails fast when a container exits, the user interrupts, or time
/// runs out, each time saying what it was waiting for.
fn start_and_wait(
    api: &Api,
    stack: &Stack,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let up = stack
        .duct(&["up", "-d"])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .start()
        .context("run compose up")?;
    let bar = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] waiting for {wide_msg}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut done: Vec<Milestone> = Vec::new();
    let mut up_finished = false;
    loop {
        if interrupted.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            let _ = up.kill();
            bail!("interrupted");
        }
        if !up_finished && let Some(output) = up.try_wait().context("watch compose up")? {
            up_finished = true;
            if !output.status.success() {
                bar.finish_and_clear();
                bail!(
                    "compose up failed:\n{}",
                    String::from_utf8_lossy(&output.stdout).trim_end()
                );
            }
        }
        let states = stack::service_states(api, &stack.project)?;
        if let Some(failed) = states.iter().find(|s| s.has_failed()) {
            bar.finish_and_clear();
            bail!("{}", describe_failure(api, failed));
        }
        let sandbox = stack::find_service(&states, "k8s-sandbox").filter(|s| s.state == "running");
        for milestone in MILESTONES {
            if done.contains(&milestone) {
                continue;
            }
            let reached = match milestone {
                Milestone::Phase(phase) => sandbox.is_some_and(|s| {
                    stack::read_status_file(api, &s.container, phase.file_name())
                        .ok()
                        .flatten()
                        .is_some()
                }),
                Milestone::Healthy(service) => {
                    stack::find_service(&states, service).is_some_and(ServiceState::is_healthy)
                }
            };
            if reached {
                done.push(milestone);
                show(
                    &bar,
                    format!("✓ {} [{}]", milestone.describe(), mmss(started.elapsed())),
                );
            }
        }
        let waiting: Vec<String> = MILESTONES
            .iter()
            .filter(|m| !done.contains(m))
            // The agent-loop-only sandbox never writes the first two phases;
            // its health is what the services wait on.
            .filter(|m| {
                !matches!(m, Milestone::Phase(_))
                    || !done.contains(&Milestone::Healthy("k8s-sandbox"))
            })
            .map(|m| m.describe())
            .collect();
        if waiting.is_empty() {
            bar.finish_and_clear();
            println!("everything is ready after {}", mmss(started.elapsed()));
            return Ok(());
        }
        bar.set_message(waiting[0].clone());
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            let stuck = states
                .iter()
                .find(|s| !s.is_healthy())
                .map(|s| {
                    format!(
                        "\n--- last log lines of {} ---\n{}",
                        s.service,
                        stack::log_tail(api, &s.container, 30)
                    )
                })
                .unwrap_or_default();
            bail!(
                "timed out after {} waiting for {}{stuck}",
                mmss(timeout),
                waiting[0]
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn describe_failure(api: &Api, failed: &ServiceState) -> String {
    format!(
        "{} stopped ({}{})\n--- last log lines of {} ---\n{}",
        failed.service,
        failed.state,
        failed
            .exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default(),
        failed.service,
        stack::log_tail(api, &failed.container, 30).trim_end()
    )
}

fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn print_where_to_look(dashboard_port: u16) {
    println!(
        "\nThe demo is running.\n\
         \x20 dashboard  http://localhost:{dashboard_port}\n\
         \x20 status     cargo xtask status\n\
         \x20 logs       cargo xtask logs <k8s-sandbox|producer|consumer|overseer|agent> [-f]\n\
         \x20 stop       Ctrl+C here removes everything; after --detach: cargo xtask down (keeps the\n\
         \x20            cluster for a fast restart) or cargo xtask clean (removes everything)\n"
    );
}

/// Print a compact live line every few seconds until interrupted.
fn watch_live(api: &Api, project: &str, interrupted: &AtomicBool) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last_printed = Instant::now() - Duration::from_secs(60);
    while !interrupted.load(Ordering::SeqCst) {
        let line = match read_live(api, project) {
            Ok((metrics, agent)) => live_line(metrics.as_ref(), agent.as_ref()),
            Err(e) => format!("(cannot read the demo's status: {e:#})"),
        };
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if last_printed.elapsed() >= Duration::from_secs(30) {
            println!("{line}");
            last_printed = Instant::now();
        }
        for _ in 0..20 {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Latest metrics and the agent's last action, read through a running
/// container of the stack.
pub fn read_live(
    api: &Api,
    project: &str,
) -> anyhow::Result<(Option<MetricsSnapshot>, Option<AgentLogLine>)> {
    let states = stack::service_states(api, project)?;
    let Some(reader) = stack::status_reader(&states) else {
        bail!("no container of the demo is running");
    };
    let metrics = stack::read_status_file(api, &reader.container, status::METRICS_FILE)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let agent = stack::read_status_file(api, &reader.container, status::AGENT_LOG_FILE)?
        .and_then(|b| last_action(&String::from_utf8_lossy(&b)));
    Ok((metrics, agent))
}

/// The newest agent.log line that says what the agent did.
fn last_action(log: &str) -> Option<AgentLogLine> {
    log.lines().rev().filter_map(AgentLogLine::parse).find(|l| {
        matches!(
            l.kind.as_str(),
            status::AGENT_SETTINGS_CHANGED | status::AGENT_AUTO_END | status::AGENT_AUTO_START
        )
    })
}

/// `p99 3.2 ms / 5.0 target | producer 12000/s (target 12500) | consumer 11990/s | agent: ...`
pub fn live_line(metrics: Option<&MetricsSnapshot>, agent: Option<&AgentLogLine>) -> String {
    let mut parts = Vec::new();
    match metrics {
        Some(m) => {
            let p99 = m
                .latency_ms
                .map(|q| format!("{:.1} ms", q.p99))
                .unwrap_or_else(|| "n/a".into());
            let mark = match m.latency_ms {
                Some(q) if q.p99 <= m.target_latency_ms => "✓",
                Some(_) => "✗",
                None => "?",
            };
            parts.push(format!(
                "p99 {p99} {mark} target {:.1} ms",
                m.target_latency_ms
            ));
            let rate = |r: Option<f64>| {
                r.map(|v| format!("{v:.0}/s"))
                    .unwrap_or_else(|| "down".into())
            };
            parts.push(format!(
                "producer {} (target {})",
                rate(m.producer_rate),
                rate(m.producer_target_rate)
            ));
            parts.push(format!("consumer {}", rate(m.consumer_rate)));
        }
        None => parts.push("no metrics yet".into()),
    }
    if let Some(a) = agent {
        let age = status::now_ms().saturating_sub(a.time_ms) / 1000;
        let mut text: String = a.text.chars().take(60).collect();
        if a.text.chars().count() > 60 {
            text.push('…');
        }
        parts.push(format!("agent {}s ago: {} {}", age, a.kind, text));
    }
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::stats::{Quantiles, Sources};

    fn metrics(p99: f64) -> MetricsSnapshot {
        MetricsSnapshot {
            timestamp_ms: 0,
            latency_timestamp_ms: Some(0),
            target_latency_ms: 5.0,
            window_s: 5.0,
            latency_ms: Some(Quantiles {
                count: 100,
                p50: 1.0,
                p95: 2.0,
                p99,
                p999: 9.0,
                max: 10.0,
            }),
            producer_target_rate: Some(12500.0),
            producer_rate: Some(12000.4),
            consumer_rate: None,
            publish_delay_p99_ms: None,
            sources: Sources::default(),
        }
    }

    #[test]
    fn live_line_shows_latency_against_target_and_rates() {
        let line = live_line(Some(&metrics(3.24)), None);
        assert_eq!(
            line,
            "p99 3.2 ms ✓ target 5.0 ms | producer 12000/s (target 12500/s) | consumer down"
        );
        assert!(live_line(Some(&metrics(7.0)), None).contains("p99 7.0 ms ✗"));
        assert_eq!(live_line(None, None), "no metrics yet");
    }

    #[test]
    fn last_action_picks_agent_events() {
        let log = [
            AgentLogLine::new(status::AGENT_AUTO_START, "vibectl auto --limit 1").render(),
            AgentLogLine::new(
                status::AGENT_SETTINGS_CHANGED,
                "KAFKA_NUM_IO_THREADS 2 -> 8",
            )
            .render(),
            AgentLogLine::new(
                status::AGENT_MEMORY_UPDATE,
                "Latest consumer p99 latency: 3 ms",
            )
            .render(),
        ]
        .concat();
        let last = last_action(&log).unwrap();
        assert_eq!(last.kind, status::AGENT_SETTINGS_CHANGED);
        let line = live_line(None, Some(&last));
        assert!(
            line.contains("settings-changed KAFKA_NUM_IO_THREADS 2 -> 8"),
            "{line}"
        );
    }
}
