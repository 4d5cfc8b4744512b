//! The follower: a snapshot to start from (and whenever the authserver
//! answers 410: the cursor is behind what it keeps), then long polls for
//! the changes after the cursor, each batch applied whole before the
//! cursor moves. On an error it keeps what it has and tries again with a
//! growing pause; the authserver or this process may restart without an
//! event being lost (the cursor is the authserver's sequence number; a
//! restarted follower starts from a snapshot).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use crate::revocations::{Revocations, SharedRevocations};
use crate::wire::{ChangesPage, Snapshot};

/// Where entity changes go: a decision engine, or what must know when
/// decisions made before a change are outdated.
pub trait Sink: Send + Sync + 'static {
    /// A snapshot at `cursor`: these are all the entities there are.
    fn reset(&self, entities: Vec<Value>, cursor: i64);
    /// Entity changes after the last reset, oldest first, to apply at once;
    /// with them the feed is followed up to `cursor`. Called for every
    /// answer, `changes` empty when only the cursor moved.
    fn apply(&self, changes: Vec<Value>, cursor: i64);
}

/// What a follower does once it has not heard from the feed for longer
/// than its staleness bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// Refuse what depends on the feed (revocations: a token might be
    /// revoked without our knowing).
    #[default]
    FailClosed,
    /// Keep deciding with what it has (entities: group changes wait).
    KeepServing,
}

#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The authserver's base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// A bearer token with the `feed` scope.
    pub token: String,
    /// Follow entity changes (a decision engine) and/or revocations.
    pub entities: bool,
    pub revocations: bool,
    /// How long one long poll waits at the authserver.
    pub wait: Duration,
    /// After this long without an answer the follower is stale.
    pub stale_after: Duration,
}

