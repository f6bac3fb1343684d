//! Integration tests of the sandbox: the kube-rs code against the fake API
//! server (testkit::kube_api), the `sandbox` binary with stand-in k3d,
//! docker and vibectl on PATH, and the real vibectl against a scripted LLM
//! endpoint.

mod agent_only;
mod apply;
mod phases;
mod portforward;
mod vibectl_real;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use demo_common::status::{AgentLogLine, read_agent_log_tail};

/// The `sandbox` binary cargo built for these tests.
pub fn sandbox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandbox"))
}

/// A kube client for the fake API server.
pub fn client_for(fake: &testkit::kube_api::FakeKube) -> kube::Client {
    let url = fake.url().parse().unwrap();
    kube::Client::try_from(kube::Config::new(url)).unwrap()
}

/// Poll `check` until it holds; panic with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{what}: after {:.1?}", started.elapsed());
}

/// The async twin of [`wait_until`], for tests on a tokio runtime.
pub async fn wait_until_async(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All of agent.log in `status_dir`.
pub fn agent_log(status_dir: &Path) -> Vec<AgentLogLine> {
    read_agent_log_tail(status_dir, usize::MAX)
}

/// The `sandbox` binary as a separate process, killed when dropped.
pub struct Sandbox {
    child: Child,
    stderr: PathBuf,
}

impl Sandbox {
    /// Start `sandbox <args>` with a clean environment: only `PATH`, a
    /// private `HOME` and `env`, so nothing from the test machine leaks in.
    pub fn start(
        args: &[&str],
        home: &Path,
        path: &std::ffi::OsStr,
        env: &[(&str, String)],
    ) -> Self {
        let bin = sandbox_bin();
        let stderr = home.join(format!("sandbox-{}.log", args.join("-")));
        let log = std::fs::File::create(&stderr).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(home)
            .env_clear()
            .env("PATH", path)
            .env("HOME", home)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            stderr,
        }
    }

    /// What the process logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox did not exit within {timeout:?}; its log:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `sandbox healthcheck` against `status_dir`; true when it exits 0.
pub fn healthcheck(status_dir: &Path) -> bool {
    Command::new(sandbox_bin())
        .arg("healthcheck")
        .env_clear()
        .env("STATUS_DIR", status_dir)
        .output()
        .unwrap()
        .status
        .success()
}

/// The k3d kubeconfig fixture (real EC certificates, like k3s makes).
pub const K3D_KUBECONFIG: &str = include_str!("../fixtures/k3d-kubeconfig.yaml");

/// Every file below `dir`, recursively (for "the key is in no file" checks).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
