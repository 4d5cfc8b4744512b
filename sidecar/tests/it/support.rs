//! Start the real `sidecar` binary on ephemeral ports and talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Process;

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
    process: Process,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub client: reqwest::Client,
}

impl Sidecar {
    /// Start `sidecar serve` on `dir` with extra environment variables.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, env, &[])
    }

    /// Start with extra command-line arguments (e.g. `--config FILE`), on
    /// port 0; ready when it logs the addresses it bound.
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
            .envs(env.iter().copied());
        let mut process = Process::start("sidecar", cmd);
        let listening = process
            .wait_for_log("listening", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = |key: &str| listening[key].as_str().unwrap().parse().unwrap();
        Self {
            http: addr("http"),
            grpc: addr("grpc"),
            process,
            client: reqwest::Client::new(),
        }
    }

    /// The lines it wrote to stdout so far (the decision log).
    pub fn stdout(&self) -> Vec<String> {
        self.process.stdout()
    }

    /// The lines it wrote to stderr so far (its own log).
    pub fn stderr(&self) -> Vec<String> {
        self.process.stderr()
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
        self.process.signal("TERM").unwrap();
        self.process
            .exited_within(Duration::from_secs(10))
            .expect("sidecar did not stop on SIGTERM")
    }

    /// Whether the sidecar logged `needle` within a few seconds (its
    /// stderr is read by another thread, a little after it is written).
    pub fn stderr_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.stderr().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
        self.process.pid()
    }
}

/// The sidecar on the demo policies with `[[issuers]]` trusting
/// `issuer_url` for audience `api` (it verifies bearer tokens itself).
pub fn trusting(issuer_url: &str) -> (Sidecar, tempfile::TempDir) {
    configured(&format!(
        "[[issuers]]\nissuer = \"{issuer_url}\"\naudiences = [\"api\"]\nmin_refetch_seconds = 1\n"
    ))
}

/// The sidecar on the demo policies with `toml` as its config file (kept
/// in the returned directory).
pub fn configured(toml: &str) -> (Sidecar, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(&config, toml).unwrap();
    let sidecar = Sidecar::start_with(
        &demo_policies(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    (sidecar, dir)
}
