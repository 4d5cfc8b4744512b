//! The gateway's own HTTP/1.1 forwarding: an HTTP/1.1 request to an
//! HTTP/1.1 upstream goes through sequentially on Pingora's own server and
//! client sessions (request header, body, response header, body), on an
//! upstream connection from this thread's stack of idle ones. Pingora's
//! parsers and framing do all the reading and writing on both sides; what
//! this path leaves out is pingora-proxy's generality: two tasks' worth of
//! channels and select loops per request, and a pool that spawns a task to
//! watch every released connection.
//!
//! Everything else (HTTP/2 on either side, upgrades, `Expect`, HTTP/1.0)
//! stays on pingora-proxy; `proxy::forward` chooses, and
//! `tests/it/differential/` holds the two paths to one behaviour.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::{Error, Result};
use tokio::io::{AsyncRead, ReadBuf};

/// Idle connections kept per upstream address and thread.
const IDLE_PER_ADDRESS: usize = 64;
/// An idle connection older than this is closed rather than reused: the
/// upstream has likely timed it out (nginx's default is 75 s, Node's 5 s;
/// a closed one is caught on checkout anyway).
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(60);

/// Which upstream connections may stand in for each other: the upstream
/// (its TLS settings) and the address.
pub type PoolKey = (usize, SocketAddr);

struct Parked {
    key: PoolKey,
    stream: Stream,
    since: Instant,
}

thread_local! {
    /// This thread's idle upstream connections, most recent last. A worker
    /// thread (work stealing off) takes back only what it released, so no
    /// connection crosses threads and no task watches an idle one.
    static IDLE: RefCell<Vec<Parked>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to `key`, checked on the way out: one the upstream
/// has closed, or that has bytes nobody asked for, is dropped.
pub fn checkout(key: PoolKey, now: Instant) -> Option<Stream> {
    IDLE.with_borrow_mut(|idle| {
        while let Some(at) = idle.iter().rposition(|p| p.key == key) {
            let mut parked = idle.remove(at);
            if now.duration_since(parked.since) < IDLE_FOR_AT_MOST && is_quiet(&mut parked.stream) {
                return Some(parked.stream);
            }
        }
        None
    })
}

/// Keeps `stream` for the next request to `key`, unless this thread
/// already keeps enough for it. Connections idle for too long are closed
/// here, oldest first, so an address no longer asked for holds none.
pub fn release(key: PoolKey, stream: Stream, now: Instant) {
    IDLE.with_borrow_mut(|idle| {
        let stale = idle
            .iter()
            .take_while(|p| now.duration_since(p.since) >= IDLE_FOR_AT_MOST)
            .count();
        idle.drain(..stale);
        if idle.iter().filter(|p| p.key == key).count() < IDLE_PER_ADDRESS {
            idle.push(Parked {
                key,
                stream,
                since: now,
            });
        }
    });
}

/// True while an idle connection has nothing to read: not closed, no
/// stray bytes. One non-blocking read, outside tokio's cooperative budget
/// so a spent budget cannot pass for "nothing to read".
fn is_quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let read = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut buf));
    let mut read = std::pin::pin!(tokio::task::unconstrained(read));
    read.as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

/// How an exchange failed, which decides whether it may be retried.
pub enum Failed {
    /// Nothing reached the client, and the request could be sent again:
    /// a reused connection closed on it with nothing answered, and its
    /// body (if any) is kept whole for the next attempt.
    Retryable(Box<Error>),
    /// Anything else; once the response header went out, the client's
    /// connection ends without reuse.
    Final(Box<Error>),
}

