//! An upstream that records every request as it arrived and answers by
//! the path's first segment with a scripted response: every framing, the
//! bodiless statuses, informational answers, trailers, an early answer,
//! and the ways an upstream fails.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Message, Parsed};

pub struct Scripted {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Message>>>,
}

impl Scripted {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, recorder.clone()));
            }
        });
        Self { addr, seen }
    }

    /// The requests received since the last call.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// What to do after the request head arrived.
enum Script {
    /// Write these bytes once the whole request is in, keep the connection.
    Answer(Vec<u8>),
    /// Write these bytes, then close.
    AnswerAndClose(Vec<u8>),
    /// Answer right after the head, then read the body to its end.
    Early(Vec<u8>),
    /// Answer after this long (past the gateway's read timeout).
    Late(Duration, Vec<u8>),
}

/// `reused`: the connection served a request before this one.
fn script(request: &Message, reused: bool) -> Script {
    let head = request.method() == "HEAD";
    let with_body = |head_part: &str, body: &str| {
        let mut bytes = head_part.as_bytes().to_vec();
        if !head {
            bytes.extend_from_slice(body.as_bytes());
        }
        bytes
    };
    let segment = request.target().trim_start_matches('/');
    let segment = segment.split(['/', '?']).next().unwrap_or_default();
    match segment {
        "cl" => Script::Answer(with_body(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Custom: A b\r\nContent-Length: 5\r\n\r\n",
            "hello",
        )),
        "chunked" => Script::Answer(with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )),
        "trailers" => Script::Answer(with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n",
            "3\r\nabc\r\n0\r\nX-Sum: 6\r\n\r\n",
        )),
        "close" => Script::AnswerAndClose(with_body(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            "until the end",
        )),
        "http10" => Script::AnswerAndClose(with_body("HTTP/1.0 200 OK\r\n\r\n", "old style")),
        "no-content" => Script::Answer(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec()),
        "not-modified" => Script::Answer(
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n".to_vec(),
        ),
        "hints" => Script::Answer(with_body(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            "ok",
        )),
        "big-headers" => {
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..100 {
                head.push_str(&format!("X-Big-{i}: {}\r\n", "v".repeat(100)));
            }
            head.push_str("Content-Length: 3\r\n\r\n");
            Script::Answer(with_body(&head, "big"))
        }
        "cut-body" => Script::AnswerAndClose(with_body(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            "only this",
        )),
        "cut-head" => Script::AnswerAndClose(Vec::new()),
        // A connection the upstream drops as the request arrives (its idle
        // timeout), answered on a fresh one.
        "stale" if reused => Script::AnswerAndClose(Vec::new()),
        "stale" => Script::Answer(with_body(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            "fresh",
        )),
        "garbage" => Script::AnswerAndClose(b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
        "early" => {
            Script::Early(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied".to_vec())
        }
        "slow" => Script::Late(
            Duration::from_millis(800),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate".to_vec(),
        ),
        _ => Script::Answer(with_body(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            "ok",
        )),
    }
}

async fn serve(mut conn: TcpStream, seen: Arc<Mutex<Vec<Message>>>) {
    let mut buf = Vec::new();
    let mut served = 0usize;
    loop {
        // The head first: an early answer goes before the body is read.
        let head = loop {
            if let Some((head, _)) = wire::head(&buf) {
                break head;
            }
            if !read_more(&mut conn, &mut buf).await {
                return;
            }
        };
        let plan = script(&head, served > 0);
        served += 1;
        if let Script::Early(answer) = &plan {
            let _ = conn.write_all(answer).await;
        }
        let (request, used) = loop {
            match wire::request(&buf) {
                Parsed::Done(message, used) => break (message, used),
                Parsed::Partial => {
                    if !read_more(&mut conn, &mut buf).await {
                        return;
                    }
                }
            }
        };
        buf.drain(..used);
        seen.lock().unwrap().push(request);
        match plan {
            Script::Answer(bytes) => {
                if conn.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Script::AnswerAndClose(bytes) => {
                let _ = conn.write_all(&bytes).await;
                return;
            }
            Script::Early(_) => {}
            Script::Late(after, bytes) => {
                tokio::time::sleep(after).await;
                let _ = conn.write_all(&bytes).await;
            }
        }
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 65536];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}
