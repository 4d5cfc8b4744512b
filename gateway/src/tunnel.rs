//! HTTP/1.1 Upgrade (WebSocket) tunnels, run by the gateway itself.
//! pingora-proxy 0.9.1's duplex loop ends an upgraded connection right
//! after the 101 whenever the upstream's answer is read before the
//! request's own empty body has gone through its pipe
//! (cloudflare/pingora#946): the client gets the 101, then EOF. That
//! happens under load, so upgrade requests, once routed, authenticated and
//! authorized like any other, leave Pingora's loop here: the same peer and
//! the same upstream headers, then bytes both ways until either side
//! closes (as nginx ends an upgraded connection). Each read keeps its
//! side's timeout (the upstream's `read_timeout_ms`, Pingora's 60 s for
//! the client), as in Pingora's own loop: a tunnel idle for longer ends,
//! as nginx's `proxy_read_timeout` ends one, and WebSocket pings keep it
//! open.

use pingora::Result;
use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::proxy::Session;
use pingora::server::configuration::ServerConf;

/// Opens the tunnels' upstream connections (never pooled: a tunnel uses
/// its connection up).
pub struct Tunnels {
    connector: Connector,
}

impl Tunnels {
    pub fn new(conf: &ServerConf) -> Self {
        Self {
            connector: Connector::new(Some(
                pingora::connectors::ConnectorOptions::from_server_conf(conf),
            )),
        }
    }

    /// A fresh HTTP/1.1 connection to `peer`.
    pub async fn connect(&self, peer: &HttpPeer) -> Result<Upstream> {
        let (upstream, _reused) = self.connector.get_http_session(peer).await?;
        Ok(upstream)
    }
}

/// Sends `request` upstream and relays the answer. `finish` completes the
/// response header as for any proxied request. A 101 becomes a tunnel
/// until either side closes; any other answer (the upstream refused the
/// upgrade) is relayed as a plain response.
pub async fn run(
    session: &mut Session,
    mut upstream: Upstream,
    request: RequestHeader,
    finish: impl FnOnce(&mut ResponseHeader) -> Result<()>,
) -> Result<bool> {
    upstream.write_request_header(Box::new(request)).await?;
    let mut response = loop {
        let header = upstream.read_resp_header_parts().await?;
        // 100 Continue and the like come before the real answer.
        if header.status.as_u16() == 101 || !header.status.is_informational() {
            break header;
        }
    };
    finish(&mut response)?;
    if response.status.as_u16() != 101 {
        let done = upstream.is_body_done();
        session.write_response_header(response, done).await?;
        while !upstream.is_body_done() {
            let body = upstream.read_body_bytes().await?;
            let done = body.is_none() || upstream.is_body_done();
            session.write_response_body(body, done).await?;
        }
        return Ok(true);
    }
    // From here on the request "body" is the client's side of the tunnel.
    upstream.maybe_upgrade_body_writer();
    session.write_response_header(response, false).await?;
    loop {
        tokio::select! {
            from_client = session.read_request_body() => match from_client? {
                Some(bytes) => {
                    upstream.write_body(&bytes).await?;
                }
                None => break,
            },
            from_upstream = upstream.read_body_bytes() => match from_upstream? {
                Some(bytes) => session.write_response_body(Some(bytes), false).await?,
                None => break,
            },
        }
    }
    upstream.shutdown().await;
    session.write_response_body(None, true).await?;
    Ok(true)
}
