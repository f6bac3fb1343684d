//! A real, separate tansu broker process (Apache Kafka compatible, in-memory
//! storage) on a free loopback port, killed when dropped.
//!
//! The binary is `$TANSU_BIN`, else `tansu` on `PATH`, else
//! `~/.cargo/bin/tansu` (`cargo install tansu --version 0.6.0 --features
//! dynostore`; the test command installs it). tansu 0.6.0 does not create
//! topics on first use: call [`Tansu::create_topic`].

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a fresh broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between readiness probes (polling a condition, bounded above).
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// What to tell a person who lacks tansu.
pub const INSTALL_HINT: &str =
    "cargo install tansu --version 0.6.0 --features dynostore, or set TANSU_BIN";

/// Where the tansu binary is, if anywhere.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    if let Ok(bin) = which::which("tansu") {
        return Some(bin);
    }
    let home = std::env::var_os("HOME")?;
    let bin = PathBuf::from(home).join(".cargo/bin/tansu");
    bin.is_file().then_some(bin)
}

/// A running tansu broker.
pub struct Tansu {
    child: Child,
    binary: PathBuf,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Start a broker, with [`crate::require`] semantics: `None` (after a
    /// loud SKIPPED line) when tansu is not installed and not under CI;
    /// panics under `CI=true` or when an installed tansu fails to start.
    pub fn start_or_skip() -> Option<Self> {
        let binary = find_binary();
        if !crate::require("tansu", binary.is_some(), INSTALL_HINT) {
            return None;
        }
        match binary.map(Self::start_with) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => panic!("tansu is installed but did not start: {e:#}"),
            None => None,
        }
    }

    /// Start `binary` on a free port and wait until it accepts connections.
    pub fn start_with(binary: PathBuf) -> anyhow::Result<Self> {
        // Another process can take the port between our probe and tansu's
        // bind; tansu then exits, and a new port is tried.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(t) => return Ok(t),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("tansu did not start")))
    }

    fn try_start(binary: &std::path::Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir().context("temp dir for the tansu log")?;
        let log = dir.path().join("tansu.log");
        let out = File::create(&log).context("create the tansu log")?;
        let err = out.try_clone().context("share the tansu log")?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("run {}", binary.display()))?;
        let mut tansu = Self {
            child,
            binary: binary.to_path_buf(),
            port,
            log,
            _dir: dir,
        };
        tansu.wait_ready()?;
        Ok(tansu)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("check on tansu")? {
                bail!("tansu exited with {status}:\n{}", self.log_tail());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not accept connections on {addr} within {} s:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id (to read its CPU time, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Create `topic` with `partitions` partitions (`tansu topic create`).
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let output = Command::new(&self.binary)
            .args(["topic", "create", topic])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .context("run tansu topic create")?;
        if !output.status.success() {
            bail!(
                "tansu topic create {topic} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Delete `topic` (`tansu topic delete`), freeing its in-memory data.
    pub fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
        let output = Command::new(&self.binary)
            .args(["topic", "delete", topic])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .context("run tansu topic delete")?;
        if !output.status.success() {
            bail!(
                "tansu topic delete {topic} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The last lines the broker printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a probe port")?;
    Ok(listener.local_addr().context("probe port address")?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_starts_accepts_a_topic_and_stops() {
        let Some(tansu) = Tansu::start_or_skip() else {
            return;
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, tansu.port()));
        tansu.create_topic("testkit-probe", 2).unwrap();
        assert!(TcpStream::connect(addr).is_ok());
        let pid = tansu.pid();
        drop(tansu);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "tansu {pid} still running after drop"
        );
    }
}
