//! Start the real `authserver` binary on an ephemeral port and talk to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Authserver {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub creds: Value,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
}

impl Drop for Authserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
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

    /// `authserver serve` outside dev mode (the caller's `env` supplies
    /// issuer and master key).
    pub fn production(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, false, &[], env)
    }

    fn spawn(dir: &Path, dev: bool, args: &[&str], env: &[(&str, &str)]) -> Self {
        let creds_path = dir.join("creds.json");
        let _ = std::fs::remove_file(&creds_path);
        let mut cmd = command(dir);
        if dev {
            cmd.arg("--dev");
        }
        cmd.args(args).args(["serve", "--listen", "127.0.0.1:0"]);
        if dev {
            cmd.arg("--dev-credentials").arg(&creds_path);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn authserver");
        let stderr = collect(child.stderr.take().unwrap());
        let _stdout = collect(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = stderr.lock().unwrap().iter().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening")
                    .then(|| v["listen"].as_str().unwrap().parse().unwrap())
            });
            if let Some(addr) = found
                && (!dev || creds_path.exists())
            {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "authserver exited with {status}: {:#?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "authserver did not start: {:#?}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let creds = if dev {
            serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap()
        } else {
            Value::Null
        };
        Self {
            child,
            addr,
            dir: dir.to_owned(),
            creds,
            stderr,
            http: reqwest::Client::new(),
        }
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
