//! Request ids: a caller's kept when short and plain, else a fresh one
//! without asking the RNG per request; W3C `traceparent` checked.

use std::sync::atomic::{AtomicU64, Ordering};

/// A caller's request id is kept if it is short and plain.
pub(super) fn acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// W3C trace context: `00-<32 hex>-<16 hex>-<2 hex>`.
pub(super) fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

/// A fresh request id: this process's random prefix and a counter, in
/// hex: unique without asking the RNG per request.
pub(super) fn new_request_id() -> http::HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| u64::from_ne_bytes(bootstrap::random::bytes()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    for (i, word) in [prefix, n].into_iter().enumerate() {
        for j in 0..16 {
            let nibble = ((word >> (60 - 4 * j)) & 0xf) as u8;
            text[i * 16 + j] = b"0123456789abcdef"[usize::from(nibble)];
        }
    }
    http::HeaderValue::from_bytes(&text).unwrap_or(http::HeaderValue::from_static("0"))
}
