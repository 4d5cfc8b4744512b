//! The edge's threat model (`../shared/DESIGN.md`): the application behind
//! the gateway reads the request its own way. Each test sends, as raw
//! bytes, what an attacker would, and reads what the echo upstream received:
//! the gateway must refuse the request or hand on exactly what it checked.

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer};

use crate::support::{demo_policies, echo_upstream, policy_dir, raw, start};

mod headers;
mod identity;
mod requests;
mod slow;

/// `GET {target}` with `headers` (raw lines), read back as the echo saw it.
async fn get(
    addr: std::net::SocketAddr,
    target: &str,
    headers: &str,
) -> crate::support::RawResponse {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: app.test\r\n{headers}connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

fn public_app(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"{extra}
[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    )
}
