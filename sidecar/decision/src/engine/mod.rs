//! The decision engine: the one place a decision is made, whether the
//! request came over ext_authz gRPC, the HTTP API, or a linked-in gateway.
//! Decisions read the current bundle through an `ArcSwap`: never blocked by a
//! reload, never a mix of two policy sets.
//!
//! The life of a decision (`Engine::check`):
//! 1. load the current snapshot (a lock-free read);
//! 2. strip the query; refuse a non-canonical path (deny, `non-canonical
//!    path`): no decision about a path the upstream could read differently;
//! 3. map the route (host, method, path template) to action and resource,
//!    the claims to a principal and its claim parents (no route: deny);
//! 4. take the action's scope; the cache key is the generation, principal,
//!    claim parents, action, resource, route context and only the context
//!    attributes the scope's policies read;
//! 5. on a miss, build only the context the scope reads, pick the entities
//!    (the stored set, or a slice: the principal with its claim parents and
//!    every stored entity the evaluation can reach) and evaluate the
//!    scope's policies;
//! 6. count, queue a decision-log record (never blocking), answer.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Context, Entities, Entity, EntityUid, Request};
use serde::Serialize;

use crate::bundle::{self, Bundle, ENTITIES_FILE, EntityKey};
use crate::cache::DecisionCache;
use crate::cedar_json;
use crate::claims::Claims;
use crate::decision_log::{DecisionLog, Record, Subject};
use crate::directory::Directory;
use crate::error::{self, Error, LoadError};
use crate::mapping;
use crate::mapping::ContextUse;
use crate::metrics::Metrics;
use crate::outcome::{Decision, Outcome};

mod direct;
mod entities;
mod key;

pub use direct::DirectRequest;
use key::{check_key, principal_slice};

/// An HTTP request as the decision contract sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckRequest<'a> {
    pub method: &'a str,
    /// Request target path; a query string is ignored.
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub source: Option<IpAddr>,
    /// Verified claims, or `None` for an unauthenticated request.
    pub claims: Option<&'a Claims>,
    pub request_id: Option<&'a str>,
    /// Request time in seconds since the epoch; `None` means now.
    pub time: Option<i64>,
}

/// Options that shape an engine beyond its policy directory.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cache_entries: u64,
    pub cache_ttl: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_entries: 100_000,
            cache_ttl: Duration::from_secs(5),
        }
    }
}

/// The bundle being served, the directory beside it, and their
/// generation (bumped on every swap of either).
#[derive(Debug)]
pub struct Snapshot {
    pub bundle: Arc<Bundle>,
    pub directory: Arc<Directory>,
    pub generation: u64,
}

/// Result of the last reload attempt, for `/v1/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    pub last_error: Option<String>,
    pub last_attempt: Option<f64>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

pub struct Engine {
    current: ArcSwap<Snapshot>,
    dir: PathBuf,
    authorizer: Authorizer,
    cache: DecisionCache,
    log: Option<DecisionLog>,
    metrics: Metrics,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads and entity writes; decisions never take it.
    writes: Mutex<()>,
    /// Serialises swaps of the bundle and of the directory, so neither
    /// undoes the other.
    swaps: Mutex<()>,
    generation: AtomicU64,
    /// The change feed's cursor the directory reflects (0: no feed).
    feed_cursor: AtomicI64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Load `dir` and build an engine; an invalid directory is an error.
    pub fn new(dir: &Path, options: &EngineOptions, metrics: Metrics) -> Result<Self, LoadError> {
        let bundle = Bundle::load(dir)?;
        Ok(Self {
            current: ArcSwap::from_pointee(Snapshot {
                bundle: Arc::new(bundle),
                directory: Arc::default(),
                generation: 1,
            }),
            dir: dir.to_owned(),
            authorizer: Authorizer::new(),
            cache: DecisionCache::new(options.cache_entries, options.cache_ttl),
            log: None,
            metrics,
            status: Mutex::new(ReloadStatus::default()),
            writes: Mutex::new(()),
            swaps: Mutex::new(()),
            generation: AtomicU64::new(1),
            feed_cursor: AtomicI64::new(0),
        })
    }

