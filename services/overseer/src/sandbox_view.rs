//! What the sandbox leaves in the status directory, read for the dashboard:
//! phase files, the agent's log and the broker's current settings. Any of
//! them may be missing or half-written; that shows as "not yet".

use std::path::Path;

use demo_common::status::{
    self, AGENT_AUTO_END, AGENT_AUTO_START, AGENT_SETTINGS_CHANGED, AgentLogLine,
    BROKER_SETTINGS_FILE, BrokerSettings, Phase,
};
use serde::Serialize;

/// How many agent.log lines the page shows.
pub const AGENT_LINES: usize = 40;
/// How many agent.log lines are searched for actions to mark on the charts.
const ACTION_SCAN_LINES: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseView {
    pub phase: Phase,
    pub label: &'static str,
    pub done: bool,
}

/// The sandbox's side of the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxView {
    pub phases: Vec<PhaseView>,
    pub broker: Option<BrokerSettings>,
    /// The newest agent.log lines, oldest first.
    pub agent: Vec<AgentLogLine>,
}

/// Read it all now.
pub fn read(dir: &Path) -> SandboxView {
    SandboxView {
        phases: Phase::ALL
            .iter()
            .map(|&phase| PhaseView {
                phase,
                label: phase.describe(),
                done: phase.is_done(dir),
            })
            .collect(),
        broker: status::read_json(dir, BROKER_SETTINGS_FILE),
        agent: status::read_agent_log_tail(dir, AGENT_LINES),
    }
}

/// The agent's actions worth marking on the charts' time axis: broker
/// setting changes and the start and end of each `vibectl auto` run.
pub fn actions(dir: &Path) -> Vec<AgentLogLine> {
    status::read_agent_log_tail(dir, ACTION_SCAN_LINES)
        .into_iter()
        .filter(|l| {
            matches!(
                l.kind.as_str(),
                AGENT_SETTINGS_CHANGED | AGENT_AUTO_START | AGENT_AUTO_END
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn missing_files_read_as_nothing_yet() {
        let dir = tempfile::tempdir().unwrap();
        let view = read(dir.path());
        assert!(view.phases.iter().all(|p| !p.done));
        assert_eq!(view.broker, None);
        assert!(view.agent.is_empty());
        assert!(actions(dir.path()).is_empty());
    }

    #[test]
    fn phases_settings_and_actions_are_read_and_garbage_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(Phase::Cluster.file_name()), "").unwrap();
        // Half-written JSON is "not yet", not a crash.
        std::fs::write(
            dir.path().join(BROKER_SETTINGS_FILE),
            "{\"observed_at_ms\": 1, \"env\"",
        )
        .unwrap();
        status::append_agent_log(
            dir.path(),
            &[
                AgentLogLine::new(
                    status::AGENT_MEMORY_UPDATE,
                    "Latest consumer p99 latency: 3.0 ms",
                ),
                AgentLogLine::new(AGENT_AUTO_START, "vibectl auto --limit 3"),
                AgentLogLine::new(AGENT_SETTINGS_CHANGED, "KAFKA_NUM_IO_THREADS: 1 -> 4"),
            ],
        )
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(status::AGENT_LOG_FILE))
            .unwrap()
            .write_all(b"not a log line\n")
            .unwrap();
        let view = read(dir.path());
        assert!(view.phases[0].done && !view.phases[1].done);
        assert_eq!(view.broker, None);
        assert_eq!(view.agent.len(), 3);
        let kinds: Vec<String> = actions(dir.path()).into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![AGENT_AUTO_START, AGENT_SETTINGS_CHANGED]);

        let settings = BrokerSettings {
            observed_at_ms: 5,
            env: [("KAFKA_NUM_IO_THREADS".to_string(), "4".to_string())].into(),
            ..Default::default()
        };
        status::write_atomic(
            dir.path(),
            BROKER_SETTINGS_FILE,
            &serde_json::to_vec(&settings).unwrap(),
        )
        .unwrap();
        assert_eq!(read(dir.path()).broker, Some(settings));
    }
}
