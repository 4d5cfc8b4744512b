//! Start the real `authserver` binary on an ephemeral port and talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::Process;

use serde_json::Value;

pub struct Authserver {
    process: Process,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub creds: Value,
    pub http: reqwest::Client,
}

pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authserver"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env("PORTCULLIS_AUTHSERVER__SHUTDOWN_GRACE_SECS", "1");
    cmd
}

impl Authserver {
    /// `authserver --dev serve` with its data directory in `dir`.
    pub fn dev(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, true, args, env)
    }

    /// `authserver --dev serve` on `listen` (for peers that must know its
    /// address before it starts).
    pub fn dev_on(dir: &Path, listen: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_on(dir, true, &listen.to_string(), args, env)
    }

    /// `authserver serve` outside dev mode (the caller's `env` supplies
    /// issuer and master key).
    pub fn production(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, false, &[], env)
    }

    /// On port 0: ready when it logs the address it bound (and, in dev
    /// mode, has written its credentials).
    fn spawn(dir: &Path, dev: bool, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_on(dir, dev, "127.0.0.1:0", args, env)
    }

    fn spawn_on(dir: &Path, dev: bool, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let creds_path = dir.join("creds.json");
        let _ = std::fs::remove_file(&creds_path);
        let mut cmd = command(dir);
        if dev {
            cmd.arg("--dev");
        }
        cmd.args(args).args(["serve", "--listen", listen]);
        if dev {
            cmd.arg("--dev-credentials").arg(&creds_path);
        }
        cmd.envs(env.iter().copied());
        let mut process = Process::start("authserver", cmd);
        let listening = process
            .wait_for_log("listening", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        let creds = if dev {
            // The credentials file appears whole (written, then renamed).
            process
                .wait_until(Duration::from_secs(30), "dev credentials", |_| {
                    serde_json::from_slice(&std::fs::read(&creds_path).ok()?).ok()
                })
                .unwrap_or_else(|e| panic!("{e}"))
        } else {
            Value::Null
        };
        Self {
            addr: listening["listen"].as_str().unwrap().parse().unwrap(),
            process,
            dir: dir.to_owned(),
            creds,
            http: reqwest::Client::new(),
        }
    }

    /// What it logged so far, one line each.
    pub fn logs(&self) -> String {
        self.process.stderr().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn issuer(&self) -> String {
        self.creds["issuer"].as_str().unwrap().to_owned()
    }

    /// (id, secret) of a demo client: `web`, `spa` or `service`.
    pub fn client(&self, which: &str) -> (String, String) {
        let c = &self.creds["clients"][which];
        (
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// POSTs a form, optionally with Basic credentials; returns status,
    /// headers and JSON body (Null when empty).
    pub async fn form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        fields: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(self.url(path)).form(fields);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        (status, headers, json)
    }

    /// GET `path` and parse the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An admin API call with the dev admin token: status and JSON body
    /// (Null when empty).
    pub async fn admin(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(self.creds["admin_token"].as_str().unwrap())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The text of `/metrics`.
    /// Waits (10 s at most) until `/metrics` has the line `line`.
    pub async fn until_metric(&self, line: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self.metrics().await;
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{line}` in\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The embedded (SQLite) store this dev server writes, opened beside it.
    pub async fn embedded_store(&self) -> authserver::store::Store {
        let url = format!("sqlite:{}", self.dir.join("data/authserver.db").display());
        authserver::store::Store::connect(&url).await.unwrap()
    }

    /// A client_credentials token for the demo service client.
    pub async fn service_token(&self, scope: Option<&str>) -> String {
        let (id, secret) = self.client("service");
        let mut fields = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            fields.push(("scope", s));
        }
        let (status, _, body) = self.form("/token", Some((&id, &secret)), &fields).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}
