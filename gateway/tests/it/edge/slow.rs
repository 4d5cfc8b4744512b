//! Slow clients: a request header has a deadline.

use super::*;

/// Slow clients (slowloris): a request header dribbled past
/// `request_header_timeout_secs` gets 408 and a closed connection; the
/// clock runs only while a header arrives (not between keep-alive
/// requests, not during a slow body).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_header_too_slow_is_answered_408() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let upstream = echo_upstream().await;
    let gw = start(&format!(
        r#"
request_header_timeout_secs = 1

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    ));
    /// Reads one response: its head and body (by content-length).
    async fn response(conn: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&got).into_owned();
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                .await
                .expect("a response within 5 s")
                .unwrap();
            if n == 0 {
                return String::from_utf8_lossy(&got).into_owned();
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    // Dribbled: a header line every 300 ms, never finishing.
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow
            .write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || answer.contains("\r\n\r\n") {
                break;
            }
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"), "{answer:?}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "{waited:?}");

    // Empty lines first (parsers skip them) start the clock like any byte
    // and are not the end of a header: the request line dribbled after
    // them still times out.
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"\r\n\r\n\n\n").await.unwrap();
    let mut answer = String::new();
    let opening = ["GET /s", "low HTTP/1.1\r\n", "host: a\r\n"].map(String::from);
    for chunk in opening
        .into_iter()
        .chain((0..17).map(|i| format!("x-{i}: y\r\n")))
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || answer.contains("\r\n\r\n") {
                break;
            }
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A few bytes, then silence: fewer than the 24 an HTTP/2 preface has,
    // which Pingora waits for before any parser runs. Still the clock.
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /").await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(4), slow.read(&mut answer))
        .await
        .expect("answered before 4 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A whole request shorter than that is answered at once.
    let mut short = TcpStream::connect(gw.addr).await.unwrap();
    short.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let reply = response(&mut short).await;
    assert!(reply.starts_with("HTTP/1.1 "), "{reply:?}");

    // Slow but within the limit: served.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /a HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    conn.write_all(b"x: y\r\n\r\n").await.unwrap();
    let first = response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle between keep-alive requests does not count…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.write_all(b"GET /b HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let second = response(&mut conn).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("\"/b\""), "{second}");
    // …nor does a slow body after a prompt header.
    conn.write_all(b"POST /c HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.write_all(b"def").await.unwrap();
    let third = response(&mut conn).await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    assert!(third.contains("abcdef"), "{third}");

    gw.metrics_with(&["gateway_request_header_timeouts_total 3"])
        .await;
}
