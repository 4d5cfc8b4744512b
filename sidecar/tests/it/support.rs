//! Start the real `sidecar` binary on ephemeral ports and talk to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The demo policy directory of the repository.
pub fn demo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A private copy of a policy directory (tests write to it).
pub fn copy_policies(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

pub struct Sidecar {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
}

impl Sidecar {
    /// Start `sidecar serve` on `dir` with extra environment variables.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, env, &[])
    }

    /// Start with extra command-line arguments (e.g. `--config FILE`).
    pub fn start_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
        cmd.arg("serve")
            .args(args)
            .args([
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--policies",
            ])
            .arg(dir)
            .env("PORTCULLIS_SIDECAR__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PORTCULLIS_SIDECAR__SHUTDOWN_GRACE_SECS", "2")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sidecar");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let (http, grpc) = loop {
            let found = stderr.lock().unwrap().iter().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening").then(|| {
                    (
                        v["http"].as_str().unwrap().parse().unwrap(),
                        v["grpc"].as_str().unwrap().parse().unwrap(),
                    )
                })
            });
            if let Some(addrs) = found {
                break addrs;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sidecar exited with {status}: {:#?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sidecar did not start: {:#?}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            http,
            grpc,
            stderr,
            stdout,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A GET whose body is text (`/metrics`, `/v1/schema`).
    pub async fn text(&self, path: &str) -> String {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.text().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn grpc_client(&self) -> AuthorizationClient<tonic::transport::Channel> {
        AuthorizationClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// Stop with SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "sidecar did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the sidecar logged `needle` within a few seconds (its
    /// stderr is read by another thread, a little after it is written).
    pub fn stderr_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Wait for a condition with a deadline, polling.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An ext_authz request as Envoy sends it, with claims as jwt_authn puts them.
pub fn check_request(
    method: &str,
    path: &str,
    source: Option<&str>,
    claims: Option<&serde_json::Map<String, Value>>,
) -> CheckRequest {
    let source = source.map(|ip| ip.parse().unwrap());
    let mut req =
        decision::envoy::check_request(method, path, "api.example.com", source, "req-1", claims);
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.insert(
            "authorization".to_owned(),
            "Bearer secret-token-never-logged".to_owned(),
        );
    }
    req
}

/// What a `CheckResponse` says, in test-friendly form.
pub struct Verdict {
    pub allowed: bool,
    /// HTTP status of a denial.
    pub status: Option<i32>,
    /// Headers an allow sets upstream.
    pub headers: Vec<(String, String)>,
    /// Headers an allow removes.
    pub removed: Vec<String>,
}

pub fn summarize(resp: &CheckResponse) -> Verdict {
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    let mut v = Verdict {
        allowed: resp.status.as_ref().map(|s| s.code) == Some(0),
        status: None,
        headers: Vec::new(),
        removed: Vec::new(),
    };
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            v.headers = ok
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
                .collect();
            v.removed = ok.headers_to_remove.clone();
        }
        Some(HttpResponse::DeniedResponse(d)) => v.status = d.status.as_ref().map(|s| s.code),
        _ => {}
    }
    v
}

impl Sidecar {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The sidecar on the demo policies with `[[issuers]]` trusting
/// `issuer_url` for audience `api` (it verifies bearer tokens itself).
pub fn trusting(issuer_url: &str) -> (Sidecar, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!("[[issuers]]\nissuer = \"{issuer_url}\"\naudiences = [\"api\"]\nmin_refetch_seconds = 1\n"),
    )
    .unwrap();
    let sidecar = Sidecar::start_with(
        &demo_policies(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    (sidecar, dir)
}
