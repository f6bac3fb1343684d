//! Follows the sandbox's `agent.log` as it grows: only the new bytes are read
//! each poll (vibectl's output makes the file long over hours), and what is
//! kept (the newest lines for the page, the agent's actions for the charts'
//! time axis) is bounded.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use demo_common::status::{AGENT_AUTO_END, AGENT_AUTO_START, AGENT_SETTINGS_CHANGED, AgentLogLine};

/// At most this much of a file is read in one poll; on a first look at a long
/// log, only its end is read.
const MAX_READ: u64 = 1 << 20;
/// A "line" longer than this without a newline is garbage, not a line.
const MAX_PARTIAL: usize = 64 * 1024;

/// Whether a line is an action worth marking on the charts: a broker setting
/// changed, or a `vibectl auto` run started or ended.
pub fn is_action(line: &AgentLogLine) -> bool {
    matches!(
        line.kind.as_str(),
        AGENT_SETTINGS_CHANGED | AGENT_AUTO_START | AGENT_AUTO_END
    )
}

/// The growing end of one `agent.log`.
#[derive(Debug)]
pub struct AgentLog {
    path: PathBuf,
    /// Where the next read starts.
    offset: u64,
    /// Bytes after the last newline: a line still being written.
    partial: Vec<u8>,
    recent: VecDeque<AgentLogLine>,
    recent_max: usize,
    actions: VecDeque<AgentLogLine>,
    actions_max: usize,
}

impl AgentLog {
    /// Follow `dir/agent.log`, keeping the newest `recent_max` lines and the
    /// newest `actions_max` actions.
    pub fn new(dir: &Path, recent_max: usize, actions_max: usize) -> Self {
        Self {
            path: dir.join(demo_common::status::AGENT_LOG_FILE),
            offset: 0,
            partial: Vec::new(),
            recent: VecDeque::new(),
            recent_max,
            actions: VecDeque::new(),
            actions_max,
        }
    }

    /// Read what was appended since the last call. A missing file is "no
    /// agent yet"; a file shorter than before was replaced, so start over.
    pub fn refresh(&mut self) -> io::Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
            self.recent.clear();
            self.actions.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        // Far behind (first look at a long log): skip to the end; the first
        // line read is then cut, and the parser drops it.
        if len - self.offset > MAX_READ {
            self.offset = len - MAX_READ;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.take(len - self.offset).read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            if self.partial.len() > MAX_PARTIAL {
                self.partial.clear();
            }
            return Ok(());
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in String::from_utf8_lossy(&complete).lines() {
            if let Some(parsed) = AgentLogLine::parse(line) {
                self.push(parsed);
            }
        }
        Ok(())
    }

    fn push(&mut self, line: AgentLogLine) {
        if is_action(&line) {
            push_bounded(&mut self.actions, line.clone(), self.actions_max);
        }
        push_bounded(&mut self.recent, line, self.recent_max);
    }

    /// The newest lines, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &AgentLogLine> {
        self.recent.iter()
    }

    /// Actions at or after `since_ms`, oldest first.
    pub fn actions_since(&self, since_ms: u64) -> impl Iterator<Item = &AgentLogLine> {
        self.actions.iter().filter(move |a| a.time_ms >= since_ms)
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max.max(1) {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::status::{AGENT_LOG_FILE, AGENT_NOTE, AGENT_OUTPUT, append_agent_log};
    use std::io::Write;

    fn append_raw(dir: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(AGENT_LOG_FILE))
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn missing_file_is_no_activity() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AgentLog::new(dir.path(), 10, 10);
        log.refresh().unwrap();
        assert_eq!(log.recent().count(), 0);
    }

    #[test]
    fn reads_only_complete_lines_and_picks_actions() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AgentLog::new(dir.path(), 10, 10);
        append_agent_log(
            dir.path(),
            &[
                AgentLogLine::new(AGENT_AUTO_START, "vibectl auto --limit 3"),
                AgentLogLine::new(AGENT_OUTPUT, "kubectl get pods -n kafka"),
            ],
        )
        .unwrap();
        let half = AgentLogLine::new(AGENT_SETTINGS_CHANGED, "KAFKA_NUM_IO_THREADS: 8 -> 16");
        let rendered = half.render();
        let (first, second) = rendered.as_bytes().split_at(20);
        append_raw(dir.path(), first);
        log.refresh().unwrap();
        assert_eq!(
            log.recent().count(),
            2,
            "a half-written line is not read yet"
        );
        assert_eq!(log.actions_since(0).count(), 1);
        append_raw(dir.path(), second);
        append_raw(dir.path(), b"garbage without a timestamp\n");
        log.refresh().unwrap();
        let kinds: Vec<&str> = log.recent().map(|l| l.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [AGENT_AUTO_START, AGENT_OUTPUT, AGENT_SETTINGS_CHANGED]
        );
        let actions: Vec<&AgentLogLine> = log.actions_since(0).collect();
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[1], &half);
        assert_eq!(log.actions_since(half.time_ms + 1).count(), 0);
    }

    #[test]
    fn memory_stays_bounded_however_long_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AgentLog::new(dir.path(), 5, 3);
        for round in 0..200 {
            let lines: Vec<AgentLogLine> = (0..10)
                .map(|i| {
                    let kind = if i == 0 {
                        AGENT_AUTO_START
                    } else {
                        AGENT_OUTPUT
                    };
                    AgentLogLine::new(kind, &format!("round {round} line {i}"))
                })
                .collect();
            append_agent_log(dir.path(), &lines).unwrap();
            log.refresh().unwrap();
            assert!(log.recent().count() <= 5);
            assert!(log.actions_since(0).count() <= 3);
        }
        assert_eq!(log.recent().last().unwrap().text, "round 199 line 9");
        assert_eq!(
            log.actions_since(0).last().unwrap().text,
            "round 199 line 0"
        );
    }

    #[test]
    fn a_replaced_shorter_file_is_read_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AgentLog::new(dir.path(), 10, 10);
        let many: Vec<AgentLogLine> = (0..20)
            .map(|i| AgentLogLine::new(AGENT_NOTE, &format!("old {i}")))
            .collect();
        append_agent_log(dir.path(), &many).unwrap();
        log.refresh().unwrap();
        std::fs::remove_file(dir.path().join(AGENT_LOG_FILE)).unwrap();
        append_agent_log(dir.path(), &[AgentLogLine::new(AGENT_NOTE, "new")]).unwrap();
        log.refresh().unwrap();
        let texts: Vec<&str> = log.recent().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["new"]);
    }

    #[test]
    fn a_long_log_is_read_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let line = AgentLogLine::new(AGENT_OUTPUT, &"x".repeat(500));
        let block: String = std::iter::repeat_n(line.render(), 4000).collect();
        append_raw(dir.path(), block.as_bytes());
        append_agent_log(dir.path(), &[AgentLogLine::new(AGENT_NOTE, "last")]).unwrap();
        let mut log = AgentLog::new(dir.path(), 10, 10);
        log.refresh().unwrap();
        assert_eq!(log.recent().count(), 10);
        assert_eq!(log.recent().last().unwrap().text, "last");
        assert!(
            log.recent()
                .all(|l| l.text == "last" || l.text.len() == 500)
        );
    }
}
