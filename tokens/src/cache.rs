//! Verified tokens, remembered by the SHA-256 of the token until they expire,
//! so a client sending the same token does not pay for a signature check on
//! every request.

use std::sync::Arc;
use std::time::Duration;

use crate::verified::Verified;

pub(crate) struct VerifiedCache(moka::sync::Cache<[u8; 32], Arc<Verified>>);

impl VerifiedCache {
    pub fn new(entries: u64, ttl: Duration) -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(entries)
                .time_to_live(ttl)
                .build(),
        )
    }

    pub fn key(token: &str) -> [u8; 32] {
        bootstrap::digest::sha256(token.as_bytes())
    }

    /// A cached verification still inside its `exp` (plus leeway).
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<Verified>> {
        self.0
            .get(key)
            .filter(|v| now < v.expires_at.saturating_add(v.leeway))
    }

    pub fn insert(&self, key: [u8; 32], verified: Arc<Verified>) {
        self.0.insert(key, verified);
    }
}
