//! Start the real `gateway` (and `sidecar`) binaries on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use testkit::free_port;
pub use testkit::{Auth, GatewayConfig, Route};
use testkit::{Process, workspace_binary};

pub struct Gateway {
    process: Process,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The config file it was started with.
    pub config: PathBuf,
}

/// The demo upstream (`gateway echo`), in-process: it answers with what it
/// received.
pub async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::echo::serve(listener));
    addr
}

pub fn start(config: &str) -> Gateway {
    start_at(free_port(), config)
}

/// The gateway on a chosen port (when a URL naming it must exist first).
/// Pingora binds the listeners it is given and cannot report a port 0, so
/// the ports are chosen here.
pub fn start_at(port: u16, config: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("gateway.toml");
    let admin_port = free_port();
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin_port}\"\nshutdown_grace_secs = 1\nupgrade_sock = \"{}\"\n{config}",
            dir.join("upgrade.sock").display()
        ),
    )
    .unwrap();
    let mut process = spawn_gateway(&path, false);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = format!("127.0.0.1:{admin_port}").parse().unwrap();
    for listener in [addr, admin] {
        process
            .wait_for_port(listener, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    Gateway {
        process,
        addr,
        admin,
        config: path,
    }
}

fn spawn_gateway(config: &Path, upgrade: bool) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(upgrade.then_some("--upgrade"));
    // PORTCULLIS_TEST_LOG=debug shows the gateway's log at that level while
    // debugging a test.
    if let Ok(level) = std::env::var("PORTCULLIS_TEST_LOG") {
        cmd.env("PORTCULLIS_GATEWAY__LOG_LEVEL", level);
    }
    // PORTCULLIS_TEST_FORWARDING=pingora runs a test's gateways on
    // pingora-proxy's path (the test command runs the edge tests so), unless
    // the test chose a path itself.
    let chosen = std::fs::read_to_string(config).is_ok_and(|c| c.contains("\nforwarding"));
    if let Ok(forwarding) = std::env::var("PORTCULLIS_TEST_FORWARDING")
        && !chosen
    {
        cmd.env("PORTCULLIS_GATEWAY__FORWARDING", forwarding);
    }
    Process::start("gateway", cmd)
}

impl Gateway {
    /// Send a signal (`TERM`, `QUIT`, …) to the process.
    pub fn signal(&self, name: &str) {
        self.process.signal(name).unwrap();
    }

