//! Running external programs (k3d, docker, vibectl) with duct, bounded by a
//! timeout and stoppable on shutdown. Each program runs in its own process
//! group so that stopping it also stops what it started (vibectl runs
//! kubectl), and stdin is closed so nothing can wait for a person.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why a program did not finish successfully.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {after:?}; stopped it")]
    TimedOut { program: String, after: Duration },
    #[error("{program} was stopped because the sandbox is shutting down")]
    Cancelled { program: String },
    #[error("{program} failed ({status}): {output}")]
    Failed {
        program: String,
        status: String,
        /// The end of what it printed, for the error message.
        output: String,
    },
}

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

/// How a streamed run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit code (`None`: killed by a signal).
    Exited(Option<i32>),
    TimedOut,
    Cancelled,
}

/// One invocation: program, arguments and extra environment.
#[derive(Debug, Clone)]
pub struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
}

impl Invocation {
    pub fn new(program: &Path) -> Self {
        Self {
            program: program.as_os_str().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set one variable for the child, on top of the inherited environment.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Feed `bytes` to the program's stdin (otherwise stdin is empty).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    fn program_name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    fn expression(&self) -> duct::Expression {
        let mut expr = match &self.stdin {
            Some(bytes) => duct::cmd(&self.program, &self.args).stdin_bytes(bytes.clone()),
            None => duct::cmd(&self.program, &self.args).stdin_null(),
        }
        .unchecked()
        .before_spawn(|cmd| {
            cmd.process_group(0);
            Ok(())
        });
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        expr
    }

    /// Run to the end and capture both outputs; a non-zero exit is an error.
    pub async fn run(
        &self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Captured, ProgramError> {
        let program = self.program_name();
        let handle = self
            .expression()
            .stdout_capture()
            .stderr_capture()
            .start()
            .map_err(|source| ProgramError::Spawn {
                program: program.clone(),
                source,
            })?;
        let handle = Arc::new(handle);
        let waiter = Arc::clone(&handle);
        let wait =
            tokio::task::spawn_blocking(move || waiter.wait_timeout(timeout).map(|o| o.cloned()));
        let outcome = tokio::select! {
            joined = wait => joined.map_err(std::io::Error::other).and_then(|r| r),
            () = cancel.cancelled() => {
                kill_group(&handle.pids());
                return Err(ProgramError::Cancelled { program });
            }
        };
        let output = match outcome {
            Ok(Some(output)) => output,
            Ok(None) => {
                kill_group(&handle.pids());
                return Err(ProgramError::TimedOut {
                    program,
                    after: timeout,
                });
            }
            Err(source) => return Err(ProgramError::Spawn { program, source }),
        };
        let captured = Captured {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if output.status.success() {
            Ok(captured)
        } else {
            Err(ProgramError::Failed {
                program,
                status: output.status.to_string(),
                output: tail(&format!("{}{}", captured.stderr, captured.stdout), 600),
            })
        }
    }

    /// Run with stdout and stderr merged, handing every line to `on_line`
    /// as it is printed; stopped after `timeout` or on `cancel`.
    pub async fn stream(
        &self,
        timeout: Duration,
        cancel: &CancellationToken,
        mut on_line: impl FnMut(&str),
    ) -> Result<Ended, ProgramError> {
        let program = self.program_name();
        let reader = self
            .expression()
            .stderr_to_stdout()
            .reader()
            .map_err(|source| ProgramError::Spawn {
                program: program.clone(),
                source,
            })?;
        let reader = Arc::new(reader);
        let pids = reader.pids();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let thread_reader = Arc::clone(&reader);
        // Reading blocks, so it happens on a blocking thread; the channel
        // closes when the program (and everything it started) closed stdout.
        let read = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(&*thread_reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match lines.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        if tx.send(line.trim_end().to_string()).is_err() {
                            break;
                        }
                    }
                }
            }
            // Reaching EOF waited for the child, so its status is known.
            thread_reader
                .try_wait()
                .ok()
                .flatten()
                .and_then(|o| o.status.code())
        });
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stopped = None;
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => on_line(&line),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                    kill_group(&pids);
                    stopped = Some(Ended::TimedOut);
                }
                () = cancel.cancelled(), if stopped.is_none() => {
                    kill_group(&pids);
                    stopped = Some(Ended::Cancelled);
                }
            }
        }
        let code = read.await.ok().flatten();
        if let Some(how) = stopped {
            return Ok(how);
        }
        Ok(Ended::Exited(code))
    }
}

/// Stop a program and everything in its process group.
fn kill_group(pids: &[u32]) {
    for &pid in pids {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(raw) {
            // The group may already be gone; nothing to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The last `max` characters of `text`, on a char boundary, trimmed.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Invocation {
        Invocation::new(Path::new("sh")).arg("-c").arg(script)
    }

    #[tokio::test]
    async fn run_captures_output_and_reports_failure() {
        let cancel = CancellationToken::new();
        let out = sh("echo out; echo err >&2")
            .run(Duration::from_secs(10), &cancel)
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.stderr.trim(), "err");
        let err = sh("echo broken >&2; exit 3")
            .run(Duration::from_secs(10), &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProgramError::Failed { output, .. } if output.contains("broken")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stdin_is_fed_when_given() {
        let cancel = CancellationToken::new();
        let out = sh("cat")
            .stdin("line one\nline two")
            .run(Duration::from_secs(10), &cancel)
            .await
            .unwrap();
        assert_eq!(out.stdout, "line one\nline two");
        let out = sh("cat")
            .run(Duration::from_secs(10), &cancel)
            .await
            .unwrap();
        assert_eq!(out.stdout, "");
    }

    #[tokio::test]
    async fn run_stops_a_program_that_overruns() {
        let cancel = CancellationToken::new();
        let err = sh("sleep 30")
            .run(Duration::from_millis(200), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, ProgramError::TimedOut { .. }), "{err}");
    }

    #[tokio::test]
    async fn stream_hands_over_lines_and_exit_code() {
        let cancel = CancellationToken::new();
        let mut lines = Vec::new();
        let ended = sh("echo one; echo two >&2; exit 4")
            .env("EXTRA", "x")
            .stream(Duration::from_secs(10), &cancel, |l| {
                lines.push(l.to_string())
            })
            .await
            .unwrap();
        assert_eq!(ended, Ended::Exited(Some(4)));
        assert_eq!(lines, vec!["one", "two"]);
    }

    #[tokio::test]
    async fn stream_stops_the_whole_group_on_timeout() {
        let cancel = CancellationToken::new();
        // The grandchild `sleep` holds stdout open; only a group kill ends it.
        let ended = sh("echo started; sleep 30 & wait")
            .stream(Duration::from_millis(300), &cancel, |_| {})
            .await
            .unwrap();
        assert_eq!(ended, Ended::TimedOut);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  short ", 10), "short");
        assert_eq!(tail("abcdefghij", 4), "...ghij");
    }
}
