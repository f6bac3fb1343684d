//! Stand-in executables and the workspace's own binaries for tests.
//!
//! A [`StandIn`] is a small shell script put first on `PATH` in place of a
//! program that cannot run on a test machine (k3d, kubectl, vibectl, docker):
//! it records every call's arguments and answers with whatever the test's
//! script body prints. [`workspace_bin`] builds one of this workspace's
//! binaries so a test can run it as a real separate process.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Separates recorded arguments; a character no real argument contains.
const ARG_SEPARATOR: char = '\u{1f}';

/// A fake program in `dir` named `name`.
#[derive(Debug, Clone)]
pub struct StandIn {
    path: PathBuf,
    calls_file: PathBuf,
}

impl StandIn {
    /// Write `dir/name` as an executable `bash` script that first records its
    /// arguments, then runs `body` (bash; `$1`, `$@` are the arguments as
    /// usual, `$STANDIN_DIR` is `dir`). Whatever `body` prints and exits with
    /// is the answer.
    pub fn create(dir: &Path, name: &str, body: &str) -> anyhow::Result<Self> {
        let path = dir.join(name);
        let calls_file = dir.join(format!("{name}.calls"));
        let script = format!(
            "#!/usr/bin/env bash\n\
             STANDIN_DIR='{dir}'\n\
             {{ for a in \"$@\"; do printf '%s\\x1f' \"$a\"; done; printf '\\n'; }} >> '{calls}'\n\
             {body}\n",
            dir = dir.display(),
            calls = calls_file.display(),
        );
        std::fs::write(&path, script).with_context(|| format!("write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("make {} executable", path.display()))?;
        Ok(Self { path, calls_file })
    }

    /// The script's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every call so far, oldest first, each as its argument list.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let Ok(text) = std::fs::read_to_string(&self.calls_file) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                line.split(ARG_SEPARATOR)
                    .filter(|_| !line.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|mut args| {
                // The separator also ends the last argument.
                if args.last().is_some_and(String::is_empty) {
                    args.pop();
                }
                args
            })
            .collect()
    }
}

/// `PATH` with `dir` first, for a child process that should find stand-ins
/// before the real programs.
pub fn path_with(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// The workspace root (this crate lives in `services/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Build `bin` of workspace package `package` (debug profile) and return its
/// path, so a test can run it as a separate process of another package (a
/// package's own tests use `env!("CARGO_BIN_EXE_<name>")`). It builds the
/// whole workspace's binaries, as `cargo xtask test` does beforehand: the same
/// feature set, so this is a no-op there instead of a relink with other
/// features (which would also make the next `cargo test` relink again).
pub fn workspace_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--workspace", "--bins"])
        .args(["--message-format", "json"])
        .output()
        .with_context(|| format!("run cargo build for {package}/{bin}"))?;
    if !output.status.success() {
        bail!(
            "cargo build --workspace --bins (for {package}/{bin}) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Ask cargo where it put the executable instead of guessing the target dir.
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == bin
            && msg["package_id"]
                .as_str()
                .is_some_and(|id| id.contains(package))
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build --workspace --bins reported no executable {bin} of {package}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_in_records_arguments_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let k3d = StandIn::create(
            dir.path(),
            "k3d",
            r#"if [ "$1" = "version" ]; then echo "k3d version v5.8.3"; else exit 3; fi"#,
        )
        .unwrap();
        let out = Command::new(k3d.path()).arg("version").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "k3d version v5.8.3"
        );
        let status = Command::new("k3d")
            .env("PATH", path_with(dir.path()))
            .args(["cluster", "create", "two words", ""])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(
            k3d.calls(),
            vec![
                vec!["version".to_string()],
                vec![
                    "cluster".into(),
                    "create".into(),
                    "two words".into(),
                    "".into()
                ],
            ]
        );
    }
}