    /// Send every decision to a decision log.
    pub fn with_log(mut self, log: DecisionLog) -> Self {
        self.log = Some(log);
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bundle decisions are currently made with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    /// Decide an HTTP request.
    pub fn check(&self, req: &CheckRequest<'_>) -> Decision {
        let started = Instant::now();
        let snap = self.current.load();
        let bundle = &snap.bundle;
        let path = req.path.split_once('?').map_or(req.path, |(p, _)| p);
        let canonical = match crate::path::normalize(path) {
            Ok(Cow::Borrowed(p)) => p,
            Ok(Cow::Owned(p)) if p == path => path,
            Ok(Cow::Owned(_)) => {
                return self.finish(
                    started,
                    req.request_id,
                    || None,
                    Outcome::deny("non-canonical path"),
                    false,
                );
            }
            Err(e) => {
                return self.finish(
                    started,
                    req.request_id,
                    || None,
                    Outcome::deny(format!("invalid path: {e}")),
                    false,
                );
            }
        };
        // Routes name hosts by the shared rule (lower case, no trailing dot).
        let host = match req
            .host
            .filter(|h| !h.is_empty())
            .map(crate::host::normalize)
        {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                return self.finish(
                    started,
                    req.request_id,
                    || None,
                    Outcome::deny(format!("invalid host: {e}")),
                    false,
                );
            }
        };
        let host = host.as_deref().map(crate::host::name);
        let mapped = match bundle.mapping.map(req.method, canonical, host, req.claims) {
            Ok(m) => m,
            Err(e) => {
                return self.finish(
                    started,
                    req.request_id,
                    || None,
                    Outcome::deny(e.to_string()),
                    false,
                );
            }
        };
        let time = req.time.unwrap_or_else(bootstrap::clock::unix_seconds);
        let scope = bundle.scope(&mapped.action);
        let key = self.cache.enabled().then(|| {
            check_key(
                snap.generation,
                &scope.context_use,
                &mapped,
                req.claims,
                req.source,
                time,
            )
        });
        let uids = || {
            Some(Subject::Uids(
                mapped.principal.clone(),
                mapped.action.clone(),
                mapped.resource.clone(),
            ))
        };
        if let Some(hit) = key.as_deref().and_then(|k| self.cache.get(k)) {
            self.metrics.cache_hits.inc();
            return self.finish(started, req.request_id, uids, hit, true);
        }
        let outcome = (|| {
            let context = mapping::context(
                &scope.context_use,
                req.claims,
                req.source,
                time,
                mapped.route_context,
            )
            .map_err(|e| format!("context: {e}"))?;
            let slice;
            let entities = match principal_slice(
                bundle,
                &snap.directory,
                &scope.literal_refs,
                &mapped.principal,
                &mapped.claim_parents,
                &mapped.action,
                &mapped.resource,
            )? {
                Some(s) => {
                    slice = s;
                    &slice
                }
                None => &bundle.entities,
            };
            let request = Request::new(
                mapped.principal.clone(),
                mapped.action.clone(),
                mapped.resource.clone(),
                context,
                None,
            )
            .map_err(|e| format!("request: {}", error::flatten(&e)))?;
            Ok::<_, String>(self.evaluate(bundle, &request, &scope.policies, entities))
        })()
        .unwrap_or_else(|e| Outcome {
            allowed: false,
            policies: Vec::new(),
            errors: vec![e],
            reason: None,
            step_up: None,
        });
        let outcome = Arc::new(outcome);
        self.metrics.cache_misses.inc();
        if let Some(key) = key {
            self.cache.insert(key, outcome.clone());
        }
        self.finish(started, req.request_id, uids, outcome, false)
    }

