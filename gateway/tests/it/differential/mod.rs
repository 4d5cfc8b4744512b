//! The gateway's two forwarding paths are one behaviour: a corpus of
//! requests (every method and body framing, `Expect`, hop-by-hop headers,
//! large headers, and the request-smuggling shapes) goes through a gateway
//! forwarding HTTP/1.1 itself (`forwarding = "direct"`) and one leaving it
//! to pingora-proxy, each in front of its own scripted upstream (every
//! response framing, 1xx, trailers, HEAD, 204/304, an early answer, a
//! close mid-body, garbage, a timeout). What each upstream received and
//! what each client received must be the same: heads byte for byte,
//! bodies by content (chunk boundaries follow how reads fell), and whether
//! the gateway closed the client's connection (except after an early
//! answer: see `Case::reuse_by_timing`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::start;

mod upstream;
mod wire;

use upstream::Scripted;
use wire::{Message, Parsed};

struct Case {
    name: String,
    bytes: Vec<u8>,
    /// The responses answer HEAD requests (no body to read).
    head: bool,
    /// Whether the client's connection is kept depends on timing: an
    /// early answer that goes out before the request body was read to its
    /// end closes it. pingora-proxy relays the answer while the body is
    /// still on its way (sometimes before its end, sometimes after); the
    /// direct path sends the whole body first. The answer, and what the
    /// upstream received, must still be the same.
    reuse_by_timing: bool,
}

