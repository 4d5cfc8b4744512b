//! The harness: `portcullis up` run the way a new user runs it, from the
//! repository root on the fixed ports it prints. A test holds the ports
//! (`hold_ports`) for as long as its stack runs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use testkit::{Process, Stop};

/// The ports `up` prints; all must be free again after Ctrl-C.
pub const PORTS: [u16; 6] = [8000, 9000, 8080, 8081, 9191, 3000];

/// One test at a time holds the fixed ports.
static PORTS_HELD: Mutex<()> = Mutex::new(());

pub fn hold_ports() -> MutexGuard<'static, ()> {
    PORTS_HELD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Up {
    /// What `--dev-credentials` wrote, and where.
    pub credentials: Value,
    pub credentials_file: PathBuf,
    process: Process,
}

impl Up {
    /// Starts `portcullis up` and waits for its `--dev-credentials` file.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], &[])
    }

    /// The same with more arguments for `up`.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_from(Path::new(env!("CARGO_BIN_EXE_portcullis")), dir, args, env)
    }

    /// The same, run from the `portcullis` executable at `exe`.
    pub fn start_from(exe: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let credentials = dir.join("credentials.json");
        let _ = std::fs::remove_file(&credentials);
        let mut cmd = Command::new(exe);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--dev-credentials")
            .arg(&credentials)
            .args(args)
            .envs(env.iter().copied());
        // Ctrl-C, as a user stops it: `up` stops its services in turn.
        let mut process = Process::start("portcullis up", cmd)
            .stopped_by(Stop::Signal("INT", Duration::from_secs(30)));
        let value = process
            .wait_until(Duration::from_secs(120), "its credentials file", |_| {
                serde_json::from_slice(&std::fs::read(&credentials).ok()?).ok()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            credentials: value,
            credentials_file: credentials,
            process,
        }
    }

    /// The file name of the executable a service runs from.
    pub fn service_executable(&self, service: &str) -> String {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.service_pid(service)));
        let exe = exe.unwrap_or_else(|e| panic!("the {service}'s executable: {e}"));
        exe.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// What it wrote to stderr so far.
    pub fn warned(&self) -> String {
        self.process.stderr().join("\n")
    }

    /// What it printed to stdout so far.
    pub fn printed(&self) -> String {
        let mut text = self.process.stdout().join("\n");
        text.push('\n');
        text
    }

    pub fn get(&self, key: &str) -> &str {
        self.credentials[key].as_str().unwrap()
    }

    /// A client_credentials token of the demo service client.
    pub fn service_token(&self, scope: &str) -> String {
        let service = &self.credentials["clients"]["service"];
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/token", self.get("issuer")))
            .basic_auth(
                service["client_id"].as_str().unwrap(),
                service["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The pid of one of `up`'s services (`gateway`, `sidecar`, ...).
    pub fn service_pid(&self, service: &str) -> u32 {
        let pid = self.credentials["pids"][service].as_u64();
        u32::try_from(pid.unwrap_or_else(|| panic!("`up` runs no {service}"))).unwrap()
    }

    /// Waits for `up` to exit on its own.
    pub fn exit_status(mut self) -> ExitStatus {
        self.process
            .exited_within(Duration::from_secs(30))
            .expect("`portcullis up` did not exit")
    }

    /// The pid of `up` itself.
    pub fn id(&self) -> u32 {
        self.process.pid()
    }

    /// Ctrl-C, as a terminal sends it.
    pub fn interrupt(self) -> ExitStatus {
        self.stop_with("INT")
    }

    /// `signal` (`INT`, `HUP`, ...) to `up`, then its exit status.
    pub fn stop_with(self, signal: &str) -> ExitStatus {
        self.process.signal(signal).unwrap();
        self.exit_status()
    }
}

pub fn sh(line: &str) -> String {
    let out = Command::new("sh").args(["-c", line]).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A program on PATH, or `None` (said aloud) where it is not installed;
/// CI must have it.
pub fn installed(program: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None => {
            testkit::required(program, Some(format!("not installed ({install})")));
            None
        }
    }
}

/// Every port `up` uses can be bound again.
pub fn assert_ports_free() {
    for port in PORTS {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} still taken after `up` stopped: {e}"));
    }
}

/// A fresh PostgreSQL database (`testkit::Database`); `None` (said aloud)
/// where psql is not installed, which CI must have.
pub fn fresh_database(prefix: &str) -> Option<testkit::Database> {
    installed("psql", "scripts/services.sh installs PostgreSQL")?;
    Some(testkit::Database::fresh(prefix).unwrap_or_else(|e| panic!("{e}")))
}
