//! The stack the faults run breaks, in production shape on one machine:
//! the machine's PostgreSQL (a fresh database), a Redis of the run's own
//! (so restarting it disturbs nothing else), the authserver, a sidecar and
//! a gateway following its change feed, and the echo upstream. The gateway
//! reaches the issuer's JWKS and the upstream through relays the runner
//! can cut or slow. Each service can be killed and started again as an
//! orchestrator would: same command, same ports, same data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{Auth, GatewayConfig, Process, Route, Stop};

use super::relay::Relay;
use crate::procs::{self, free_addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Sidecar,
    Authserver,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Sidecar => "sidecar",
            Self::Authserver => "authserver",
        }
    }
}

/// Longest wait for a (re)started service to answer its readiness check.
const READY: Duration = Duration::from_secs(30);

/// The upstream's read timeout at the gateway: a slower answer is a 504.
pub const UPSTREAM_READ_TIMEOUT_MS: u64 = 1000;

/// How each service is started: the same every time.
pub struct Commands {
    bin: PathBuf,
    dir: PathBuf,
    database_url: String,
    redis_addr: SocketAddr,
    auth: SocketAddr,
    sidecar_http: SocketAddr,
    sidecar_grpc: SocketAddr,
    gateway: SocketAddr,
    gateway_admin: SocketAddr,
    admin_token: String,
}

impl Commands {
    fn spawn(&self, service: Service) -> Result<Process, String> {
        let path = |file: &str| self.dir.join(file).display().to_string();
        match service {
            Service::Authserver => {
                let env = self.authserver_env();
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                procs::authserver(
                    &self.bin,
                    &self.dir,
                    self.auth,
                    &["--database-url", &self.database_url],
                    &["--redis-url", &format!("redis://{}", self.redis_addr)],
                    &env,
                )
            }
            Service::Sidecar => procs::spawn(
                "sidecar",
                &self.bin,
                &[
                    "sidecar",
                    "serve",
                    "--config",
                    &path("sidecar.toml"),
                    "--policies",
                    &path("policies"),
                    "--http",
                    &self.sidecar_http.to_string(),
                    "--grpc",
                    &self.sidecar_grpc.to_string(),
                ],
                &[],
            ),
            Service::Gateway => procs::spawn(
                "gateway",
                &self.bin,
                &["gateway", "serve", "--config", &path("gateway.toml")],
                &[],
            ),
        }
    }

    fn ready_url(&self, service: Service) -> String {
        match service {
            Service::Authserver => format!("http://{}/readyz", self.auth),
            Service::Sidecar => format!("http://{}/readyz", self.sidecar_http),
            Service::Gateway => format!("http://{}/readyz", self.gateway_admin),
        }
    }