    /// Cedar's decision. A deny that only step-up forbids determined asks
    /// for a stronger sign-in only if, without them, the request would be
    /// allowed: otherwise a second factor would not help, and it is a
    /// plain deny. The second evaluation happens on those denies alone.
    fn evaluate(
        &self,
        bundle: &Bundle,
        request: &Request,
        policies: &cedar_policy::PolicySet,
        entities: &Entities,
    ) -> Outcome {
        let response = self.authorizer.is_authorized(request, policies, entities);
        let mut outcome = Outcome::from_cedar(&response, &bundle.step_ups);
        if outcome.step_up.is_some() {
            let rest = cedar_policy::PolicySet::from_policies(
                policies
                    .policies()
                    .filter(|p| !bundle.step_ups.contains_key(&p.id().to_string()))
                    .cloned(),
            );
            let lifted = rest.is_ok_and(|rest| {
                self.authorizer
                    .is_authorized(request, &rest, entities)
                    .decision()
                    == cedar_policy::Decision::Allow
            });
            if !lifted {
                outcome.step_up = None;
            }
        }
        outcome
    }

    fn finish(
        &self,
        started: Instant,
        request_id: Option<&str>,
        subject: impl FnOnce() -> Option<Subject>,
        outcome: impl Into<Arc<Outcome>>,
        cached: bool,
    ) -> Decision {
        let outcome = outcome.into();
        let elapsed = started.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        let decision = if outcome.allowed { "allow" } else { "deny" };
        if outcome.policies.is_empty() {
            self.metrics
                .evaluations
                .with_label_values(&["default", decision])
                .inc();
        }
        for policy in &outcome.policies {
            self.metrics
                .evaluations
                .with_label_values(&[policy.as_str(), decision])
                .inc();
        }
        if let Some(log) = &self.log {
            log.record(
                || Record {
                    request_id: request_id.map(str::to_owned),
                    subject: subject(),
                    outcome: outcome.clone(),
                    latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                    cached,
                    time: SystemTime::now(),
                },
                outcome.allowed,
            );
        }
        Decision { outcome, cached }
    }

    /// Re-read the policy directory; on success swap it in, on failure keep
    /// serving the current set and report why.
    pub fn reload(&self) -> Result<bool, LoadError> {
        let _guard = lock(&self.writes);
        let result = Bundle::load(&self.dir);
        let mut status = lock(&self.status);
        status.last_attempt = Some(bootstrap::clock::unix_seconds_f64());
        match result {
            Ok(bundle) => {
                let changed = bundle.version != self.current.load().bundle.version;
                if changed {
                    self.swap(bundle);
                    tracing::info!(version = %self.current.load().bundle.version, "policy set reloaded");
                }
                status.last_error = None;
                status.reloads_ok += 1;
                self.metrics.reloads.with_label_values(&["success"]).inc();
                Ok(changed)
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload refused; the previous set keeps serving");
                status.last_error = Some(e.to_string());
                status.reloads_failed += 1;
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                Err(e)
            }
        }
    }

    fn swap(&self, bundle: Bundle) {
        let _guard = lock(&self.swaps);
        let directory = self.current.load().directory.clone();
        self.install(Arc::new(bundle), directory);
    }

    /// Serves decisions from `directory` from now on (the change feed's
    /// users and groups); no cached decision from before survives.
    pub fn set_directory(&self, directory: Directory) {
        let _guard = lock(&self.swaps);
        let bundle = self.current.load().bundle.clone();
        self.install(bundle, Arc::new(directory));
    }

    /// The directory decisions are made with.
    pub fn directory(&self) -> Arc<Directory> {
        self.current.load().directory.clone()
    }

    /// The directory now reflects the change feed up to `cursor` (set
    /// after the directory itself, so a reader that loads the cursor first
    /// decides with a directory at least that current).
    pub fn set_feed_cursor(&self, cursor: i64) {
        self.feed_cursor.store(cursor, Ordering::Release);
    }

    /// The change feed's cursor the directory reflects; 0 without a feed.
    /// Proxies that cache decisions (the gateway) reuse only those made at
    /// or after the cursor of the last change they know of.
    pub fn feed_cursor(&self) -> i64 {
        self.feed_cursor.load(Ordering::Acquire)
    }

    fn install(&self, bundle: Arc<Bundle>, directory: Arc<Directory>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.store(Arc::new(Snapshot {
            bundle,
            directory,
            generation,
        }));
        self.cache.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
