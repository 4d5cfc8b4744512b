//! A child process for a test: its output collected line by line, ready
//! when it says so, stopped when dropped (a failing test leaves nothing
//! running behind it).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

type Lines = Arc<Mutex<Vec<String>>>;

/// A stream's lines and the thread that collects them.
struct Output {
    lines: Lines,
    reader: Option<JoinHandle<()>>,
}

impl Output {
    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the reader has reached the end of the stream; a grandchild
    /// that inherited the pipe can hold it open, so this is polled.
    fn drained(&self) -> bool {
        self.reader.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// How a process is stopped when dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL at once.
    Kill,
    /// This signal first (`TERM`, `INT`: a process whose children SIGKILL
    /// would orphan), SIGKILL if it is still running after the grace time.
    Signal(&'static str, Duration),
}

pub struct Process {
    name: String,
    child: Child,
    stdout: Output,
    stderr: Output,
    stop: Stop,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Process({} pid {})", self.name, self.child.id())
    }
}

/// Collects a stream's lines; with `PORTCULLIS_TEST_LOG` set they are
/// shown live too, for debugging a test.
fn collect(name: &str, stream: Option<impl Read + Send + 'static>) -> Output {
    let lines = Lines::default();
    let sink = lines.clone();
    let echo = std::env::var_os("PORTCULLIS_TEST_LOG").map(|_| name.to_owned());
    let reader = stream.map(|stream| {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(name) = &echo {
                    eprintln!("[{name}] {line}");
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        })
    });
    Output { lines, reader }
}

impl Process {
    /// Starts `command` with its stdout and stderr collected (stdin
    /// closed). The variables that would change its logging (`RUST_LOG`)
    /// are removed: a test sets what it needs explicitly.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self, String> {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: cannot start {:?}: {e}", command.get_program()))?;
        let stdout = collect(name, child.stdout.take());
        let stderr = collect(name, child.stderr.take());
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stop: Stop::Kill,
        })
    }

    /// [`Process::spawn`] for tests: a binary that cannot start fails the
    /// test.
    pub fn start(name: &str, command: Command) -> Self {
        Self::spawn(name, command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// How the process is stopped when dropped.
    #[must_use]
    pub fn stopped_by(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines it wrote to stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// The lines it wrote to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Whether any output line so far contains `needle`.
    pub fn printed(&self, needle: &str) -> bool {
        self.stderr()
            .iter()
            .chain(&self.stdout())
            .any(|l| l.contains(needle))
    }

    /// The first JSON log line (either stream) whose `message` is
    /// `message`, once it appears: the readiness line by which a service
    /// on port 0 reports the address it bound. Fails at once if the
    /// process exits first.
    pub fn wait_for_log(&mut self, message: &str, timeout: Duration) -> Result<Value, String> {
        self.wait_until(timeout, &format!("a `{message}` log line"), |p| {
            p.stderr()
                .iter()
                .chain(&p.stdout())
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == message)
        })
    }

    /// Waits until something accepts on `addr`, failing at once if the
    /// process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        self.wait_until(timeout, &format!("a listener on {addr}"), |_| {
            std::net::TcpStream::connect(addr).ok().map(drop)
        })
    }

    /// Polls `ready` until it yields, the process exits, or `timeout`.
    pub fn wait_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = ready(self) {
                return Ok(found);
            }
            if let Some(status) = self.exit_status() {
                // Its last words may be the very line awaited.
                if let Some(found) = ready(self) {
                    return Ok(found);
                }
                return Err(format!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.output_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} showed no {what} within {timeout:?}:\n{}",
                    self.name,
                    self.output_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its exit status once it has exited, with everything it printed
    /// collected: the readers may lag behind the exit, and a test reads
    /// the output right after (at most 2 s for a pipe that a grandchild
    /// still holds).
    fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !(self.stdout.drained() && self.stderr.drained()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(status)
    }

    /// The last lines of output, for a failure message.
    fn output_tail(&self) -> String {
        let mut lines = self.stderr();
        lines.extend(self.stdout());
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `QUIT`, …).
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .map_err(|e| format!("kill -{name}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "kill -{name} {} failed ({status})",
                self.child.id()
            ))
        }
    }

    /// Whether it has exited (and is reaped).
    pub fn has_exited(&mut self) -> bool {
        self.exit_status().is_some()
    }

    /// Its exit status, once it has exited within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to open connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it the way it is configured to stop (see [`Stop`]) and
    /// returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Some(status);
        }
        if let Stop::Signal(name, grace) = self.stop
            && self.signal(name).is_ok()
            && let Some(status) = self.exited_within(grace)
        {
            return Some(status);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn readiness_is_a_json_log_line_and_output_is_kept() {
        let mut p = Process::start(
            "sh",
            sh(
                r#"echo plain; echo '{"message":"listening","listen":"127.0.0.1:1"}' >&2; sleep 30"#,
            ),
        );
        let line = p.wait_for_log("listening", Duration::from_secs(5)).unwrap();
        assert_eq!(line["listen"], "127.0.0.1:1");
        assert!(p.printed("plain"));
        let pid = p.pid();
        drop(p);
        // Killed and reaped on drop: the pid no longer runs.
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap();
        assert!(!alive.success());
    }

    #[test]
    fn a_process_that_exits_fails_the_wait_with_its_output() {
        let mut p = Process::start("sh", sh("echo 'bad config: key `x`' >&2; exit 3"));
        let err = p
            .wait_for_log("listening", Duration::from_secs(5))
            .unwrap_err();
        assert!(
            err.contains("exited") && err.contains("bad config"),
            "{err}"
        );
    }

    #[test]
    fn a_signal_stop_lets_the_process_finish() {
        let mut p = Process::start(
            "sh",
            sh("trap 'echo bye; exit 0' TERM; echo trapped; while :; do sleep 0.05; done"),
        )
        .stopped_by(Stop::Signal("TERM", Duration::from_secs(5)));
        // Signal only once the trap is in place.
        p.wait_until(Duration::from_secs(5), "the trap", |p| {
            p.printed("trapped").then_some(())
        })
        .unwrap();
        let status = p.stop().unwrap();
        assert!(status.success(), "{status}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while !p.printed("bye") {
            assert!(Instant::now() < deadline, "the trap's output never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
