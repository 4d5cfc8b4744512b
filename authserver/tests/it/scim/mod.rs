//! SCIM 2.0 through the real server: scim2-tester on both backends
//! (`tester.rs`), what it does not cover (`protocol.rs`: bulk, ETags,
//! value-path filters, access), the requests Microsoft Entra ID and Okta
//! send (`clients.rs`), and what provisioning means for sign-in
//! (`semantics.rs`).

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::server::{Authserver, command};

mod clients;
mod protocol;
mod semantics;
mod tester;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A dev server and a service token with the `scim` scope.
pub struct Scim {
    pub server: Authserver,
    pub token: String,
}

/// `authserver --dev ARGS…` on the server's directory: its stdout.
pub fn cli(server: &Authserver, global: &[String], args: &[&str]) -> String {
    let out = command(&server.dir)
        .arg("--dev")
        .args(global)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Scim {
    pub fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_with(dir, args, &[])
    }

    pub fn start_with(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let server = Authserver::dev(dir, args, env);
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let token = cli(
            &server,
            &args,
            &["token", "add", "provisioner", "--scope", "scim"],
        );
        Self { server, token }
    }

    pub fn base(&self) -> String {
        self.server.url("/scim/v2")
    }

    /// A SCIM request with the token and `extra` headers: status, headers,
    /// JSON body (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> (u16, HeaderMap, Value) {
        let url = format!("{}{path}", self.base());
        let mut req = self
            .server
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, json)
    }

    /// Creates a user; its resource.
    pub async fn user(&self, body: Value) -> Value {
        let (status, _, created) = self.call("POST", "/Users", Some(&body), &[]).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
        let (status, _, created) = self.call("POST", "/Groups", Some(&body), &[]).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    pub async fn patch(&self, path: &str, ops: Value) -> (u16, Value) {
        let body = json!({"schemas": [PATCH], "Operations": ops});
        let (status, _, answer) = self.call("PATCH", path, Some(&body), &[]).await;
        (status, answer)
    }
}

/// `?filter=…` as a client encodes it.
pub fn filter(f: &str) -> String {
    format!(
        "filter={}",
        form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
    )
}
