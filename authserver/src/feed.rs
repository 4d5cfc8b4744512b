//! The change feed followers read: ordered, resumable by cursor (the
//! sequence number of the last change seen), long-polled; a follower that
//! starts, or has fallen behind the retention horizon, takes a snapshot
//! first (every user and group as an entity, and the revocations that
//! still matter) and follows from the snapshot's cursor. Entity changes
//! carry the whole entity, so a change seen twice does no harm.
//!
//! The outbox is `store/feed.rs`; this module waits for it: a background
//! task keeps the newest sequence number current (woken by commits in this
//! process, and polling for those of other replicas).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::store::{Change, StoreError};

/// How often the newest change is read when nothing here signalled one
/// (changes made by another replica).
const POLL: Duration = Duration::from_millis(200);

/// Changes a follower takes at most per request.
const PAGE: i64 = 1000;

/// Keeps `App::feed_newest` current, and prunes what is past retention. Runs for
/// the server's life.
pub async fn keep_current(app: Arc<App>) {
    let signal = app.store.change_signal();
    let mut last_prune = std::time::Instant::now();
    loop {
        match app.store.feed_position().await {
            Ok((newest, _)) => {
                app.feed_newest.send_if_modified(|n| {
                    let moved = newest > *n;
                    *n = (*n).max(newest);
                    moved
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the change feed's position"),
        }
        // A quarter of the retention, between a second and a minute.
        let every = Duration::from_secs((app.config.feed.retention_seconds / 4).clamp(1, 60));
        if last_prune.elapsed() >= every {
            last_prune = std::time::Instant::now();
            let now = crate::app::now();
            let retention = i64::try_from(app.config.feed.retention_seconds).unwrap_or(i64::MAX);
            match app.store.prune_changes(now - retention, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "change feed pruned"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the change feed"),
            }
        }
        let _ = tokio::time::timeout(POLL, signal.notified()).await;
    }
}

/// What a follower asked for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub after: i64,
    /// `entity`, `revocation`; empty: both.
    pub kinds: &'a [&'a str],
    pub wait: Duration,
}

/// A page of the feed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Page {
    /// What happened after the cursor (possibly nothing, after the wait);
    /// the follower continues from `cursor`.
    Changes { cursor: i64, changes: Vec<Change> },
    /// The cursor is behind what is kept: take a snapshot.
    Behind { horizon: i64 },
}

/// The changes after `ask.after`, waiting up to `ask.wait` for one.
pub async fn changes(app: &App, ask: Ask<'_>) -> Result<Page, StoreError> {
    let mut newest = app.feed_newest.subscribe();
    let deadline = tokio::time::Instant::now() + ask.wait;
    loop {
        let (top, horizon) = app.store.feed_position().await?;
        if ask.after < horizon {
            return Ok(Page::Behind { horizon });
        }
        let changes = app
            .store
            .changes_after(ask.after, top, ask.kinds, PAGE)
            .await?;
        // A full page ends at its last change; otherwise everything up to
        // `top` was seen (changes of other kinds included).
        let cursor = match changes.last() {
            Some(last) if changes.len() as i64 >= PAGE => last.seq,
            _ => top.max(ask.after),
        };
        if !changes.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Page::Changes { cursor, changes });
        }
        let seen = top.max(ask.after);
        let waiting = Waiting::new(&app.metrics.feed_polls_waiting);
        let waited = tokio::time::timeout_at(deadline, newest.wait_for(|n| *n > seen)).await;
        drop(waiting);
        if waited.is_err() {
            return Ok(Page::Changes {
                cursor,
                changes: Vec::new(),
            });
        }
    }
}

/// Counts a poll as waiting while it lives (a follower that hangs up
/// drops the request, and this with it).
struct Waiting<'a>(&'a prometheus::IntGauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Everything a follower starting afresh needs, and where to follow on.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub cursor: i64,
    pub entities: Vec<Value>,
    pub revocations: Vec<Value>,
}

/// A snapshot; the cursor is read first, so a change racing it is in the
/// snapshot, in the changes after it, or both (applying it twice is
/// harmless).
pub async fn snapshot(app: &App, kinds: &[&str], now: i64) -> Result<Snapshot, StoreError> {
    let (cursor, _) = app.store.feed_position().await?;
    let wants = |k: &str| kinds.is_empty() || kinds.contains(&k);
    let mut entities = Vec::new();
    if wants("entity") {
        entities = app.store.group_entities().await?;
        let mut after = String::new();
        loop {
            let page = app.store.user_entities(&after, 5000).await?;
            let Some(last) = page.last() else { break };
            after = last["id"].as_str().unwrap_or_default().to_owned();
            entities.extend(page);
        }
    }
    let revocations = if wants("revocation") {
        app.store.live_revocations(now).await?
    } else {
        Vec::new()
    };
    Ok(Snapshot {
        cursor,
        entities,
        revocations,
    })
}
