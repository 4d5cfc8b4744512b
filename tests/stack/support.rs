//! The harness: `portcullis up` run the way a new user runs it, from the
//! repository root on the fixed ports it prints. A test holds the ports
//! (`hold_ports`) for as long as its stack runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    child: Child,
    stdout: PathBuf,
}

impl Up {
    /// Starts `portcullis up` and waits for its `--dev-credentials` file.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], &[])
    }

    /// The same with more arguments for `up`.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let stdout = dir.join("stdout.txt");
        let credentials = dir.join("credentials.json");
        let _ = std::fs::remove_file(&credentials);
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--dev-credentials")
            .arg(&credentials)
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !credentials.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "`portcullis up` exited ({status}):\n{}",
                    std::fs::read_to_string(&stdout).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "`portcullis up` did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            credentials: serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap(),
            credentials_file: credentials,
            child,
            stdout,
        }
    }

    pub fn printed(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "`portcullis up` did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of `up` itself.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ctrl-C, as a terminal sends it.
    pub fn interrupt(self) -> ExitStatus {
        self.stop_with("INT")
    }

    /// `signal` (`INT`, `HUP`, ...) to `up`, then its exit status.
    pub fn stop_with(self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.exit_status()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
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
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "{program} is not installed ({install})"
        );
        eprintln!("SKIPPED: {program} is not installed ({install})");
    }
    found
}

/// Every port `up` uses can be bound again.
pub fn assert_ports_free() {
    for port in PORTS {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} still taken after `up` stopped: {e}"));
    }
}
