//! The in-process ephemeral store of embedded mode.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Expired entries are swept every this many writes, so memory stays bounded
/// by what is live.
const SWEEP_EVERY: u32 = 1024;

#[derive(Default)]
pub struct Memory {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: HashMap<String, (Vec<u8>, Instant)>,
    /// Event times (ms) per sliding window, oldest first, and the window's
    /// own expiry.
    windows: HashMap<String, (VecDeque<i64>, Instant)>,
    sets: HashMap<String, (BTreeSet<String>, Instant)>,
    writes: u32,
}

impl State {
    fn wrote(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            self.values.retain(|_, (_, until)| *until > now);
            self.windows.retain(|_, (_, until)| *until > now);
            self.sets.retain(|_, (_, until)| *until > now);
        }
    }
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave these maps half-updated in a way
        // that matters: every update is a single insert or remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn put(&self, key: &str, value: &[u8], ttl: Duration, only_new: bool) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        if only_new && state.values.get(key).is_some_and(|(_, until)| *until > now) {
            return false;
        }
        state
            .values
            .insert(key.to_owned(), (value.to_vec(), now + ttl));
        state.wrote(now);
        true
    }

    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.lock()
            .values
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    pub(super) fn take(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.lock()
            .values
            .remove(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v)
    }

    /// Removes `key`, whether it holds a value, a window or a set.
    pub(super) fn delete(&self, key: &str) {
        let mut state = self.lock();
        state.values.remove(key);
        state.windows.remove(key);
        state.sets.remove(key);
    }

    pub(super) fn add_member(&self, key: &str, member: &str, ttl: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        let (members, until) = state
            .sets
            .entry(key.to_owned())
            .or_insert_with(|| (BTreeSet::new(), now));
        if *until <= now {
            members.clear();
        }
        members.insert(member.to_owned());
        *until = (*until).max(now + ttl);
        state.wrote(now);
    }

    pub(super) fn members(&self, key: &str) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .sets
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(members, _)| members.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn remove_member(&self, key: &str, member: &str) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let Some((members, until)) = state.sets.get_mut(key) else {
            return false;
        };
        let live = *until > now;
        let removed = members.remove(member) && live;
        if members.is_empty() || !live {
            state.sets.remove(key);
        }
        removed
    }

    pub(super) fn window(&self, key: &str, window: Duration, now_ms: i64, add: bool) -> u64 {
        let now = Instant::now();
        let since = now_ms - super::millis(window);
        let mut state = self.lock();
        let count = match state.windows.get_mut(key) {
            Some((events, until)) => {
                while events.front().is_some_and(|&t| t <= since) {
                    events.pop_front();
                }
                if add {
                    events.push_back(now_ms);
                    *until = now + window;
                }
                events.len()
            }
            None if add => {
                state
                    .windows
                    .insert(key.to_owned(), (VecDeque::from([now_ms]), now + window));
                1
            }
            None => 0,
        };
        if add {
            state.wrote(now);
        }
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}
