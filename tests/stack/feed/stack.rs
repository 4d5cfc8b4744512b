//! The stack the change-feed tests run: an authserver, a sidecar, a
//! gateway and the demo upstream as processes on ephemeral ports (as
//! `portcullis up` runs them), and what the tests ask of them: SCIM
//! changes, tokens through the real sign-in pages, the verdicts of the
//! gateway and the sidecar, their metrics and readiness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use testkit::{GatewayConfig, Process, Route, free_port};

use crate::signin::{Browser, query_param, through_the_authserver_as};

pub(super) const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub(super) const PASSWORD: &str = "correct horse battery staple 42";
const SPA_REDIRECT: &str = "http://127.0.0.1:5173/callback";
const PKCE_VERIFIER: &str = "feed-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
/// What "at once" means here, as the feed promises it.
pub(super) const A_SECOND: Duration = Duration::from_secs(1);

/// Where the authserver keeps its records and its short-lived state.
#[derive(Clone, Default)]
pub(super) struct Backends {
    pub(super) database_url: Option<String>,
    pub(super) redis_url: Option<String>,
}

pub(super) fn portcullis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

pub(super) fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Blocks until `url` answers 200 or `process` exits.
pub(super) fn ready(process: &mut Process, url: &str) {
    let http = reqwest::blocking::Client::new();
    process
        .wait_until(Duration::from_secs(60), url, |_| {
            let ok = http.get(url).send().ok()?.status() == 200;
            ok.then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `body` as JSON to `url` with a bearer `token`; the answer, which must
/// be a success.
pub(super) async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: &Value,
) -> Value {
    let resp = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {url}: {status} {answer}");
    answer
}

pub(super) struct Stack {
    dir: tempfile::TempDir,
    backends: Backends,
    auth: SocketAddr,
    pub(super) issuer: String,
    admin_token: String,
    scim_token: String,
    feed_token: String,
    web_secret: String,
    sidecar_http: SocketAddr,
    sidecar_grpc: SocketAddr,
    pub(super) gateway: SocketAddr,
    gateway_admin: SocketAddr,
    upstream: SocketAddr,
    processes: [Option<Process>; 4],
    http: reqwest::Client,
    /// Extra `[feed]` keys for the sidecar and the gateway.
    feed_keys: String,
    /// Extra flags of the authserver (before its subcommand).
    authserver_args: Vec<String>,
    /// Variables every service starts with.
    env: Vec<(String, String)>,
}

pub(super) const AUTHSERVER: usize = 0;
pub(super) const SIDECAR: usize = 1;
pub(super) const GATEWAY: usize = 2;

impl Stack {
    pub(super) fn start(backends: Backends) -> Self {
        Self::start_with(backends, "")
    }

    pub(super) fn start_with(backends: Backends, feed_keys: &str) -> Self {
        Self::build(backends, feed_keys, addr(), &[])
    }

    /// The authserver on `auth` (known to others before it starts), with
    /// `authserver_args` (e.g. `--config`).
    pub(super) fn start_on(auth: SocketAddr, authserver_args: &[&str]) -> Self {
        Self::build(Backends::default(), "", auth, authserver_args)
    }

    /// Every service exporting all its spans to the OTLP receiver at
    /// `endpoint`.
    pub(super) fn traced(endpoint: &str) -> Self {
        let env = ["AUTHSERVER", "SIDECAR", "GATEWAY"]
            .into_iter()
            .flat_map(|service| {
                [
                    ("OTLP_ENDPOINT", endpoint),
                    ("SAMPLE_RATIO", "1.0"),
                    ("EXPORT_TIMEOUT_MS", "2000"),
                ]
                .map(|(key, value)| {
                    (
                        format!("PORTCULLIS_{service}__TRACING__{key}"),
                        value.to_owned(),
                    )
                })
            })
            .collect();
        Self::build_with(Backends::default(), "", addr(), &[], env)
    }

    fn build(backends: Backends, feed_keys: &str, auth: SocketAddr, args: &[&str]) -> Self {
        Self::build_with(backends, feed_keys, auth, args, Vec::new())
    }

    fn build_with(
        backends: Backends,
        feed_keys: &str,
        auth: SocketAddr,
        args: &[&str],
        env: Vec<(String, String)>,
    ) -> Self {
        let upstream = addr();
        let echo = Process::start("demo upstream", {
            let mut c = portcullis();
            c.args(["gateway", "echo", "--listen", &upstream.to_string()]);
            c
        });
        let mut stack = Self {
            dir: tempfile::tempdir().unwrap(),
            backends,
            auth,
            issuer: String::new(),
            admin_token: String::new(),
            scim_token: String::new(),
            feed_token: String::new(),
            web_secret: String::new(),
            sidecar_http: addr(),
            sidecar_grpc: addr(),
            gateway: addr(),
            gateway_admin: addr(),
            upstream,
            processes: [None, None, None, Some(echo)],
            http: reqwest::Client::new(),
            feed_keys: feed_keys.to_owned(),
            authserver_args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
        };
        let creds = stack.start_authserver();
        stack.issuer = creds["issuer"].as_str().unwrap().to_owned();
        stack.admin_token = creds["admin_token"].as_str().unwrap().to_owned();
        // Tokens of their own: `--dev` renews its demo tokens at every start.
        stack.scim_token = stack.cli(&["token", "add", "provisioner", "--scope", "scim"]);
        stack.feed_token = stack.cli(&["token", "add", "followers", "--scope", "feed"]);
        stack.web_secret = stack.add_web_client();
        stack.start_sidecar();
        stack.start_gateway();
        stack
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("authserver")
    }

    /// `authserver --dev` with the backends' flags.
    fn authserver_command(&self) -> Command {
        let mut cmd = portcullis();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("authserver").arg("--dev");
        cmd.args(&self.authserver_args);
        if let Some(url) = &self.backends.database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.env("PORTCULLIS_AUTHSERVER__DATA_DIR", self.data());
        cmd
    }

    fn start_authserver(&mut self) -> Value {
        let creds = self.dir.path().join("authserver-credentials.json");
        let _ = std::fs::remove_file(&creds);
        let mut cmd = self.authserver_command();
        cmd.args(["serve", "--listen", &self.auth.to_string()])
            .arg("--dev-credentials")
            .arg(&creds);
        if let Some(url) = &self.backends.redis_url {
            cmd.args(["--redis-url", url]);
        }
        let mut process = Process::start("authserver", cmd);
        let value = process
            .wait_until(Duration::from_secs(60), "dev credentials", |_| {
                serde_json::from_slice(&std::fs::read(&creds).ok()?).ok()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        process
            .wait_for_port(self.auth, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        self.processes[AUTHSERVER] = Some(process);
        value
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.authserver_command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn feed_table(&self) -> String {
        format!(
            "[feed]\nurl = {}\ntoken = {}\n{}\n",
            json!(self.issuer),
            json!(self.feed_token),
            self.feed_keys
        )
    }

    fn start_sidecar(&mut self) {
        let config = self.dir.path().join("sidecar.toml");
        let text = format!(
            "[[issuers]]\nissuer = {}\naudiences = [\"portcullis\"]\n\n{}",
            json!(self.issuer),
            self.feed_table()
        );
        std::fs::write(&config, text).unwrap();
        let mut cmd = portcullis();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(["sidecar", "serve", "--config"])
            .arg(&config)
            .arg("--policies")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .args(["--http", &self.sidecar_http.to_string()])
            .args(["--grpc", &self.sidecar_grpc.to_string()]);
        let mut process = Process::start("sidecar", cmd);
        // Ready only once the feed's snapshot is applied.
        ready(
            &mut process,
            &format!("http://{}/readyz", self.sidecar_http),
        );
        self.processes[SIDECAR] = Some(process);
    }

    fn start_gateway(&mut self) {
        let base = format!("http://{}", self.gateway);
        let mut config = GatewayConfig::new()
            .set("listen", json!(self.gateway.to_string()))
            .set("admin", json!(self.gateway_admin.to_string()))
            .set("threads", 1)
            .set("upgrade_sock", json!(self.dir.path().join("gw.sock")))
            .set(
                "private_cookies",
                r#"["portcullis-session", "portcullis-csrf"]"#,
            );
        let mut store = "";
        if let Some(url) = &self.backends.redis_url {
            config = config.set("redis_url", json!(url)).set(
                "redis_prefix",
                json!(format!("pc_feed_{}:", self.gateway.port())),
            );
            store = "store = \"redis\"";
        }
        let config = config
            .issuer(&self.issuer, &["portcullis"])
            .upstream("demo", &[self.upstream])
            .route(Route::new("/api", "demo", testkit::Auth::Jwt).set("policy", true))
            .route(Route::new("/app", "demo", testkit::Auth::Session).set("policy", true))
            .table(&format!(
                "[sidecar]\naddress = {}\ndeadline_ms = 500",
                json!(format!("http://{}", self.sidecar_grpc))
            ))
            .table(&format!(
                "[session]\nissuer = {issuer}\nclient_id = \"feed-web\"\nclient_secret = {secret}\n\
                 redirect_uri = {redirect}\nscopes = [\"openid\", \"profile\", \"groups\", \"offline_access\"]\n\
                 access_audience = \"portcullis\"\ncookie_secret = \"feed-test-cookie-secret-0123456789abcdef\"\n{store}",
                issuer = json!(self.issuer),
                secret = json!(self.web_secret),
                redirect = json!(format!("{base}/_auth/callback")),
            ))
            .table(&self.feed_table());
        let path = self.dir.path().join("gateway.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        let mut cmd = portcullis();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(["gateway", "serve", "--config"]).arg(&path);
        let mut process = Process::start("gateway", cmd);
        ready(
            &mut process,
            &format!("http://{}/readyz", self.gateway_admin),
        );
        self.processes[GATEWAY] = Some(process);
    }

    /// One of the running services (`AUTHSERVER`, `SIDECAR`, `GATEWAY`).
    pub(super) fn process(&self, which: usize) -> &Process {
        self.processes[which].as_ref().expect("running")
    }

    /// SIGKILL to one of the services (no goodbye to anyone).
    pub(super) fn kill(&mut self, which: usize) {
        if let Some(mut p) = self.processes[which].take() {
            p.kill();
        }
    }

    pub(super) fn restart(&mut self, which: usize) {
        self.kill(which);
        match which {
            AUTHSERVER => drop(self.start_authserver()),
            SIDECAR => self.start_sidecar(),
            _ => self.start_gateway(),
        }
    }

    fn add_web_client(&self) -> String {
        let redirect = format!("http://{}/_auth/callback", self.gateway);
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/admin/v1/clients", self.issuer))
            .bearer_auth(&self.admin_token)
            .json(&json!({
                "client_id": "feed-web", "kind": "web",
                "redirect_uris": [redirect],
                "post_logout_redirect_uris": [format!("http://{}/", self.gateway)],
                "scopes": ["openid", "profile", "groups", "offline_access"],
            }))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().unwrap();
        body["client_secret"].as_str().unwrap().to_owned()
    }

    async fn scim(&self, method: &str, path: &str, body: &Value) -> Value {
        let url = format!("{}/scim/v2{path}", self.issuer);
        send(&self.http, method, &url, &self.scim_token, body).await
    }

    pub(super) async fn new_user(&self, name: &str) -> String {
        let body =
            json!({"schemas": [USER], "userName": name, "password": PASSWORD, "active": true});
        self.scim("POST", "/Users", &body).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(super) async fn group_id(&self, name: &str) -> String {
        let filter: String =
            form_urlencoded::byte_serialize(format!("displayName eq \"{name}\"").as_bytes())
                .collect();
        let resp = self
            .http
            .get(format!("{}/scim/v2/Groups?filter={filter}", self.issuer))
            .bearer_auth(&self.scim_token)
            .send()
            .await
            .unwrap();
        let found: Value = resp.json().await.unwrap();
        found["Resources"][0]["id"].as_str().unwrap().to_owned()
    }

    pub(super) async fn membership(&self, group: &str, op: &str, user: &str) {
        let op = match op {
            "add" => json!({"op": "add", "path": "members", "value": [{"value": user}]}),
            _ => json!({"op": "remove", "path": format!("members[value eq \"{user}\"]")}),
        };
        let body = json!({"schemas": [PATCH], "Operations": [op]});
        self.scim("PATCH", &format!("/Groups/{group}"), &body).await;
    }

    pub(super) async fn set_active(&self, user: &str, active: bool) {
        let body = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": active}]});
        self.scim("PATCH", &format!("/Users/{user}"), &body).await;
    }

    /// An access token of `username` from the code flow of the demo SPA
    /// (PKCE), through the authserver's real sign-in pages.
    pub(super) async fn token(&self, username: &str) -> String {
        let mut browser = Browser::new();
        let back = through_the_authserver_as(
            &mut browser,
            &self.issuer,
            &self.spa_authorize(),
            username,
            PASSWORD,
        )
        .await;
        self.spa_token(&back).await
    }

    /// The demo SPA's authorization request (with PKCE).
    pub(super) fn spa_authorize(&self) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(bootstrap::digest::sha256(PKCE_VERIFIER.as_bytes()));
        let redirect: String = form_urlencoded::byte_serialize(SPA_REDIRECT.as_bytes()).collect();
        format!(
            "{}/authorize?response_type=code&client_id=demo-spa&redirect_uri={redirect}\
             &scope=openid%20orders%3Aread&state=feed-test-state&code_challenge={challenge}\
             &code_challenge_method=S256",
            self.issuer
        )
    }

    /// The access token for the code in `back`, where the sign-in sent
    /// the SPA.
    pub(super) async fn spa_token(&self, back: &str) -> String {
        let code = query_param(back, "code").unwrap_or_else(|| panic!("no code in {back}"));
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", SPA_REDIRECT),
                ("client_id", "demo-spa"),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// What the gateway and the sidecar say of `GET /api/orders` with
    /// `token`: the gateway's status, the sidecar's `/v1/check` answer
    /// (`Allow`, `Deny`, or its HTTP status when it refused the token).
    pub(super) async fn verdicts(&self, token: &str) -> (u16, String) {
        let gateway = self
            .http
            .get(format!("http://{}/api/orders", self.gateway))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let resp = self
            .http
            .post(format!("http://{}/v1/check", self.sidecar_http))
            .json(&json!({"method": "GET", "path": "/api/orders", "authorization": format!("Bearer {token}")}))
            .send()
            .await
            .unwrap();
        let sidecar = match resp.status().as_u16() {
            200 => resp.json::<Value>().await.unwrap()["decision"]
                .as_str()
                .unwrap()
                .to_owned(),
            status => status.to_string(),
        };
        (gateway, sidecar)
    }

    /// Polls until both say `expected`; how long that took. Fails after
    /// `limit`.
    pub(super) async fn until(
        &self,
        token: &str,
        expected: (u16, &str),
        limit: Duration,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let (gateway, sidecar) = self.verdicts(token).await;
            if (gateway, sidecar.as_str()) == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "still gateway {gateway} / sidecar {sidecar} after {limit:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The status of the sidecar's or the gateway's `/readyz`.
    pub(super) async fn readiness(&self, which: usize) -> u16 {
        let url = match which {
            SIDECAR => format!("http://{}/readyz", self.sidecar_http),
            _ => format!("http://{}/readyz", self.gateway_admin),
        };
        self.http.get(url).send().await.unwrap().status().as_u16()
    }

    /// `/metrics` of one of the services, as text.
    pub(super) async fn metrics(&self, which: usize) -> String {
        let url = match which {
            AUTHSERVER => format!("{}/metrics", self.issuer),
            SIDECAR => format!("http://{}/metrics", self.sidecar_http),
            _ => format!("http://{}/metrics", self.gateway_admin),
        };
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `/metrics` of the sidecar or the gateway: the value of `name`.
    pub(super) async fn metric(&self, which: usize, name: &str) -> f64 {
        let text = self.metrics(which).await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }
}