/// `method target` with `headers` (raw lines) and a body sent as given.
fn request(method: &str, target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{method} {target} HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: diff-{}\r\n{headers}\r\n",
        target.trim_start_matches('/').replace('/', "-")
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn case(name: &str, bytes: Vec<u8>) -> Case {
    Case {
        name: name.to_owned(),
        bytes,
        head: false,
        reuse_by_timing: false,
    }
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    // Every response framing and bodiless status, and the upstream's failures.
    // `/slow` right after `/cl`: it goes on the connection `/cl` left idle,
    // where a timeout must not be taken for a stale connection and retried.
    for path in [
        "/cl",
        "/slow",
        "/chunked",
        "/trailers",
        "/close",
        "/http10",
        "/no-content",
        "/not-modified",
        "/hints",
        "/big-headers",
        "/cut-body",
        "/cut-head",
        "/garbage",
    ] {
        cases.push(case(&format!("GET {path}"), request("GET", path, "", b"")));
    }
    cases.push(Case {
        head: true,
        ..case("HEAD /cl", request("HEAD", "/cl", "", b""))
    });
    cases.push(Case {
        head: true,
        ..case("HEAD /chunked", request("HEAD", "/chunked", "", b""))
    });
    // Methods and request bodies of every framing.
    for method in ["DELETE", "OPTIONS", "PURGE"] {
        cases.push(case(method, request(method, "/echo", "", b"")));
    }
    let big: Vec<u8> = (0..1_048_576u32).map(|i| b'a' + (i % 26) as u8).collect();
    cases.push(case(
        "POST with a length",
        request("POST", "/echo", "Content-Length: 5\r\n", b"hello"),
    ));
    cases.push(case(
        "POST 1 MiB with a length",
        request(
            "POST",
            "/echo",
            &format!("Content-Length: {}\r\n", big.len()),
            &big,
        ),
    ));
    cases.push(case(
        "PUT chunked",
        request(
            "PUT",
            "/echo",
            "Transfer-Encoding: chunked\r\n",
            b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
        ),
    ));
    cases.push(case(
        "PATCH 256 KiB chunked",
        request(
            "PATCH",
            "/echo",
            "Transfer-Encoding: chunked\r\n",
            &chunked(&big[..262_144], 10_000),
        ),
    ));
    // A reused connection the upstream closes without answering: a PUT
    // (idempotent) goes again on a fresh one, body and all, from the
    // copy Pingora keeps of a body up to 64 KiB.
    cases.push(case(
        "GET /cl before a stale PUT",
        request("GET", "/cl", "", b""),
    ));
    cases.push(case(
        "PUT with a length on a stale connection",
        request("PUT", "/stale", "Content-Length: 5\r\n", b"hello"),
    ));
    cases.push(case(
        "PUT chunked on a stale connection",
        request(
            "PUT",
            "/stale",
            "Transfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
    ));
    cases.push(case(
        "POST chunked with trailers",
        request(
            "POST",
            "/echo",
            "Transfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ),
    ));
    cases.push(Case {
        reuse_by_timing: true,
        ..case(
            "POST with an early answer",
            request(
                "POST",
                "/early",
                &format!("Content-Length: {}\r\n", 262_144),
                &big[..262_144],
            ),
        )
    });
    cases.push(case(
        "Expect: 100-continue",
        request(
            "POST",
            "/echo",
            "Expect: 100-continue\r\nContent-Length: 5\r\n",
            b"hello",
        ),
    ));
    cases.push(case(
        "HTTP/1.0",
        b"GET /cl HTTP/1.0\r\nHost: app.test\r\nX-Request-Id: diff-10\r\n\r\n".to_vec(),
    ));
    cases.push(case(
        "hop-by-hop headers",
        request(
            "GET",
            "/echo",
            "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic cm9vdA==\r\nUpgrade: h2c\r\n",
            b"",
        ),
    ));
    let large: String = (0..20)
        .map(|i| format!("X-Large-{i}: {}\r\n", "l".repeat(1000)))
        .collect();
    cases.push(case(
        "large request headers",
        request("GET", "/echo", &large, b""),
    ));
    cases.push(case(
        "absolute-form target",
        b"GET http://app.test/cl HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: diff-abs\r\n\r\n"
            .to_vec(),
    ));
    cases.extend(smuggling());
    cases
}

/// Request-smuggling shapes: each must be refused, or framed the same way.
fn smuggling() -> Vec<Case> {
    let post = |name: &str, headers: &str, body: &[u8]| {
        case(name, request("POST", "/echo", headers, body))
    };
    vec![
        post(
            "Content-Length and chunked",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "two different lengths",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            b"hello!",
        ),
        post(
            "two equal lengths",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            b"hello",
        ),
        post("a list of lengths", "Content-Length: 5, 5\r\n", b"hello"),
        post("a signed length", "Content-Length: +5\r\n", b"hello"),
        post(
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "xchunked",
            "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
            b"hello",
        ),
        post(
            "space before the colon",
            "Transfer-Encoding : chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "obs-fold on Transfer-Encoding",
            "Transfer-Encoding:\r\n chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "obs-fold on another header",
            "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
            b"hello",
        ),
        case(
            "bare LF",
            b"GET /cl HTTP/1.1\nHost: app.test\nX-Request-Id: diff-lf\n\n".to_vec(),
        ),
        post(
            "a 0x chunk size",
            "Transfer-Encoding: chunked\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "a signed chunk size",
            "Transfer-Encoding: chunked\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "an overflowing chunk size",
            "Transfer-Encoding: chunked\r\n",
            b"10000000000000005\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "a chunk longer than its size",
            "Transfer-Encoding: chunked\r\n",
            b"3\r\nhello\r\n0\r\n\r\n",
        ),
        case("two pipelined requests", {
            let mut bytes = request("GET", "/cl", "", b"");
            bytes.extend(request("GET", "/chunked", "", b""));
            bytes
        }),
        case("a body, then a pipelined request", {
            let mut bytes = request("POST", "/echo", "Content-Length: 5\r\n", b"hello");
            bytes.extend(request("GET", "/cl", "", b""));
            bytes
        }),
        case("a chunked body, then a pipelined request", {
            let mut bytes = request(
                "POST",
                "/echo",
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            );
            bytes.extend(request("GET", "/cl", "", b""));
            bytes
        }),
        post(
            "a request hidden in a zero-length body",
            "Content-Length: 0\r\n",
            b"GET /hidden HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: diff-hidden\r\n\r\n",
        ),
        case(
            "a NUL in a header value",
            request("GET", "/echo", "X-Nul: a\0b\r\n", b""),
        ),
        case(
            "a space in a header name",
            request("GET", "/echo", "X Spaced: 1\r\n", b""),
        ),
    ]
}

/// What one case came to through one gateway.
#[derive(Debug, PartialEq)]
struct Outcome {
    upstream: Vec<Message>,
    client: Vec<Message>,
    /// Bytes after the last whole response.
    leftover: String,
    closed: bool,
}

/// Sends `case` on a fresh connection and reads until the gateway closes
/// it or stays quiet for `quiet`.
async fn run(gateway: std::net::SocketAddr, upstream: &Scripted, case: &Case) -> Outcome {
    let quiet = Duration::from_millis(if case.name.contains("slow") {
        1500
    } else {
        400
    });
    let mut conn = tokio::net::TcpStream::connect(gateway).await.unwrap();
    conn.write_all(&case.bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let closed = loop {
        match tokio::time::timeout(quiet, conn.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    let method = if case.head { "HEAD" } else { "GET" };
    let mut client = Vec::new();
    let mut at = 0;
    while at < got.len() {
        match wire::response(&got[at..], method, closed) {
            Parsed::Done(mut message, used) => {
                // The one header that may differ: the clock's second (and,
                // where reuse is a matter of timing, `Connection`).
                message.head = message
                    .head
                    .split("\r\n")
                    .filter(|line| {
                        let line = line.to_ascii_lowercase();
                        let timing = case.reuse_by_timing && line.starts_with("connection:");
                        !line.starts_with("date:") && !timing
                    })
                    .collect::<Vec<_>>()
                    .join("\r\n");
                client.push(message);
                at += used;
            }
            Parsed::Partial => break,
        }
    }
    Outcome {
        upstream: upstream.take(),
        client,
        leftover: String::from_utf8_lossy(&got[at..]).into_owned(),
        closed: closed && !case.reuse_by_timing,
    }
}

fn gateway_config(upstream: std::net::SocketAddr, forwarding: &str) -> String {
    format!(
        r#"
threads = 1
forwarding = "{forwarding}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]
read_timeout_ms = 400

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn both_forwarding_paths_send_and_answer_the_same() {
    let (direct_upstream, pingora_upstream) = (Scripted::start().await, Scripted::start().await);
    let direct = start(&gateway_config(direct_upstream.addr, "direct"));
    let pingora = start(&gateway_config(pingora_upstream.addr, "pingora"));
    let mut differences = Vec::new();
    let mut forwarded = 0;
    for case in corpus() {
        let (a, b) = tokio::join!(
            run(direct.addr, &direct_upstream, &case),
            run(pingora.addr, &pingora_upstream, &case)
        );
        forwarded += a.upstream.len();
        let statuses: Vec<&str> = a.client.iter().map(|m| m.target()).collect();
        eprintln!(
            "{}: answered {statuses:?}, {} upstream, {}",
            case.name,
            a.upstream.len(),
            if a.closed { "closed" } else { "kept open" }
        );
        if case.name == "GET /slow" {
            assert_eq!(statuses, ["504"], "an upstream past its read timeout");
        }
        if a != b {
            differences.push(format!(
                "{}:\n  direct:  {a:?}\n  pingora: {b:?}",
                case.name
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of the corpus differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(
        forwarded > 30,
        "the corpus reached the upstream ({forwarded})"
    );
    // Each gateway forwarded by the path it was set to.
    let direct_count = forwarded_by(direct.admin, "direct").await;
    assert!(direct_count > 25.0, "direct forwarded {direct_count}");
    assert_eq!(forwarded_by(pingora.admin, "direct").await, 0.0);
    assert!(forwarded_by(pingora.admin, "pingora").await > 25.0);
}

/// `gateway_forwarded_total{path}` from the gateway's `/metrics`.
async fn forwarded_by(admin: std::net::SocketAddr, path: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("gateway_forwarded_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