/// One request and its response over `upstream`. `request` is the header
/// as the upstream gets it; `finish` completes each response header (as
/// pingora-proxy's `response_filter` does) before it goes to the client.
/// On success the upstream connection is returned when it can be reused.
pub async fn exchange(
    downstream: &mut ServerSession,
    mut upstream: Upstream,
    reused: bool,
    request: RequestHeader,
    mut finish: impl FnMut(&mut ResponseHeader) -> Result<()>,
) -> std::result::Result<Option<Stream>, Failed> {
    let body_expected = !downstream.is_body_empty();
    // A body already read from the client (this is a retry) goes again
    // from the copy Pingora keeps; a first attempt keeps one, as
    // pingora-proxy does (up to 64 KiB; a longer body is not retried).
    let resend = if downstream.is_body_done() {
        downstream.get_retry_buffer()
    } else {
        downstream.enable_retry_buffering();
        None
    };
    if let Err(e) = upstream.write_request_header(Box::new(request)).await {
        return Err(retryable_if(reused, e));
    }
    let mut sent_body = false;
    // An upstream may answer before it has read the whole body (a 401 or
    // 413 to a large upload) and close: its answer is still read and
    // relayed, as pingora-proxy does, on connections neither side reuses.
    let mut refused_body = None;
    if let Some(body) = resend.filter(|b| !b.is_empty()) {
        sent_body = true;
        if let Err(e) = upstream.write_body(&body).await {
            refused_body = Some(e.into_up());
        }
    } else if body_expected {
        while let Some(chunk) = downstream
            .read_request_body()
            .await
            .map_err(|e| Failed::Final(e.into_down()))?
        {
            // An empty chunk (the end of a chunked body with trailers)
            // would be written as the chunked terminator itself.
            if chunk.is_empty() {
                continue;
            }
            sent_body = true;
            if let Err(e) = upstream.write_body(&chunk).await {
                refused_body = Some(e.into_up());
                break;
            }
        }
    }
    if refused_body.is_none()
        && let Err(e) = upstream.finish_body().await
    {
        refused_body = Some(e.into_up());
    }
    if refused_body.is_some() {
        downstream.set_keepalive(None);
    }
    // With the request read to its end, a client that hangs up while the
    // upstream works ends the exchange (as pingora-proxy's
    // `read_body_or_idle` does); with it unread, the probe would eat it.
    let watch = refused_body.is_none();
    // Informational answers (103 Early Hints) go on to the client, as
    // pingora-proxy passes them, until the final one.
    let mut informational = false;
    let header = loop {
        // A reused connection the upstream closed in the meantime fails
        // here with nothing read (Pingora marks exactly that error
        // `ReusedOnly`): the request may go again if its body is empty or
        // kept whole in the retry buffer. Not after a timeout or a malformed answer, which the upstream
        // may have been working on.
        let read = watching(downstream, watch, upstream.read_response()).await?;
        if let Err(e) = read {
            if let Some(refused) = refused_body {
                return Err(Failed::Final(refused));
            }
            let closed = matches!(e.retry, pingora::RetryType::ReusedOnly);
            let resendable = !sent_body || !downstream.retry_buffer_truncated();
            return Err(retryable_if(
                closed && reused && resendable && !informational,
                e,
            ));
        }
        let Some(header) = upstream.resp_header() else {
            return Err(Failed::Final(upstream_error("no response header")));
        };
        let mut header = Box::new(header.clone());
        match header.status.as_u16() {
            101 => {
                return Err(Failed::Final(upstream_error(
                    "a 101 to a request without Upgrade",
                )));
            }
            100..=199 => {
                informational = true;
                finish(&mut header).map_err(Failed::Final)?;
                downstream
                    .write_response_header(header)
                    .await
                    .map_err(|e| Failed::Final(e.into_down()))?;
            }
            _ => break header,
        }
    };
    let mut header = header;
    let end = upstream.is_body_done();
    keep_alive_downstream(downstream.req_header(), &mut header, end).map_err(Failed::Final)?;
    finish(&mut header).map_err(Failed::Final)?;
    downstream
        .write_response_header(header)
        .await
        .map_err(|e| Failed::Final(e.into_down()))?;
    while !upstream.is_body_done() {
        let chunk = watching(downstream, watch, upstream.read_body_bytes())
            .await?
            .map_err(|e| Failed::Final(e.into_up()))?;
        let Some(chunk) = chunk else { break };
        downstream
            .write_response_body(chunk, false)
            .await
            .map_err(|e| Failed::Final(e.into_down()))?;
    }
    downstream
        .finish_body()
        .await
        .map_err(|e| Failed::Final(e.into_down()))?;
    if refused_body.is_some() {
        return Ok(None);
    }
    upstream.respect_keepalive();
    Ok(upstream.reuse().await)
}

