//! The status directory (`/tmp/status`), the only channel between the demo's
//! containers. Writers replace files atomically (temp file in the same
//! directory, then rename); readers treat a missing, stale or malformed file as
//! "no data yet" and never crash on it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default location of the status directory in every container.
pub const DEFAULT_STATUS_DIR: &str = "/tmp/status";

/// Latest windowed consumer p99 end-to-end latency in ms (overseer writes).
pub const LATENCY_FILE: &str = "latency.txt";
/// Full [`crate::stats::MetricsSnapshot`] as JSON (overseer writes).
pub const METRICS_FILE: &str = "metrics.json";
/// What the agent loop ran and what vibectl printed (sandbox appends).
pub const AGENT_LOG_FILE: &str = "agent.log";
/// The broker's current tunable settings, [`BrokerSettings`] (sandbox writes).
pub const BROKER_SETTINGS_FILE: &str = "broker_settings.json";
/// Present when anyone asks the sandbox loop to stop.
pub const SHUTDOWN_FILE: &str = "shutdown";

/// The sandbox's phases. Each finished phase leaves its file in the status
/// directory so a restarted container resumes instead of redoing work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// k3d cluster exists and the API answers.
    Cluster,
    /// Manifests applied, broker Ready.
    Kafka,
    /// Port-forward listening; Kafka is reachable from the compose network.
    /// Removed when the sandbox starts, because the listener dies with it.
    KafkaReady,
    /// The agent loop has started.
    Agent,
}

impl Phase {
    /// Every phase, in the order they happen.
    pub const ALL: [Phase; 4] = [
        Phase::Cluster,
        Phase::Kafka,
        Phase::KafkaReady,
        Phase::Agent,
    ];

    /// The file that records this phase as done.
    pub fn file_name(self) -> &'static str {
        match self {
            Phase::Cluster => "phase1_cluster",
            Phase::Kafka => "phase2_kafka",
            Phase::KafkaReady => "kafka_ready",
            Phase::Agent => "phase4_agent",
        }
    }

    /// What a person would call this phase in a progress display.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Cluster => "k3d cluster",
            Phase::Kafka => "Kafka broker in k3d",
            Phase::KafkaReady => "Kafka reachable",
            Phase::Agent => "vibectl agent loop",
        }
    }

    /// Whether the phase's file exists in `dir`.
    pub fn is_done(self, dir: &Path) -> bool {
        dir.join(self.file_name()).exists()
    }
}

/// Replace `dir/name` with `contents` so that a reader sees either the old or
/// the new file, never a partial one. The file is world-readable because the
/// services run as different users on the shared volume.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_data()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// What a reader found in `latency.txt`.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencyReading {
    /// A number no older than the allowed age.
    Fresh { p99_ms: f64, age: Duration },
    /// A number, but the overseer has not refreshed it for `age`.
    Stale { p99_ms: f64, age: Duration },
    /// No file yet.
    Missing,
    /// The file does not hold one non-negative decimal number.
    Malformed(String),
}

impl LatencyReading {
    /// The latency when it can be acted on.
    pub fn fresh_ms(&self) -> Option<f64> {
        match self {
            LatencyReading::Fresh { p99_ms, .. } => Some(*p99_ms),
            _ => None,
        }
    }
}

impl fmt::Display for LatencyReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyReading::Fresh { p99_ms, age } => {
                write!(f, "p99 {p99_ms:.1} ms ({}s old)", age.as_secs())
            }
            LatencyReading::Stale { p99_ms, age } => write!(
                f,
                "stale: last p99 {p99_ms:.1} ms is {}s old",
                age.as_secs()
            ),
            LatencyReading::Missing => write!(f, "no latency yet ({LATENCY_FILE} missing)"),
            LatencyReading::Malformed(why) => write!(f, "unreadable {LATENCY_FILE}: {why}"),
        }
    }
}

/// Parse the content of `latency.txt`: one non-negative decimal number.
pub fn parse_latency(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let value: f64 = trimmed
        .parse()
        .map_err(|_| format!("{trimmed:?} is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{trimmed:?} is not a non-negative latency"));
    }
    Ok(value)
}

/// Format a latency for `latency.txt`.
pub fn format_latency(p99_ms: f64) -> String {
    format!("{p99_ms:.1}\n")
}

/// Read `latency.txt` in `dir`; older than `max_age` (by modification time,
/// which the overseer only moves when it has fresh data) counts as stale.
pub fn read_latency(dir: &Path, max_age: Duration) -> LatencyReading {
    let path = dir.join(LATENCY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return LatencyReading::Missing,
        Err(e) => return LatencyReading::Malformed(e.to_string()),
    };
    let p99_ms = match parse_latency(&text) {
        Ok(v) => v,
        Err(why) => return LatencyReading::Malformed(why),
    };
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    if age > max_age {
        LatencyReading::Stale { p99_ms, age }
    } else {
        LatencyReading::Fresh { p99_ms, age }
    }
}

/// Read and parse a JSON status file; `None` when missing or half-written.
pub fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Milliseconds since the Unix epoch, the timestamp unit of every status file.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The broker's tunable settings as the sandbox last read them from the
/// StatefulSet, for the dashboard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BrokerSettings {
    /// When the sandbox read them (ms since the epoch).
    pub observed_at_ms: u64,
    /// Env vars of the Kafka container the agent may change, e.g.
    /// `KAFKA_NUM_IO_THREADS` → `"2"`.
    pub env: BTreeMap<String, String>,
    /// Container resource limits and requests, e.g. `limits.cpu` → `"1"`.
    pub resources: BTreeMap<String, String>,
    /// Ready broker pods / desired.
    pub ready_replicas: u32,
    pub replicas: u32,
}

