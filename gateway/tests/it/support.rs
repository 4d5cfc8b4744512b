//! Start the real `gateway` (and `sidecar`) binaries on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let (port, admin_port) = (free_port(), free_port());
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin_port}\"\nshutdown_grace_secs = 1\n{config}"
        ),
    )
    .unwrap();
    // GATEWAY_TEST_LOG=debug shows the gateway's log while debugging a test.
    let log = std::env::var("GATEWAY_TEST_LOG").ok();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["serve", "--config"])
        .arg(&path)
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
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::mem::forget(dir);
    let admin = format!("127.0.0.1:{admin_port}").parse().unwrap();
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "admin listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway { child, addr, admin }
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

/// Another workspace binary, built (or found fresh) by cargo the way
/// `CARGO_BIN_EXE_*` is for our own.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build -p {package} failed");
    Path::new(env!("CARGO_BIN_EXE_gateway"))
        .with_file_name(bin)
        .to_path_buf()
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
        let child = Command::new(workspace_binary("portcullis-sidecar", "sidecar"))
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
