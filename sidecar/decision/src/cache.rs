//! The decision cache: bounded in entries and age, keyed by everything a
//! decision depends on, including the bundle generation, so a reload or an
//! entity write can never be answered from an older policy set.

use std::sync::Arc;
use std::time::Duration;

use crate::outcome::Outcome;

#[derive(Debug, Clone)]
pub struct DecisionCache {
    inner: Option<moka::sync::Cache<String, Arc<Outcome>>>,
}

impl DecisionCache {
    /// `max_entries == 0` or a zero TTL turns caching off.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let inner = (max_entries > 0 && !ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build()
        });
        Self { inner }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn get(&self, key: &str) -> Option<Arc<Outcome>> {
        self.inner.as_ref()?.get(key)
    }

    /// Outcomes with evaluation errors are never stored.
    pub fn insert(&self, key: String, outcome: Arc<Outcome>) {
        if let Some(cache) = &self.inner
            && outcome.errors.is_empty()
        {
            cache.insert(key, outcome);
        }
    }

    /// Drop everything (after a swap: old keys can no longer match).
    pub fn clear(&self) {
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }
}
