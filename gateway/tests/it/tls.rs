//! HTTPS with certificates chosen by SNI, TLS 1.2 and 1.3, HTTP/2 by ALPN,
//! and HTTP/2 without TLS (h2c).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{echo_upstream, free_port, start, wait_for_port};

/// A self-signed P-256 certificate for `san` (e.g. `DNS:a.test`).
fn certificate(dir: &Path, name: &str, san: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={name}"), "-addext"])
        .arg(format!("subjectAltName={san}"))
        // A leaf, not a CA: webpki refuses a CA certificate as end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

fn client(trust: &[&str], tls: SocketAddr) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .resolve("a.test", tls)
        .resolve("x.b.test", tls)
        .tls_built_in_root_certs(false);
    for pem in trust {
        let cert = reqwest::Certificate::from_pem(&std::fs::read(pem).unwrap()).unwrap();
        builder = builder.add_root_certificate(cert);
    }
    builder
}

#[tokio::test(flavor = "multi_thread")]
async fn https_picks_the_certificate_by_sni_and_speaks_h2() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = certificate(dir.path(), "a", "DNS:a.test");
    let (b_cert, b_key) = certificate(dir.path(), "b", "DNS:*.b.test");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = start(&format!(
        r#"
[tls]
listen = "{tls}"
certificates = [
  {{ cert = "{a_cert}", key = "{a_key}" }},
  {{ cert = "{b_cert}", key = "{b_key}" }},
]

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    ));
    wait_for_port(tls, "the TLS listener");

    let both = client(&[&a_cert, &b_cert], tls).build().unwrap();
    for host in ["a.test", "x.b.test"] {
        let resp = both
            .get(format!("https://{host}:{}/hello", tls.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(
            resp.version(),
            reqwest::Version::HTTP_2,
            "ALPN h2 for {host}"
        );
        let seen: Value = resp.json().await.unwrap();
        assert_eq!(seen["path"], "/hello");
    }
    // Trusting only `a`'s certificate, `x.b.test` fails: it was served b's.
    let only_a = client(&[&a_cert], tls).build().unwrap();
    assert!(
        only_a
            .get(format!("https://x.b.test:{}/", tls.port()))
            .send()
            .await
            .is_err()
    );
    // TLS 1.2 and TLS 1.3, HTTP/1.1 when the client offers only that.
    for (min, max) in [
        (
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_2,
        ),
        (
            reqwest::tls::Version::TLS_1_3,
            reqwest::tls::Version::TLS_1_3,
        ),
    ] {
        let c = client(&[&a_cert], tls)
            .min_tls_version(min)
            .max_tls_version(max)
            .http1_only()
            .build()
            .unwrap();
        let resp = c
            .get(format!("https://a.test:{}/", tls.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{min:?}: {e:?}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    }
    // HTTP/2 without TLS, by prior knowledge.
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .get(format!("http://{}/plain", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, _) = certificate(dir.path(), "a", "DNS:a.test");
    let (_, b_key) = certificate(dir.path(), "b", "DNS:b.test");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[tls]
listen = "127.0.0.1:8443"
certificates = [{{ cert = "{a_cert}", key = "{b_key}" }}]

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:9"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not belong to") && err.contains("a.pem"),
        "{err}"
    );
}

/// A TLS upstream (here another gateway's HTTPS listener in front of the
/// echo app), verified against `upstream_ca_file` by name, proxied and
/// health-checked over TLS; the wrong name fails verification.
#[tokio::test(flavor = "multi_thread")]
async fn tls_upstreams_are_verified_by_name() {
    let echo = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "a", "DNS:a.test");
    let inner_tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inner = start(&format!(
        r#"
[tls]
listen = "{inner_tls}"
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "echo"
addresses = ["{echo}"]

[[routes]]
path_prefix = "/"
upstream = "echo"
auth = "public"
"#
    ));
    wait_for_port(inner_tls, "the inner TLS listener");
    let outer = start(&format!(
        r#"
upstream_ca_file = "{cert}"

[[upstreams]]
name = "good"
addresses = ["{inner_tls}"]
tls = true
sni = "a.test"
health_check = {{ path = "/healthz", interval_ms = 100, timeout_ms = 500, unhealthy_threshold = 1, healthy_threshold = 1 }}

[[upstreams]]
name = "wrong-name"
addresses = ["{inner_tls}"]
tls = true
sni = "b.test"

[[routes]]
path_prefix = "/good"
upstream = "good"
auth = "public"

[[routes]]
path_prefix = "/wrong"
upstream = "wrong-name"
auth = "public"
"#
    ));
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("http://{}/good/x", outer.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["served_by"], echo.to_string(), "through the TLS hop");
    let resp = http
        .get(format!("http://{}/wrong/x", outer.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        502,
        "a certificate for another name is refused"
    );
    // The health check passes over TLS with the same trust: once the inner
    // gateway has answered several probes, the address is still healthy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("http://{}/metrics", inner.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let served: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"gateway_requests_total{route="/",status="200"} "#))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if served >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no health probes reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    outer
        .metrics_with(&[&format!(
            "gateway_upstream_healthy{{address=\"{inner_tls}\",upstream=\"good\"}} 1"
        )])
        .await;
}
