//! Start the real `gateway` (and `sidecar`) binaries on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The config file it was started with.
    pub config: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free now and never handed out before in this test process (the
/// OS may offer a just-released port again, and tests run in parallel).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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
    let child = spawn_gateway(&path, false);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let admin = format!("127.0.0.1:{admin_port}").parse().unwrap();
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "admin listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway {
        child,
        addr,
        admin,
        config: path,
    }
}

fn spawn_gateway(config: &Path, upgrade: bool) -> Child {
    // GATEWAY_TEST_LOG=debug shows the gateway's log while debugging a test.
    let log = std::env::var("GATEWAY_TEST_LOG").ok();
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["serve", "--config"])
        .arg(config)
        .args(upgrade.then_some("--upgrade"))
        .env_remove("RUST_LOG")
        .envs(
            log.as_ref()
                .map(|l| ("PORTCULLIS_GATEWAY__LOG_LEVEL", l.as_str())),
        )
        .stdout(Stdio::null())
        .stderr(if log.is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap()
}

impl Gateway {
    /// Send a signal (`TERM`, `QUIT`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Its exit status, once it has exited within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let child = spawn_gateway(&self.config, true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "the successor never listened on {sock:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Gateway {
            child,
            addr: self.addr,
            admin: self.admin,
            config: self.config.clone(),
        }
    }
}

pub fn wait_for_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn demo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Another workspace binary, next to ours: `cargo test --workspace` (the
/// test command) builds every package's binaries with the same features.
/// When it is missing or older than the sources it is built from (`crates`:
/// its package and the workspace crates it uses), e.g. under `cargo test -p
/// portcullis-gateway`, it is built first.
pub fn workspace_binary(package: &str, bin: &str, crates: &[&str]) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name(bin);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let newest = crates
        .iter()
        .filter_map(|c| newest_source(&root.join(c)))
        .max();
    if built.is_none_or(|b| newest > Some(b)) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", package, "--bin", bin])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build -p {package} failed");
    }
    path
}

/// The latest modification time of what a crate's binary is built from:
/// everything in the crate but its tests and benchmarks.
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !["tests", "benches", "target", "node_modules"]
                    .iter()
                    .any(|skip| name == *skip)
                {
                    stack.push(path);
                }
            } else {
                newest = newest.max(entry.metadata().and_then(|m| m.modified()).ok());
            }
        }
    }
    newest
}

/// The real sidecar binary on fixed ports, so it can be killed and brought
/// back where the gateway expects it.
pub struct Sidecar {
    child: Child,
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
        let child = Command::new(workspace_binary(
            "portcullis-sidecar",
            "sidecar",
            &["sidecar", "tokens", "bootstrap"],
        ))
        .arg("serve")
        .args(["--grpc", &grpc.to_string(), "--http", &http.to_string()])
        .arg("--policies")
        .arg(policies)
        .env("PORTCULLIS_SIDECAR__ADMIN_TOKEN", SIDECAR_ADMIN_TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        wait_for_port(grpc, "sidecar");
        Self {
            child,
            grpc,
            http,
            policies: policies.to_path_buf(),
        }
    }

    /// SIGKILL: no goodbye to open connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Self::start_on(&self.policies.clone(), self.grpc, self.http);
    }
}

pub const SIDECAR_ADMIN_TOKEN: &str = "gateway-test-admin-token-0123456789";

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real Redis, or `None` with a note (outside CI; under CI its absence
/// fails the test).
pub async fn redis_url() -> Option<String> {
    let url =
        std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match reachable {
        Ok(_) => Some(url),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("Redis is required under CI and is not reachable at {url}: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: Redis not reachable at {url}: {e}");
            None
        }
    }
}

/// The real authserver binary in `--dev` mode (SQLite, in-process stores,
/// demo user), with its credentials file read.
pub struct Authserver {
    child: Child,
    pub url: String,
    pub creds: Value,
    _dir: tempfile::TempDir,
}

impl Authserver {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let creds = dir.path().join("creds.json");
        let child = Command::new(workspace_binary(
            "portcullis-authserver",
            "authserver",
            &["authserver", "tokens", "bootstrap"],
        ))
        .current_dir(dir.path())
        .args(["--dev", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--dev-credentials")
        .arg(&creds)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, "authserver");
        let deadline = Instant::now() + Duration::from_secs(30);
        let creds: Value = loop {
            if let Ok(bytes) = std::fs::read(&creds)
                && let Ok(v) = serde_json::from_slice(&bytes)
            {
                break v;
            }
            assert!(Instant::now() < deadline, "no dev credentials");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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

impl Drop for Authserver {
    fn drop(&mut self) {
        self.stop();
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
    format!(
        r#"
[[issuers]]
issuer = "{issuer}"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
"#
    )
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
