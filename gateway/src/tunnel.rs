//! HTTP/1.1 Upgrade tunnels, for WebSocket only, run by the gateway itself.
//! pingora-proxy 0.9.1's duplex loop ends an upgraded connection right
//! after the 101 whenever the upstream's answer is read before the
//! request's own empty body has gone through its pipe
//! (cloudflare/pingora#946): the client gets the 101, then EOF. That
//! happens under load, so WebSocket requests, once routed, authenticated
//! and authorized like any other, leave Pingora's loop here: the same peer
//! and the same upstream headers, then bytes both ways until either side
//! closes (as nginx ends an upgraded connection).
//!
//! Any other `Upgrade` (`h2c` above all) is removed before routing
//! (`refuse_foreign_upgrade`): a switch to HTTP/2 would let every later
//! stream on that connection past the gateway's per-request checks.
//!
//! Each read and write has a deadline: the upstream's read timeout for
//! reads from it and for writes either way, Pingora's 60 s for reads from
//! the client. A tunnel idle for longer ends, as nginx's
//! `proxy_read_timeout` ends one, and WebSocket pings keep it open. One
//! direction is written at a time, as in Pingora's loop; a write stuck
//! because both peers stopped reading ends at its deadline.

use std::time::Duration;

use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::proxy::Session;
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorType, Result};

/// The one upgrade the gateway passes on.
const WEBSOCKET: &[u8] = b"websocket";

/// Opens the tunnels' upstream connections (never pooled: a tunnel uses
/// its connection up).
pub struct Tunnels {
    connector: Connector,
}

/// An upstream connection with the peer's deadlines.
pub struct Connected {
    upstream: Upstream,
    deadline: Duration,
}

impl Tunnels {
    pub fn new(conf: &ServerConf) -> Self {
        Self {
            connector: Connector::new(Some(
                pingora::connectors::ConnectorOptions::from_server_conf(conf),
            )),
        }
    }

    /// A fresh HTTP/1.1 connection to `peer`, its reads and writes bounded
    /// by the peer's read timeout.
    pub async fn connect(&self, peer: &HttpPeer) -> Result<Connected> {
        let (mut upstream, _reused) = self.connector.get_http_session(peer).await?;
        let deadline = peer.options.read_timeout.unwrap_or(Duration::from_secs(60));
        upstream.read_timeout = Some(deadline);
        upstream.write_timeout = Some(peer.options.write_timeout.unwrap_or(deadline));
        Ok(Connected { upstream, deadline })
    }
}

/// True for an upgrade the gateway tunnels: `Upgrade: websocket`.
pub fn is_websocket(req: &RequestHeader) -> bool {
    upgrades_to_websocket(&req.headers)
}

/// `Upgrade: websocket` in a request's or a 101's headers.
fn upgrades_to_websocket(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(WEBSOCKET))
}

/// Turns a request asking to upgrade to anything but WebSocket into a plain
/// request: `Upgrade` and `HTTP2-Settings` removed, and their tokens taken
/// out of `Connection`. A client that offered h2c carries on in HTTP/1.1.
pub fn refuse_foreign_upgrade(req: &mut RequestHeader) -> Result<()> {
    if !req.headers.contains_key(http::header::UPGRADE) || is_websocket(req) {
        return Ok(());
    }
    req.remove_header(&http::header::UPGRADE);
    req.remove_header("http2-settings");
    let kept: Vec<Vec<u8>> = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"upgrade")
                && !t.eq_ignore_ascii_case(b"http2-settings")
        })
        .map(<[u8]>::to_vec)
        .collect();
    req.remove_header(&http::header::CONNECTION);
    if !kept.is_empty() {
        let value = http::HeaderValue::from_bytes(&kept.join(&b", "[..]))
            .map_err(|e| Error::because(ErrorType::InternalError, "connection header", e))?;
        req.insert_header(http::header::CONNECTION, value)?;
    }
    Ok(())
}

/// Sends `request` upstream and relays the answer. `finish` completes the
/// response header as for any proxied request. A WebSocket 101 becomes a
/// tunnel until either side closes; any other final answer (the upstream
/// refused the upgrade) is relayed as a plain response. Failures before
/// the 101 are upstream errors (Pingora answers 502); after it, the tunnel
/// just ends.
pub async fn run(
    session: &mut Session,
    connected: Connected,
    request: RequestHeader,
    finish: impl FnOnce(&mut ResponseHeader) -> Result<()>,
) -> Result<bool> {
    let Connected {
        mut upstream,
        deadline,
    } = connected;
    upstream
        .write_request_header(Box::new(request))
        .await
        .map_err(Error::into_up)?;
    let mut response = loop {
        let header = upstream
            .read_resp_header_parts()
            .await
            .map_err(Error::into_up)?;
        // 100 Continue and the like come before the real answer.
        if header.status.as_u16() == 101 || !header.status.is_informational() {
            break header;
        }
    };
    if response.status.as_u16() == 101
        && (!upstream.was_upgraded() || !upgrades_to_websocket(&response.headers))
    {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "the upstream switched to something other than WebSocket",
        )
        .into_up());
    }
    finish(&mut response)?;
    session.set_write_timeout(Some(deadline));
    if response.status.as_u16() != 101 {
        let done = upstream.is_body_done();
        session.write_response_header(response, done).await?;
        while !upstream.is_body_done() {
            let body = upstream.read_body_bytes().await.map_err(Error::into_up)?;
            let done = body.is_none() || upstream.is_body_done();
            session.write_response_body(body, done).await?;
        }
        return Ok(true);
    }
    // From here on the request "body" is the client's side of the tunnel.
    upstream.maybe_upgrade_body_writer();
    session.write_response_header(response, false).await?;
    if let Err(e) = relay(session, &mut upstream).await {
        // A peer gone or a deadline passed: the tunnel's ordinary end.
        tracing::debug!(error = %e, "tunnel ended");
    }
    upstream.shutdown().await;
    let _ = session.write_response_body(None, true).await;
    Ok(true)
}

/// Bytes both ways until either side closes.
async fn relay(session: &mut Session, upstream: &mut Upstream) -> Result<()> {
    loop {
        tokio::select! {
            from_client = session.read_request_body() => match from_client? {
                Some(bytes) => {
                    upstream.write_body(&bytes).await?;
                }
                None => return Ok(()),
            },
            from_upstream = upstream.read_body_bytes() => match from_upstream? {
                Some(bytes) => session.write_response_body(Some(bytes), false).await?,
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/chat", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn only_websocket_upgrades_survive() {
        let mut ws = request(&[("connection", "Upgrade"), ("upgrade", "WebSocket")]);
        refuse_foreign_upgrade(&mut ws).unwrap();
        assert!(is_websocket(&ws));
        assert_eq!(ws.headers["connection"], "Upgrade");

        let mut h2c = request(&[
            ("connection", "Upgrade, HTTP2-Settings, keep-alive"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ]);
        refuse_foreign_upgrade(&mut h2c).unwrap();
        assert!(!h2c.headers.contains_key("upgrade"));
        assert!(!h2c.headers.contains_key("http2-settings"));
        assert_eq!(h2c.headers["connection"], "keep-alive");

        // Offering WebSocket among others is not WebSocket.
        let mut mixed = request(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]);
        refuse_foreign_upgrade(&mut mixed).unwrap();
        assert!(!mixed.headers.contains_key("upgrade"));
        assert!(!mixed.headers.contains_key("connection"));

        let mut plain = request(&[("connection", "close")]);
        refuse_foreign_upgrade(&mut plain).unwrap();
        assert_eq!(plain.headers["connection"], "close");
    }
}
