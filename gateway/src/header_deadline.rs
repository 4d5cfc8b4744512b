//! A deadline on each HTTP/1 request header, against slow clients
//! (slowloris). Pingora bounds each read (60 s between bytes) but not the
//! whole header, so a client sending a byte a minute would hold a
//! connection forever. This wraps every accepted connection: from the first
//! byte of a request until the blank line ending its header, at most
//! `limit` may pass; after that the client gets a 408 and the connection
//! is closed. The clock stops at the end of the header (bodies are the
//! upstream's business) and starts again with the next request on the
//! connection, once the response has begun. Empty lines before a request
//! line (which HTTP/1 parsers skip, RFC 9112 §2.2) start the clock like any
//! byte and never count as the header's end. HTTP/2 is framed differently
//! and passes through untouched after its preface.
//!
//! Pingora looks for that preface (with h2c on) by reading 24 bytes before
//! any parser sees the connection, with no deadline: a client that sends
//! fewer and stops would hold the connection forever, and a short request
//! would wait for bytes that never come. So the peek is done here, under
//! the same clock, and ends as soon as the bytes cannot be the preface.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps a server app (the proxy) so that its connections carry the
/// deadline (none when `limit` is zero).
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    limit: Duration,
    timeouts: IntCounter,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, limit: Duration, timeouts: IntCounter) -> Self {
        Self {
            inner: Arc::new(inner),
            limit,
            timeouts,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.limit.is_zero() {
            return self.inner.process_new(stream, shutdown).await;
        }
        let guarded = Guarded {
            inner: stream,
            limit: self.limit,
            phase: Phase::Idle,
            begun: false,
            blank_line: 0,
            peeked: Vec::new(),
            timer: Box::pin(tokio::time::sleep(self.limit)),
            timeouts: self.timeouts.clone(),
        };
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: no clock.
    Idle,
    /// A request header is arriving: the clock runs.
    Header,
    /// The header is complete: no clock until the response begins.
    Body,
    /// Too slow: answered 408, every further read fails.
    Expired,
}

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 78\r\nconnection: close\r\n\r\n{\"error\":\"request_timeout\",\"message\":\"the request header took too long\"}\n";

struct Guarded {
    inner: Stream,
    limit: Duration,
    phase: Phase,
    /// The request line has begun: a byte other than CR or LF has come.
    begun: bool,
    /// Progress towards the blank line: 1 after `\n`, 2 after `\n\r`.
    blank_line: u8,
    /// Bytes read by `try_peek` (already counted), read again first.
    peeked: Vec<u8>,
    /// One timer per connection, re-armed per request.
    timer: Pin<Box<Sleep>>,
    timeouts: IntCounter,
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Guarded {
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.phase = Phase::Expired;
        self.timeouts.inc();
        // Best effort: a client this slow may not be reading either.
        let _ = Pin::new(&mut self.inner).poll_write(cx, TIMEOUT_RESPONSE);
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("request header not complete within {:?}", self.limit),
        )))
    }

    /// The start of a final (non-1xx) HTTP/1 response means the next bytes
    /// read belong to the next request.
    fn note_write(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Body
            && bytes.len() > 9
            && bytes.starts_with(b"HTTP/1.")
            && bytes[9] != b'1'
        {
            self.phase = Phase::Idle;
            self.begun = false;
            self.blank_line = 0;
        }
    }
}

/// Follows the bytes just read (`progress`: 1 after `\n`, 2 after `\n\r`);
/// true once a header's blank line (`\n\n` or `\n\r\n`) has gone by.
/// Jumps from `\n` to `\n` (memchr) instead of stepping through every byte
/// of a long header.
fn blank_line_in(progress: &mut u8, bytes: &[u8]) -> bool {
    // A blank line begun at the end of the previous read.
    let mut start = 0;
    while *progress != 0 && start < bytes.len() {
        *progress = match (bytes[start], *progress) {
            (b'\n', _) => return true,
            (b'\r', 1) => 2,
            _ => 0,
        };
        start += 1;
    }
    for at in memchr::memchr_iter(b'\n', &bytes[start..]).map(|i| i + start) {
        match (bytes.get(at + 1), bytes.get(at + 2)) {
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => return true,
            (None, _) => *progress = 1,
            (Some(b'\r'), None) => *progress = 2,
            _ => {}
        }
    }
    false
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.peeked.is_empty() {
            let n = this.peeked.len().min(buf.remaining());
            buf.put_slice(&this.peeked[..n]);
            this.peeked.drain(..n);
            return Poll::Ready(Ok(()));
        }
        match this.phase {
            Phase::Body => return Pin::new(&mut this.inner).poll_read(cx, buf),
            Phase::Expired => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request header timed out",
                )));
            }
            Phase::Header if this.timer.is_elapsed() => return this.expire(cx),
            Phase::Idle | Phase::Header => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.phase == Phase::Idle {
                    this.phase = Phase::Header;
                    let deadline = Instant::now() + this.limit;
                    this.timer.as_mut().reset(deadline);
                }
                let new = if this.begun {
                    new
                } else {
                    // Empty lines before the request line are not its end.
                    let skip = new.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                    let rest = &new[skip.count()..];
                    this.begun = !rest.is_empty();
                    rest
                };
                if this.begun && blank_line_in(&mut this.blank_line, new) {
                    this.phase = Phase::Body;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase == Phase::Header => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.expire(cx),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.note_write(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.note_write(first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

/// What Pingora peeks for on a plain connection with h2c on.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl Peek for Guarded {
    /// Up to `buf.len()` bytes, read under the header clock and kept to be
    /// read again; fewer once they cannot begin the HTTP/2 preface (the
    /// rest of `buf` then stays zero, which no preface is).
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut got: Vec<u8> = Vec::with_capacity(buf.len());
        while got.len() < buf.len() && H2_PREFACE.starts_with(&got) {
            let mut chunk = [0u8; 64];
            let want = (buf.len() - got.len()).min(chunk.len());
            let n = self.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&chunk[..n]);
        }
        buf.fill(0);
        buf[..got.len()].copy_from_slice(&got);
        self.peeked = got;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_line_is_found_across_reads_and_line_endings() {
        let mut p = 0;
        assert!(!blank_line_in(&mut p, b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!blank_line_in(&mut p, b"\r"));
        assert!(blank_line_in(&mut p, b"\n"));
        let mut p = 0;
        assert!(blank_line_in(&mut p, b"GET / HTTP/1.1\nHost: a\n\n"));
        let mut p = 0;
        assert!(!blank_line_in(
            &mut p,
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n"
        ));
        // Leading CRLF before a request line is not a header's end.
        let mut p = 0;
        assert!(!blank_line_in(&mut p, b"\r\nGET / HTTP/1.1\r\n"));
        // Split anywhere, one byte at a time.
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nbody";
        let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 3;
        for split in 1..request.len() {
            let mut p = 0;
            let (first, second) = request.split_at(split);
            let found = blank_line_in(&mut p, first) || blank_line_in(&mut p, second);
            assert!(found, "split at {split}");
            assert_eq!(
                blank_line_in(&mut 0, first),
                split > end,
                "split at {split}"
            );
        }
        let mut p = 0;
        assert!(request[..end].iter().all(|b| !blank_line_in(&mut p, &[*b])));
        assert!(blank_line_in(&mut p, b"\n"));
    }
}