    fn authserver_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PORTCULLIS_AUTHSERVER__ADMIN_TOKEN",
                self.admin_token.clone(),
            ),
            // One token lasts the whole run.
            (
                "PORTCULLIS_AUTHSERVER__TOKENS__ACCESS_SECONDS",
                "3600".into(),
            ),
        ]
    }

    /// An `authserver` subcommand on the same database; its stdout.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(["authserver", "--dev", "--database-url", &self.database_url])
            .args(args)
            .env(
                "PORTCULLIS_AUTHSERVER__DATA_DIR",
                self.dir.join("authserver"),
            )
            .envs(self.authserver_env())
            .output()
            .map_err(|e| format!("authserver {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "authserver {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The sidecar's and the gateway's configuration files.
    fn write_configs(
        &self,
        feed_token: &str,
        upstream: &Relay,
        jwks: &Relay,
    ) -> Result<(), String> {
        let issuer = format!("http://{}", self.auth);
        let feed = format!(
            "[feed]\nurl = {}\ntoken = {}\n",
            json!(issuer),
            json!(feed_token)
        );
        let sidecar = format!(
            "log_level = \"warn\"\nworkers = 1\nadmin_token = {}\n[decision_log]\nenabled = false\n{feed}",
            json!(self.admin_token),
        );
        // Every request needs a live decision (no decision cache), so a
        // sidecar fault shows at once; the global limit lives in Redis and
        // is far above the load, so it only puts Redis on the request path.
        // Keys are refetched every 10 s (the least allowed), so a cut JWKS
        // is noticed.
        let gateway = GatewayConfig::new()
            .set("listen", json!(self.gateway.to_string()))
            .set("admin", json!(self.gateway_admin.to_string()))
            .set("threads", 2)
            .set("log_level", "\"warn\"")
            .set("access_log", "{ enabled = false }")
            .set("redis_url", json!(format!("redis://{}", self.redis_addr)))
            .route(Route::new("/api", "app", Auth::Jwt).set("policy", true).set(
                "rate_limit",
                "{ requests_per_second = 100000.0, burst = 100000, scope = \"global\" }",
            ))
            .table(&format!(
                "[[upstreams]]\nname = \"app\"\naddresses = [\"{upstream}\"]\n\
                 read_timeout_ms = {UPSTREAM_READ_TIMEOUT_MS}\n\n\
                 [sidecar]\naddress = \"http://{grpc}\"\ndeadline_ms = 50\ncache_entries = 0\n\n\
                 [[issuers]]\nissuer = {issuer}\njwks_uri = \"http://{jwks}/jwks\"\n\
                 audiences = [\"portcullis\"]\ntoken_type = \"at+jwt\"\nrefresh_seconds = 10\n\n{feed}",
                upstream = upstream.addr,
                grpc = self.sidecar_grpc,
                issuer = json!(issuer),
                jwks = jwks.addr,
            ));
        for (file, text) in [
            ("sidecar.toml", sidecar),
            ("gateway.toml", gateway.to_toml()),
        ] {
            std::fs::write(self.dir.join(file), text).map_err(|e| format!("{file}: {e}"))?;
        }
        Ok(())
    }
}

/// Dropped field by field in this order: the services before their
/// backends, the database last.
pub struct Stack {
    commands: Commands,
    /// Indexed by `Service as usize`.
    services: [Process; 3],
    redis: Process,
    _echo: Process,
    pub jwks: Relay,
    pub upstream: Relay,
    pub scim_token: String,
    /// The load's own service client: `(client_id, client_secret)`.
    pub client: (String, String),
    http: reqwest::Client,
    pub database: testkit::Database,
}

impl Stack {
    pub fn start(bin: &Path, dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Self, String> {
        let database = testkit::Database::fresh("pc_loadtest_faults")?;
        let commands = Commands {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            database_url: database.url.clone(),
            redis_addr: free_addr()?,
            auth: free_addr()?,
            sidecar_http: free_addr()?,
            sidecar_grpc: free_addr()?,
            gateway: free_addr()?,
            gateway_admin: free_addr()?,
            admin_token: random_hex(),
        };
        let redis = redis(commands.redis_addr)?;
        let upstream_addr = free_addr()?;
        let mut echo = procs::spawn(
            "demo upstream",
            bin,
            &["gateway", "echo", "--listen", &upstream_addr.to_string()],
            &[],
        )?;
        echo.wait_for_port(upstream_addr, READY)?;
        copy_policies(&dir.join("policies"))?;
        let http = reqwest::Client::new();

        let mut authserver = commands.spawn(Service::Authserver)?;
        ready(
            rt,
            &http,
            &commands.ready_url(Service::Authserver),
            &mut authserver,
        )?;
        let scim_token = commands.cli(&["token", "add", "faults-scim", "--scope", "scim"])?;
        let feed_token = commands.cli(&["token", "add", "faults-feed", "--scope", "feed"])?;
        let client = rt.block_on(add_client(&http, &commands))?;
        let jwks = Relay::start(rt, commands.auth)?;
        let upstream = Relay::start(rt, upstream_addr)?;
        commands.write_configs(&feed_token, &upstream, &jwks)?;
        let mut sidecar = commands.spawn(Service::Sidecar)?;
        ready(
            rt,
            &http,
            &commands.ready_url(Service::Sidecar),
            &mut sidecar,
        )?;
        let mut gateway = commands.spawn(Service::Gateway)?;
        ready(
            rt,
            &http,
            &commands.ready_url(Service::Gateway),
            &mut gateway,
        )?;
        Ok(Self {
            commands,
            services: [gateway, sidecar, authserver],
            redis,
            _echo: echo,
            jwks,
            upstream,
            scim_token,
            client,
            http,
            database,
        })
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.commands.auth)
    }

    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.commands.gateway)
    }

    pub fn sidecar_url(&self) -> String {
        format!("http://{}", self.commands.sidecar_http)
    }

    /// The admin token of both the authserver and the sidecar.
    pub fn admin_token(&self) -> &str {
        &self.commands.admin_token
    }

    /// What the k6 scenarios read (`loadtest/k6/lib.js`'s `stack`).
    pub fn credentials(&self) -> Value {
        let gateway = self.gateway_url();
        json!({
            "services": {
                "gateway": gateway,
                "authserver": self.issuer(),
                "sidecar": self.sidecar_url(),
            },
            "issuer": self.issuer(),
            "admin_token": self.admin_token(),
            "protected_url": format!("{gateway}/api/orders"),
            "browser_url": format!("{gateway}/"),
            "clients": {"service": {"client_id": self.client.0, "client_secret": self.client.1}},
        })
    }

    /// SIGKILL: no goodbye to open connections, nothing flushed.
    pub fn kill(&mut self, service: Service) {
        self.services[service as usize].kill();
    }

    /// Starts a killed service again with the same command; returns once
    /// it is ready.
    pub fn restart(
        &mut self,
        rt: &tokio::runtime::Runtime,
        service: Service,
    ) -> Result<(), String> {
        let mut process = self.commands.spawn(service)?;
        let url = self.commands.ready_url(service);
        let answer = ready(rt, &self.http, &url, &mut process);
        self.services[service as usize] = process;
        answer
    }

    /// Redis stopped (SIGTERM; it keeps nothing on disk, like the
    /// machine's).
    pub fn stop_redis(&mut self) {
        let _ = self.redis.stop();
    }

    /// Redis started again on the same port.
    pub fn start_redis(&mut self) -> Result<(), String> {
        self.redis = redis(self.commands.redis_addr)?;
        Ok(())
    }
}