/// One line of `agent.log`: `<RFC 3339 time> [<kind>] <text>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLogLine {
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// What happened; see the `AGENT_*` constants.
    pub kind: String,
    /// Free text; never contains a newline.
    pub text: String,
}

/// The loop refreshed vibectl's memory with the latest numbers.
pub const AGENT_MEMORY_UPDATE: &str = "memory-update";
/// A `vibectl auto` run started.
pub const AGENT_AUTO_START: &str = "auto-start";
/// A line vibectl printed.
pub const AGENT_OUTPUT: &str = "vibectl";
/// A `vibectl auto` run finished (text says how).
pub const AGENT_AUTO_END: &str = "auto-end";
/// The broker's settings changed since the last look (an agent action).
pub const AGENT_SETTINGS_CHANGED: &str = "settings-changed";
/// Anything else the loop wants the reader to know (errors, start, stop).
pub const AGENT_NOTE: &str = "note";

impl AgentLogLine {
    pub fn new(kind: &str, text: &str) -> Self {
        Self {
            time_ms: now_ms(),
            kind: kind.to_string(),
            text: text.to_string(),
        }
    }

    /// The line as written to `agent.log`, newline included. Newlines inside
    /// `text` become spaces so one event stays one line.
    pub fn render(&self) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(self.time_ms);
        let text = self.text.replace(['\n', '\r'], " ");
        format!(
            "{} [{}] {}\n",
            humantime::format_rfc3339_millis(time),
            self.kind,
            text
        )
    }

    /// Parse one line; `None` for anything not in the format (a half-written
    /// last line, say).
    pub fn parse(line: &str) -> Option<Self> {
        let (time, rest) = line.split_once(' ')?;
        let time = humantime::parse_rfc3339(time).ok()?;
        let rest = rest.strip_prefix('[')?;
        let (kind, text) = rest.split_once(']')?;
        let time_ms = time.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
        Some(Self {
            time_ms,
            kind: kind.to_string(),
            text: text
                .strip_prefix(' ')
                .unwrap_or(text)
                .trim_end()
                .to_string(),
        })
    }
}

/// Append events to `dir/agent.log` (append-only, so readers tolerate a
/// partial last line rather than the writer replacing the file).
pub fn append_agent_log(dir: &Path, lines: &[AgentLogLine]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(AGENT_LOG_FILE))?;
    let text: String = lines.iter().map(AgentLogLine::render).collect();
    file.write_all(text.as_bytes())
}

/// The last `max` well-formed lines of `agent.log`, oldest first.
pub fn read_agent_log_tail(dir: &Path, max: usize) -> Vec<AgentLogLine> {
    let Ok(text) = std::fs::read_to_string(dir.join(AGENT_LOG_FILE)) else {
        return Vec::new();
    };
    let mut lines: Vec<AgentLogLine> = text
        .lines()
        .rev()
        .filter_map(AgentLogLine::parse)
        .take(max)
        .collect();
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_is_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), LATENCY_FILE, b"1.0\n").unwrap();
        write_atomic(dir.path(), LATENCY_FILE, b"2.5\n").unwrap();
        let path = dir.path().join(LATENCY_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2.5\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn latency_fresh_stale_missing_malformed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_latency(dir.path(), Duration::from_secs(30)),
            LatencyReading::Missing
        );
        write_atomic(dir.path(), LATENCY_FILE, format_latency(4.25).as_bytes()).unwrap();
        // 4.25 rounds to even in the one-decimal file format
        assert!(matches!(
            read_latency(dir.path(), Duration::from_secs(30)),
            LatencyReading::Fresh { p99_ms, .. } if (p99_ms - 4.2).abs() < 1e-9
        ));
        let old = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(LATENCY_FILE))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(
            read_latency(dir.path(), Duration::from_secs(30)),
            LatencyReading::Stale { .. }
        ));
        write_atomic(dir.path(), LATENCY_FILE, b"fast\n").unwrap();
        assert!(matches!(
            read_latency(dir.path(), Duration::from_secs(30)),
            LatencyReading::Malformed(_)
        ));
        assert!(parse_latency("-3").is_err());
        assert!(parse_latency("inf").is_err());
    }

    #[test]
    fn agent_log_round_trip_and_tail_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let a = AgentLogLine::new(
            AGENT_MEMORY_UPDATE,
            "Latest consumer p99 latency: 3.1 ms\nmore",
        );
        let b = AgentLogLine::new(AGENT_AUTO_START, "vibectl auto --limit 1");
        append_agent_log(dir.path(), &[a.clone(), b.clone()]).unwrap();
        // A half-written line from a writer that was interrupted.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(AGENT_LOG_FILE))
            .unwrap()
            .write_all(b"2026-12-0")
            .unwrap();
        let tail = read_agent_log_tail(dir.path(), 10);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].kind, AGENT_MEMORY_UPDATE);
        assert_eq!(tail[0].text, "Latest consumer p99 latency: 3.1 ms more");
        assert_eq!(tail[1], b);
        assert_eq!(read_agent_log_tail(dir.path(), 1), vec![b]);
    }

    #[test]
    fn phases_have_distinct_files() {
        let names: std::collections::HashSet<_> =
            Phase::ALL.iter().map(|p| p.file_name()).collect();
        assert_eq!(names.len(), Phase::ALL.len());
        assert_eq!(Phase::KafkaReady.file_name(), "kafka_ready");
    }
}
