//! A map that a batch of changes copies in O(changes), not O(entries):
//! recent changes sit in a small overlay above a shared base, folded into
//! a new base once the overlay outgrows a sixteenth of it. A follower with
//! 100,000 users then makes each new directory without copying them all.

use std::collections::HashMap;
use std::sync::Arc;

/// Overlay entries below which a fold is never worth it.
const MIN_FOLD: usize = 1024;

#[derive(Debug, Clone)]
pub(super) struct Layered<V> {
    base: Arc<HashMap<String, V>>,
    /// `None`: removed from the base.
    overlay: HashMap<String, Option<V>>,
    len: usize,
}

impl<V> Default for Layered<V> {
    fn default() -> Self {
        Self {
            base: Arc::default(),
            overlay: HashMap::new(),
            len: 0,
        }
    }
}

impl<V: Clone> Layered<V> {
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn insert(&mut self, key: String, value: V) {
        if self.get(&key).is_none() {
            self.len += 1;
        }
        self.overlay.insert(key, Some(value));
    }

    pub(super) fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            self.len -= 1;
            self.overlay.insert(key.to_owned(), None);
        }
    }

    /// Folds the overlay into a new base when it has grown large enough
    /// (`always`: whatever its size), so lookups and copies stay cheap.
    pub(super) fn settle(&mut self, always: bool) {
        if self.overlay.is_empty()
            || !(always || self.overlay.len() > MIN_FOLD.max(self.base.len() / 16))
        {
            return;
        }
        let mut base = Arc::unwrap_or_clone(std::mem::take(&mut self.base));
        for (key, value) in self.overlay.drain() {
            match value {
                Some(v) => base.insert(key, v),
                None => base.remove(&key),
            };
        }
        self.base = Arc::new(base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_the_overlay_before_and_after_folding() {
        let mut m: Layered<usize> = Layered::default();
        for i in 0..3000 {
            m.insert(format!("k{i}"), i);
        }
        m.settle(true);
        let shared = m.clone();
        for i in 0..2500 {
            if i % 2 == 0 {
                m.remove(&format!("k{i}"));
            } else {
                m.insert(format!("k{i}"), i * 10);
            }
            m.settle(false);
        }
        m.remove("absent");
        for i in 0..3000 {
            let want = match i {
                i if i >= 2500 => Some(i),
                i if i % 2 == 0 => None,
                i => Some(i * 10),
            };
            assert_eq!(m.get(&format!("k{i}")).copied(), want, "k{i}");
            assert_eq!(
                shared.get(&format!("k{i}")).copied(),
                Some(i),
                "a copy is unchanged"
            );
        }
        assert_eq!(m.len(), 3000 - 1250);
        m.settle(true);
        assert_eq!(m.len(), m.base.len());
        assert!(m.overlay.is_empty());
    }
}