/// Where a follower stands, read by `/readyz` and metrics.
#[derive(Debug)]
pub struct Status {
    cursor: AtomicI64,
    /// Unix milliseconds of the last answer from the feed (or of the start,
    /// before the first).
    heard_ms: AtomicI64,
    synced: AtomicBool,
    snapshots: AtomicU64,
    errors: AtomicU64,
    stale_after: Duration,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Status {
    fn new(stale_after: Duration) -> Self {
        Self {
            cursor: AtomicI64::new(0),
            heard_ms: AtomicI64::new(unix_ms()),
            synced: AtomicBool::new(false),
            snapshots: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stale_after,
        }
    }

    fn heard(&self, cursor: i64) {
        self.cursor.store(cursor, Ordering::Relaxed);
        self.heard_ms.store(unix_ms(), Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Whether a snapshot has been applied.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// How long since the feed last answered.
    pub fn lag(&self) -> Duration {
        let ms = unix_ms() - self.heard_ms.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Past the staleness bound (never synced counts from the start).
    pub fn stale(&self) -> bool {
        self.lag() > self.stale_after
    }

    /// Whether what the feed carries cannot be vouched for: stale, or not
    /// synced yet. What fails closed refuses then.
    pub fn unknown(&self) -> bool {
        !self.synced() || self.stale()
    }

    pub fn snapshots(&self) -> u64 {
        self.snapshots.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("the feed's cursor is behind what the authserver keeps")]
    Behind,
    #[error("{0}")]
    Failed(String),
}

pub struct Follower {
    config: FollowerConfig,
    http: reqwest::Client,
    sink: Option<Arc<dyn Sink>>,
    revocations: Arc<SharedRevocations>,
    status: Arc<Status>,
}

impl Follower {
    pub fn new(config: FollowerConfig, sink: Option<Arc<dyn Sink>>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.wait + Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            status: Arc::new(Status::new(config.stale_after)),
            config,
            http,
            sink,
            revocations: Arc::default(),
        })
    }

    /// The revocations, shared with whoever refuses tokens.
    pub fn revocations(&self) -> Arc<SharedRevocations> {
        self.revocations.clone()
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    fn kinds(&self) -> &'static str {
        match (self.config.entities, self.config.revocations) {
            (true, false) => "entity",
            (false, true) => "revocation",
            _ => "entity,revocation",
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, FeedError> {
        let url = format!("{}{path}", self.config.url.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.config.token)
            .send()
            .await
            .map_err(|e| FeedError::Failed(format!("{url}: {e}")))?;
        match resp.status().as_u16() {
            200 => resp
                .json()
                .await
                .map_err(|e| FeedError::Failed(format!("{url}: {e}"))),
            410 => Err(FeedError::Behind),
            status => {
                let body = resp.text().await.unwrap_or_default();
                Err(FeedError::Failed(format!("{url}: {status} {body}")))
            }
        }
    }

    /// Starts afresh: every entity, every live revocation; the cursor.
    async fn snapshot(&self) -> Result<i64, FeedError> {
        let snap: Snapshot = self
            .get(&format!("/feed/v1/snapshot?kinds={}", self.kinds()))
            .await?;
        let mut revocations = Revocations::default();
        for r in &snap.revocations {
            revocations.apply(r);
        }
        if self.config.revocations {
            self.revocations.store(revocations);
        }
        if let (true, Some(sink)) = (self.config.entities, &self.sink) {
            sink.reset(snap.entities, snap.cursor);
        }
        self.status.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(snap.cursor)
    }

    /// One long poll after `cursor`, applied; the next cursor.
    async fn follow(&self, cursor: i64, now: i64) -> Result<i64, FeedError> {
        let page: ChangesPage = self
            .get(&format!(
                "/feed/v1/changes?after={cursor}&kinds={}&wait={}",
                self.kinds(),
                self.config.wait.as_secs()
            ))
            .await?;
        let (mut entities, mut revoked) = (Vec::new(), Vec::new());
        for c in page.changes {
            match c.kind.as_str() {
                "entity" => entities.push(c.body),
                "revocation" => revoked.push(c.body),
                _ => {}
            }
        }
        if self.config.revocations {
            let mut next = (*self.revocations.load()).clone();
            for r in &revoked {
                next.apply(r);
            }
            next.prune(now);
            if next != *self.revocations.load() {
                self.revocations.store(next);
            }
        }
        if let (true, Some(sink)) = (self.config.entities, &self.sink) {
            sink.apply(entities, page.cursor);
        }
        Ok(page.cursor)
    }

    /// Follows until the process ends.
    pub async fn run(self) {
        let mut cursor: Option<i64> = None;
        let mut pause = Duration::from_millis(250);
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let step = match cursor {
                None => self.snapshot().await,
                Some(c) => self.follow(c, now).await,
            };
            match step {
                Ok(next) => {
                    if cursor.is_none() {
                        tracing::info!(cursor = next, "change feed: synced from a snapshot");
                    }
                    cursor = Some(next);
                    self.status.heard(next);
                    pause = Duration::from_millis(250);
                }
                Err(FeedError::Behind) => {
                    tracing::warn!(
                        "change feed: behind the authserver's horizon; taking a snapshot"
                    );
                    cursor = None;
                }
                Err(FeedError::Failed(e)) => {
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, lag_ms = self.status.lag().as_millis() as u64, "change feed unreachable; keeping what we have");
                    tokio::time::sleep(jittered(pause)).await;
                    // At most a second: once the authserver is back, every
                    // follower is current again within about that.
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// `pause` times 0.5 to 1.5, so followers that lost the feed together do
/// not all come back at the same instant.
fn jittered(pause: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    pause.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

/// A follower running in the background, and what its users hold.
#[derive(Debug, Clone)]
pub struct Running {
    pub status: Arc<Status>,
    /// When revocations are followed: what refuses revoked tokens.
    pub guard: Option<crate::Guard>,
    /// What entity consumers do once the feed is stale.
    pub on_stale_entities: OnStale,
}

impl Running {
    /// Whether decisions must stop for want of the feed (stale, and told
    /// to fail closed for entities).
    pub fn entities_unknown(&self) -> bool {
        self.on_stale_entities == OnStale::FailClosed && self.status.unknown()
    }

    /// `/readyz` detail: where the follower stands; `false` when something
    /// that fails closed is stale.
    pub fn readiness(&self) -> (bool, Value) {
        let s = &self.status;
        let revocations_unknown = self
            .guard
            .as_ref()
            .is_some_and(|g| g.on_stale == OnStale::FailClosed && s.unknown());
        let ready = !revocations_unknown && !self.entities_unknown();
        let detail = serde_json::json!({
            "synced": s.synced(),
            "cursor": s.cursor(),
            "lag_seconds": s.lag().as_secs_f64(),
            "stale": s.stale(),
        });
        (ready, detail)
    }
}

/// Starts following the feed `config` names (none: `Ok(None)`); entity
/// changes go to `sink`.
pub fn start(
    config: &crate::FeedConfig,
    sink: Option<Arc<dyn Sink>>,
) -> Result<Option<Running>, crate::FeedConfigError> {
    let Some(follow) = config.follower()? else {
        return Ok(None);
    };
    let follower = Follower::new(follow, sink).map_err(|e| crate::FeedConfigError {
        key: "url",
        message: e,
    })?;
    let running = Running {
        status: follower.status(),
        guard: config.revocations.then(|| crate::Guard {
            revocations: follower.revocations(),
            status: follower.status(),
            issuer: config.issuer(),
            prefix: config.subject_prefix.clone(),
            on_stale: config.on_stale_revocations,
        }),
        on_stale_entities: config.on_stale_entities,
    };
    tokio::spawn(follower.run());
    Ok(Some(running))
}
