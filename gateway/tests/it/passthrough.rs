//! Protocols that only need to pass through: an HTTP/1.1 Upgrade
//! (WebSocket) tunnel, and gRPC over HTTP/2 (trailers included) to an
//! HTTP/2 upstream, here the real sidecar's gRPC service.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Sidecar, demo_policies, echo_upstream, start};

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_and_grpc_pass_through() {
    let upstream = echo_upstream().await;
    let sidecar = Sidecar::start(&demo_policies());
    let gw = start(&format!(
        r#"
[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[upstreams]]
name = "grpc"
addresses = ["{}"]
http2 = true

[[routes]]
path_prefix = "/ws"
upstream = "app"
auth = "public"

[[routes]]
path_prefix = "/envoy.service.auth.v3.Authorization"
upstream = "grpc"
auth = "public"
"#,
        sidecar.grpc
    ));

    // Upgrade: 101 from the upstream, then bytes both ways.
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(
        b"GET /ws/chat HTTP/1.1\r\nHost: demo\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-auth-subject: forged\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in [&b"hello through the tunnel"[..], b"and again"] {
        conn.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut back))
            .await
            .expect("echo in time")
            // Pingora 0.9.1 sometimes ends the tunnel when the upstream's
            // 101 beats the request's empty body: cloudflare/pingora#946.
            .unwrap_or_else(|e| panic!("tunnel closed after the 101 ({e}); see pingora#946"));
        assert_eq!(back, message);
    }

    // gRPC through the gateway (h2c downstream, HTTP/2 upstream).
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", gw.addr),
    )
    .await
    .unwrap();
    let err = client
        .check(envoy_types::ext_authz::v3::pb::CheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "the sidecar's own gRPC status, carried in trailers: {err:?}"
    );
    assert!(err.message().contains("attributes"), "{err:?}");
}