    /// Its exit status, once it has exited within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.process.exited_within(limit)
    }

    /// A successor started with `--upgrade` on the same config, once it
    /// waits for the listening sockets (the old one still serves them;
    /// send it `QUIT` to hand them over).
    pub fn successor(&self) -> Gateway {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let sock = text
            .lines()
            .find_map(|l| l.strip_prefix("upgrade_sock = \""))
            .and_then(|l| l.strip_suffix('"'))
            .map(PathBuf::from)
            .unwrap();
        let _ = std::fs::remove_file(&sock);
        let mut process = spawn_gateway(&self.config, true);
        process
            .wait_until(Duration::from_secs(10), "an upgrade socket", |_| {
                sock.exists().then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Gateway {
            process,
            addr: self.addr,
            admin: self.admin,
            config: self.config.clone(),
        }
    }
}

pub fn wait_for_port(addr: SocketAddr, what: &str) {
    testkit::wait_for_port(addr, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{what}: {e}"));
}

pub fn demo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The real sidecar binary on fixed ports, so it can be killed and brought
/// back where the gateway expects it.
pub struct Sidecar {
    process: Process,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    policies: PathBuf,
}

impl Sidecar {
    pub fn start(policies: &Path) -> Self {
        let grpc = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(policies, grpc, http)
    }

    fn start_on(policies: &Path, grpc: SocketAddr, http: SocketAddr) -> Self {
        let mut cmd = Command::new(workspace_binary(
            "portcullis-sidecar",
            "sidecar",
            &["sidecar", "tokens", "bootstrap"],
        ));
        cmd.arg("serve")
            .args(["--grpc", &grpc.to_string(), "--http", &http.to_string()])
            .arg("--policies")
            .arg(policies)
            .env("PORTCULLIS_SIDECAR__ADMIN_TOKEN", SIDECAR_ADMIN_TOKEN);
        let mut process = Process::start("sidecar", cmd);
        process
            .wait_for_port(grpc, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            grpc,
            http,
            policies: policies.to_path_buf(),
        }
    }

    /// SIGKILL: no goodbye to open connections.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Self::start_on(&self.policies.clone(), self.grpc, self.http);
    }
}

pub const SIDECAR_ADMIN_TOKEN: &str = "gateway-test-admin-token-0123456789";

/// The real Redis, or `None` with a note (outside CI; under CI its absence
/// fails the test).
pub async fn redis_url() -> Option<String> {
    testkit::redis_url()
}

/// The real authserver binary in `--dev` mode (SQLite, in-process stores,
/// demo user), with its credentials file read.
pub struct Authserver {
    process: Process,
    pub url: String,
    pub creds: Value,
    _dir: tempfile::TempDir,
}

impl Authserver {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let creds = dir.path().join("creds.json");
        let mut cmd = Command::new(workspace_binary(
            "portcullis-authserver",
            "authserver",
            &["authserver", "tokens", "bootstrap"],
        ));
        cmd.current_dir(dir.path())
            .args(["--dev", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--dev-credentials")
            .arg(&creds)
            .envs(env.iter().copied());
        let mut process = Process::start("authserver", cmd);
        // The credentials file appears whole (written, then renamed).
        let creds: Value = process
            .wait_until(Duration::from_secs(30), "dev credentials", |_| {
                serde_json::from_slice(&std::fs::read(&creds).ok()?).ok()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        process
            .wait_for_port(addr, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            url: creds["issuer"].as_str().unwrap().to_owned(),
            creds,
            _dir: dir,
        }
    }

    /// Sign in as the demo user on its pages, allow consent, and return
    /// the callback URL it redirects to.
    pub async fn sign_in(&self, browser: &mut crate::signin::Browser, authorize: &str) -> String {
        let password = self.creds["user"]["password"].as_str().unwrap().to_owned();
        crate::signin::through_the_authserver_as(browser, &self.url, authorize, "demo", &password)
            .await
    }

    /// Kill it (Drop does too; this is for a test that goes on without it).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Register a confidential web client through the admin API.
    pub async fn add_web_client(&self, id: &str, redirect: &str, after_logout: &str) -> String {
        self.add_client(id, redirect, after_logout, false).await
    }

    /// The same, also a resource server: it may introspect any token.
    pub async fn add_resource_server(
        &self,
        id: &str,
        redirect: &str,
        after_logout: &str,
    ) -> String {
        self.add_client(id, redirect, after_logout, true).await
    }

    async fn add_client(
        &self,
        id: &str,
        redirect: &str,
        after_logout: &str,
        introspect: bool,
    ) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/admin/v1/clients", self.url))
            .bearer_auth(self.creds["admin_token"].as_str().unwrap())
            .json(&serde_json::json!({
                "client_id": id,
                "kind": "web",
                "redirect_uris": [redirect],
                "post_logout_redirect_uris": [after_logout],
                "scopes": ["openid", "profile", "email", "groups", "offline_access"],
                "introspect": introspect,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["client_secret"].as_str().unwrap().to_owned()
    }

    /// An admin API call: its status and JSON body (Null when empty).
    pub async fn admin(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(self.creds["admin_token"].as_str().unwrap())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Audit events, newest first.
    pub async fn audit(&self) -> Vec<Value> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/admin/v1/audit?limit=500", self.url))
            .bearer_auth(self.creds["admin_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["events"].as_array().unwrap().clone()
    }
}

impl Gateway {
    /// The admin `/metrics` text once it contains every one of `needles`
    /// (requests are counted after their response is sent, so a scrape
    /// right after the last response may not see it yet).
    pub async fn metrics_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = reqwest::get(format!("http://{}/metrics", self.admin))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
            if missing.is_empty() {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{missing:?} missing from:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An issuer trusted for audience `api`, the upstream `app`, and a `jwt`
/// route on `/api` to it, left open last so a test can add keys to it.
/// Top-level keys must come before it.
pub fn jwt_app(issuer: &str, upstream: SocketAddr) -> String {
    GatewayConfig::new()
        .issuer(issuer, &["api"])
        .upstream("app", &[upstream])
        .route(Route::new("/api", "app", Auth::Jwt))
        .to_toml()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, header names lower-cased.
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {} {}", self.head, self.body))
    }
}

/// One HTTP/1.1 exchange with the bytes of `request` exactly as given (no
/// client library to tidy them up): the response, by its
/// `content-length`, or what came before the connection closed.
pub async fn raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_ref()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| got.len() >= end + 4 + n) {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length.unwrap_or(0)])
                    .into_owned();
                return raw_response(&head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap_or(0);
        if n == 0 {
            let text = String::from_utf8_lossy(&got).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return raw_response(head, body.to_owned());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn raw_response(head: &str, body: String) -> RawResponse {
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let head = head
        .lines()
        .enumerate()
        .map(|(i, l)| match (i, l.split_once(':')) {
            (0, _) | (_, None) => l.to_owned(),
            (_, Some((k, v))) => format!("{}:{v}", k.to_ascii_lowercase()),
        })
        .collect::<Vec<_>>()
        .join("\n");
    RawResponse { status, head, body }
}

/// A policy directory for a test: the demo schema with `policies` and
/// `routes` (routes.toml text) and stored `entities` (JSON), in a fresh
/// temporary directory.
pub fn policy_dir(policies: &str, routes: &str, entities: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        demo_policies().join("schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies.cedar"), policies).unwrap();
    std::fs::write(dir.path().join("routes.toml"), routes).unwrap();
    std::fs::write(dir.path().join("entities.json"), entities).unwrap();
    dir
}
