//! xtask against the real Docker daemon: `clean` and `check-prereqs` run as
//! the user runs them, as a separate process.

mod clean;
mod e2e;
mod prereqs;

use std::process::{Command, Output};

/// Run the xtask binary with `args` from the repository root.
pub fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).current_dir(testkit::exe::workspace_root());
    cmd
}

/// Output as text, for assertions and failure messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Skip (or fail under CI=true) when there is no Docker daemon.
pub fn need_docker() -> bool {
    testkit::require(
        "a Docker daemon",
        testkit::docker_available(),
        "start Docker, or run `cargo xtask test` on a machine with Docker",
    )
}
