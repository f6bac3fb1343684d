//! What the sandbox leaves in the status directory, read for the dashboard:
//! phase files, the agent's log and the broker's current settings. Any of
//! them may be missing or half-written; that shows as "not yet".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use demo_common::status::{self, AgentLogLine, BROKER_SETTINGS_FILE, BrokerSettings, Phase};
use serde::Serialize;

use crate::agent_log::AgentLog;

/// How many agent.log lines the page shows.
pub const AGENT_LINES: usize = 60;

/// One sandbox phase and whether its file says it is done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseView {
    pub phase: Phase,
    pub label: &'static str,
    pub done: bool,
}

/// The sandbox's side of the page.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SandboxView {
    pub phases: Vec<PhaseView>,
    /// The broker's settings as last written by the sandbox.
    pub broker: Option<BrokerSettings>,
    /// The broker's env settings as first seen by this overseer, so the page
    /// can show what the agent changed.
    pub broker_initial_env: Option<BTreeMap<String, String>>,
    /// The newest agent.log lines, oldest first.
    pub agent: Vec<AgentLogLine>,
    /// The agent's actions (setting changes, `vibectl auto` runs), oldest
    /// first, for the charts' time axis (served with the history).
    #[serde(skip)]
    pub actions: Vec<AgentLogLine>,
}

/// Reads the sandbox's files each poll, remembering what it needs between
/// polls (where agent.log was read up to, the first broker settings seen).
#[derive(Debug)]
pub struct SandboxWatch {
    dir: PathBuf,
    agent_log: AgentLog,
    initial_env: Option<BTreeMap<String, String>>,
}

impl SandboxWatch {
    /// Watch `dir`, keeping at most `actions_max` agent actions.
    pub fn new(dir: &Path, actions_max: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            agent_log: AgentLog::new(dir, AGENT_LINES, actions_max),
            initial_env: None,
        }
    }

    /// Read everything now. Unreadable files are logged at debug and shown
    /// as "not yet": the sandbox may simply not have started.
    pub fn refresh(&mut self) -> SandboxView {
        if let Err(e) = self.agent_log.refresh() {
            tracing::debug!("cannot read agent.log: {e}");
        }
        let broker: Option<BrokerSettings> = status::read_json(&self.dir, BROKER_SETTINGS_FILE);
        if self.initial_env.is_none() {
            self.initial_env = broker.as_ref().map(|b| b.env.clone());
        }
        SandboxView {
            phases: Phase::ALL
                .iter()
                .map(|&phase| PhaseView {
                    phase,
                    label: phase.describe(),
                    done: phase.is_done(&self.dir),
                })
                .collect(),
            broker,
            broker_initial_env: self.initial_env.clone(),
            agent: self.agent_log.recent().cloned().collect(),
            actions: self.agent_log.actions_since(0).cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::status::{AGENT_AUTO_START, AGENT_SETTINGS_CHANGED};
    use std::io::Write;

    #[test]
    fn missing_files_read_as_nothing_yet() {
        let dir = tempfile::tempdir().unwrap();
        let view = SandboxWatch::new(dir.path(), 10).refresh();
        assert_eq!(view.phases.len(), Phase::ALL.len());
        assert!(view.phases.iter().all(|p| !p.done));
        assert_eq!(view.broker, None);
        assert!(view.agent.is_empty() && view.actions.is_empty());
    }

    #[test]
    fn phases_settings_and_actions_are_read_and_garbage_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = SandboxWatch::new(dir.path(), 10);
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
                AgentLogLine::new(status::AGENT_MEMORY_UPDATE, "p99 3.0 ms"),
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
        let view = watch.refresh();
        assert!(view.phases[0].done && !view.phases[1].done);
        assert_eq!(view.broker, None);
        assert_eq!(view.broker_initial_env, None);
        assert_eq!(view.agent.len(), 3);
        let kinds: Vec<&str> = view.actions.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, [AGENT_AUTO_START, AGENT_SETTINGS_CHANGED]);

        let settings = |threads: &str| BrokerSettings {
            observed_at_ms: 5,
            env: [("KAFKA_NUM_IO_THREADS".to_string(), threads.to_string())].into(),
            ..Default::default()
        };
        let write = |s: &BrokerSettings| {
            status::write_atomic(
                dir.path(),
                BROKER_SETTINGS_FILE,
                &serde_json::to_vec(s).unwrap(),
            )
            .unwrap()
        };
        write(&settings("1"));
        assert_eq!(watch.refresh().broker, Some(settings("1")));
        write(&settings("4"));
        let view = watch.refresh();
        assert_eq!(view.broker, Some(settings("4")));
        // The first settings seen stay the baseline the page compares with.
        assert_eq!(view.broker_initial_env, Some(settings("1").env));
    }
}