/// `work` on the upstream, unless the client goes first: its connection
/// closed, or bytes after its request (Pingora serves no pipelining), end
/// the exchange with the upstream connection dropped. Only a client whose
/// request was read to its end is `watch`ed.
async fn watching<T>(
    downstream: &mut ServerSession,
    watch: bool,
    work: impl Future<Output = T>,
) -> std::result::Result<T, Failed> {
    if !watch {
        return Ok(work.await);
    }
    tokio::select! {
        biased;
        out = work => Ok(out),
        gone = downstream.read_body_or_idle(true) => Err(Failed::Final(match gone {
            Err(e) => e.into_down(),
            Ok(_) => Error::explain(pingora::ErrorType::ConnectionClosed, "the client went away")
                .into_down(),
        })),
    }
}

fn upstream_error(why: &'static str) -> Box<Error> {
    Error::explain(pingora::ErrorType::InvalidHTTPHeader, why).into_up()
}

fn retryable_if(retryable: bool, e: Box<Error>) -> Failed {
    let e = e.into_up();
    if retryable {
        Failed::Retryable(e)
    } else {
        Failed::Final(e)
    }
}

/// A response the upstream ends by closing its connection goes to the
/// client chunked (as HTTP/1.1), so the client's connection outlives it,
/// as pingora-proxy does it.
fn keep_alive_downstream(
    request: &RequestHeader,
    response: &mut ResponseHeader,
    end: bool,
) -> Result<()> {
    let no_body = request.method == http::Method::HEAD
        || matches!(response.status.as_u16(), 204 | 304)
        || response.status.is_informational();
    let framed = response
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        || response.headers.contains_key(http::header::CONTENT_LENGTH);
    if !no_body && !framed && !end {
        response.set_version(http::Version::HTTP_11);
        response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    fn stream(client: tokio::net::TcpStream) -> Stream {
        Box::new(pingora::protocols::l4::stream::Stream::from(client))
    }

    fn key(port: u16) -> PoolKey {
        (0, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[tokio::test]
    async fn a_checked_out_connection_is_open_quiet_and_young() {
        let now = Instant::now();
        let (open, _open_peer) = pair().await;
        let (closed, closed_peer) = pair().await;
        let (chatty, mut chatty_peer) = pair().await;
        let (old, _old_peer) = pair().await;
        drop(closed_peer);
        chatty_peer
            .write_all(b"HTTP/1.1 408\r\n\r\n")
            .await
            .unwrap();
        // Ready to read: the close and the stray bytes have arrived.
        closed.readable().await.unwrap();
        chatty.readable().await.unwrap();
        let (open, closed, chatty, old) =
            (stream(open), stream(closed), stream(chatty), stream(old));

        release(key(1), old, now - IDLE_FOR_AT_MOST);
        release(key(1), open, now);
        release(key(1), closed, now);
        release(key(1), chatty, now);
        assert!(checkout(key(2), now).is_none(), "another address's");
        assert!(checkout(key(1), now).is_some(), "the open one");
        assert!(
            checkout(key(1), now).is_none(),
            "the closed, the chatty and the old one are dropped"
        );
    }

    #[tokio::test]
    async fn a_thread_keeps_a_bounded_number_per_address() {
        let now = Instant::now();
        let mut peers = Vec::new();
        for _ in 0..IDLE_PER_ADDRESS + 3 {
            let (client, peer) = pair().await;
            peers.push(peer);
            release(key(3), stream(client), now);
        }
        let mut kept = 0;
        while checkout(key(3), now).is_some() {
            kept += 1;
        }
        assert_eq!(kept, IDLE_PER_ADDRESS);
    }

    #[test]
    fn a_close_delimited_response_goes_on_chunked() {
        let get = RequestHeader::build("GET", b"/", None).unwrap();
        let head = RequestHeader::build("HEAD", b"/", None).unwrap();
        let mut open_ended = ResponseHeader::build(200, None).unwrap();
        open_ended.set_version(http::Version::HTTP_10);
        keep_alive_downstream(&get, &mut open_ended, false).unwrap();
        assert_eq!(open_ended.version, http::Version::HTTP_11);
        assert_eq!(open_ended.headers["transfer-encoding"], "chunked");
        for (request, status, end) in [(&head, 200, false), (&get, 204, false), (&get, 200, true)] {
            let mut response = ResponseHeader::build(status, None).unwrap();
            keep_alive_downstream(request, &mut response, end).unwrap();
            assert!(!response.headers.contains_key("transfer-encoding"));
        }
    }
}
