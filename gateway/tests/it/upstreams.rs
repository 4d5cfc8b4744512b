//! Upstream pools: active health checks take a dead address out of
//! rotation (so even non-retryable requests succeed) and bring it back;
//! consistent hashing keeps each user on one address; a host name is
//! resolved at start; upstream connections are kept alive and reused, and
//! closed when their client hangs up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer};

use crate::support::{echo_upstream, free_port, start};

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_take_dead_addresses_out_and_bring_them_back() {
    let live = echo_upstream().await;
    let dead_port = free_port();
    let dead: std::net::SocketAddr = format!("127.0.0.1:{dead_port}").parse().unwrap();
    let gw = start(&format!(
        r#"
[[upstreams]]
name = "app"
addresses = ["{live}", "{dead}"]
health_check = {{ path = "/healthz", interval_ms = 100, timeout_ms = 200, unhealthy_threshold = 1, healthy_threshold = 1 }}

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    ));
    let http = reqwest::Client::new();
    gw.metrics_with(&[&format!(
        "gateway_upstream_healthy{{address=\"{dead}\",upstream=\"app\"}} 0"
    )])
    .await;
    // POSTs are never retried, so without health checks half would 502.
    for _ in 0..20 {
        let resp = http
            .post(format!("http://{}/orders", gw.addr))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    // The dead address comes to life: back in rotation.
    let listener = tokio::net::TcpListener::bind(dead).await.unwrap();
    tokio::spawn(gateway::echo::serve(listener));
    gw.metrics_with(&[&format!(
        "gateway_upstream_healthy{{address=\"{dead}\",upstream=\"app\"}} 1"
    )])
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut served = BTreeSet::new();
    while served.len() < 2 {
        assert!(Instant::now() < deadline, "only {served:?} served");
        let seen: Value = http
            .get(format!("http://{}/x", gw.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        served.insert(seen["served_by"].as_str().unwrap().to_owned());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hashing_keeps_each_subject_on_one_address() {
    let pool = [
        echo_upstream().await,
        echo_upstream().await,
        echo_upstream().await,
    ];
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let gw = start(&format!(
        r#"
[[issuers]]
issuer = "{}"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["{}", "{}", "{}"]
balance = "consistent_hash"
hash_on = "subject"

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "jwt"
"#,
        issuer.url, pool[0], pool[1], pool[2]
    ));
    let http = reqwest::Client::new();
    let mut by_subject: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..4 {
        for user in 0..12 {
            let mut c = issuer.claims(&format!("user-{user}"));
            c["jti"] = json!(format!("{round}-{user}"));
            let seen: Value = http
                .get(format!("http://{}/x", gw.addr))
                .bearer_auth(key.sign(&c))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            by_subject
                .entry(format!("user-{user}"))
                .or_default()
                .insert(seen["served_by"].as_str().unwrap().to_owned());
        }
    }
    assert!(by_subject.values().all(|s| s.len() == 1), "{by_subject:?}");
    let used: BTreeSet<&String> = by_subject.values().flatten().collect();
    assert!(used.len() >= 2, "spread: {used:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_name_upstream_is_resolved_at_start() {
    let live = echo_upstream().await;
    let gw = start(&format!(
        r#"
[[upstreams]]
name = "app"
addresses = ["localhost:{}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#,
        live.port()
    ));
    let resp = reqwest::get(format!("http://{}/by-name", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["path"], "/by-name");
}

/// A TCP forwarder in front of `upstream` that counts the connections it
/// accepts: how many upstream connections the gateway opened.
async fn counting_forwarder(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, accepted)
}

/// One HTTP/1.1 response with a `content-length` body: status and body.
/// A gateway forwarding everything (public) by `forwarding` to one
/// upstream at `address`, with `settings` on the upstream.
fn forwarded_by(forwarding: &str, address: std::net::SocketAddr, settings: &str) -> String {
    format!(
        r#"
forwarding = "{forwarding}"

[[upstreams]]
name = "app"
addresses = ["{address}"]
{settings}

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    )
}

async fn read_response(conn: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// A client's requests one after another on one connection reuse their
/// upstream connection, whether each proxy thread keeps its own upstream
/// connections (work stealing off, the default) or all share them.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_kept_alive_and_reused() {
    for stealing in [false, true] {
        let (front, accepted) = counting_forwarder(echo_upstream().await).await;
        let gw = start(&format!(
            r#"
threads = 2
work_stealing = {stealing}

[[upstreams]]
name = "app"
addresses = ["{front}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
        ));
        // One client connection, requests one after another.
        let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        for i in 0..50 {
            let request = format!("GET /orders/{i} HTTP/1.1\r\nHost: demo\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut conn, request.as_bytes())
                .await
                .unwrap();
            let (status, body) = read_response(&mut conn).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(&format!("/orders/{i}")), "{body}");
        }
        // Pingora's pool now and then hands a connection over a moment
        // too late (its idle watcher runs on the other thread) and opens a
        // new one; without reuse there would be 50.
        let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (1..=10).contains(&opened),
            "work_stealing = {stealing}: 50 requests opened {opened} upstream connections"
        );
    }
}

/// A client that hangs up while the upstream is still working has its
/// upstream connection closed at once, on both forwarding paths (not when
/// the upstream finally answers or the read timeout ends it): a long poll
/// abandoned by its client stops holding an upstream connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_closes_its_upstream_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for forwarding in ["direct", "pingora"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let (asked, got_request) = tokio::sync::oneshot::channel();
        // Reads the request, never answers, reports how long until EOF.
        let watcher = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the request arrived");
                head.extend_from_slice(&buf[..n]);
            }
            let _ = asked.send(());
            let since = Instant::now();
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
            (n.map(|r| r.map_err(|e| e.kind())), since.elapsed())
        });
        let gw = start(&forwarded_by(
            forwarding,
            upstream,
            "read_timeout_ms = 30000",
        ));
        let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        client
            .write_all(b"GET /poll HTTP/1.1\r\nHost: demo\r\n\r\n")
            .await
            .unwrap();
        got_request.await.unwrap();
        drop(client);
        let (read, waited) = watcher.await.unwrap();
        match read {
            Ok(Ok(0) | Err(_)) => {}
            other => panic!("{forwarding}: the upstream connection stayed open: {other:?}"),
        }
        assert!(
            waited < Duration::from_secs(5),
            "{forwarding}: closed only after {waited:?}"
        );
    }
}

/// An upstream that stops taking a request body without answering or
/// closing is given up after `write_timeout_ms`, on both forwarding paths:
/// the client gets a 504 rather than a connection held until it gives up.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_stops_reading_a_body_is_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for forwarding in ["direct", "pingora"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        // Reads the request head, then neither reads nor answers.
        let stalled = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if conn.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(buf[0]);
            }
            // Held open, unread, until the test ends (aborted).
            std::future::pending::<()>().await;
            drop(conn);
        });
        let gw = start(&forwarded_by(
            forwarding,
            upstream,
            "read_timeout_ms = 1000\nwrite_timeout_ms = 500",
        ));
        // Far more than loopback's socket buffers hold between the two.
        let length = 64usize << 20;
        let client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut reader, mut writer) = client.into_split();
        let sending = tokio::spawn(async move {
            let head =
                format!("PUT /upload HTTP/1.1\r\nHost: demo\r\nContent-Length: {length}\r\n\r\n");
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..length / chunk.len() {
                writer.write_all(&chunk).await?;
            }
            Ok::<_, std::io::Error>(())
        });
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(15), async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let waited = started.elapsed();
        sending.abort();
        stalled.abort();
        assert!(read.is_ok(), "{forwarding}: no answer after {waited:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 504"),
            "{forwarding}: answered {answer:?} after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(8),
            "{forwarding}: answered only after {waited:?}"
        );
    }
}
