//! Who is really calling: the client's address by the shared rule
//! (`bootstrap::net`): `X-Forwarded-For` believed only from
//! `trusted_proxies`, read from the right. Lockout windows and audit
//! records depend on it.

use std::net::IpAddr;

use axum::http::HeaderMap;
use bootstrap::net::Cidr;

/// `None`: a trusted proxy passed on something that is not an address.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .into_iter()
        .map(|v| v.as_bytes());
    bootstrap::net::origin(peer, forwarded_for, trusted).client
}