/// Waits until `url` answers 200; the process's output if it exits first.
fn ready(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    url: &str,
    process: &mut Process,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        // Built inside the runtime: the timeout needs its timer.
        let answer =
            rt.block_on(async { http.get(url).timeout(Duration::from_secs(1)).send().await });
        if matches!(&answer, Ok(r) if r.status() == 200) {
            return Ok(());
        }
        if process.has_exited() || started.elapsed() > READY {
            return Err(format!(
                "the {} is not ready ({url}):\n{}",
                process.name(),
                process.stderr().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The load's service client (not a demo one: `--dev` gives those new
/// secrets at every start, and the authserver is restarted here).
async fn add_client(
    http: &reqwest::Client,
    commands: &Commands,
) -> Result<(String, String), String> {
    let resp = http
        .post(format!("http://{}/admin/v1/clients", commands.auth))
        .bearer_auth(&commands.admin_token)
        .json(&json!({"client_id": "faults-service", "kind": "service", "scopes": ["orders:read"]}))
        .send()
        .await
        .map_err(|e| format!("admin API: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    match body["client_secret"].as_str() {
        Some(secret) if status == 201 => Ok(("faults-service".into(), secret.to_owned())),
        _ => Err(format!("adding the load's client: {status} {body}")),
    }
}

/// A Redis of the run's own, keeping nothing on disk.
fn redis(addr: SocketAddr) -> Result<Process, String> {
    let mut process = procs::spawn(
        "redis",
        Path::new("redis-server"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            &addr.port().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &[],
    )?
    .stopped_by(Stop::Signal("TERM", Duration::from_secs(5)));
    process.wait_for_port(addr, READY)?;
    Ok(process)
}

/// The demo policies, copied: the run's entity writes go to this copy.
fn copy_policies(to: &Path) -> Result<(), String> {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(&from).map_err(|e| format!("{}: {e}", from.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let name = path.file_name().ok_or("a policy file without a name")?;
            std::fs::copy(&path, to.join(name)).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// 128 random bits, hex: the run's admin token.
fn random_hex() -> String {
    bootstrap::random::bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
