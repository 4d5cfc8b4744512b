//! The decision engine: the one place a decision is made, whether the
//! request came over ext_authz gRPC, the HTTP API, or a linked-in gateway.
//! Decisions read the current bundle through an `ArcSwap`: never blocked by a
//! reload, never a mix of two policy sets.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::error::{self, Error, LoadError};
use crate::mapping;
use crate::mapping::ContextUse;
use crate::metrics::Metrics;
use crate::outcome::{Decision, Outcome};

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

/// A Cedar request asked directly (`/v1/is_authorized`), in Cedar JSON.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectRequest {
    pub principal: serde_json::Value,
    pub action: serde_json::Value,
    pub resource: serde_json::Value,
    #[serde(default = "empty_object")]
    pub context: serde_json::Value,
    #[serde(default)]
    pub entities: Option<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
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

/// The bundle being served and its generation (bumped on every swap).
#[derive(Debug)]
pub struct Snapshot {
    pub bundle: Bundle,
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
    generation: AtomicU64,
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
                bundle,
                generation: 1,
            }),
            dir: dir.to_owned(),
            authorizer: Authorizer::new(),
            cache: DecisionCache::new(options.cache_entries, options.cache_ttl),
            log: None,
            metrics,
            status: Mutex::new(ReloadStatus::default()),
            writes: Mutex::new(()),
            generation: AtomicU64::new(1),
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
        let time = req.time.unwrap_or_else(now_secs);
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
            Ok::<_, String>(Outcome::from_cedar(&self.authorizer.is_authorized(
                &request,
                &scope.policies,
                entities,
            )))
        })()
        .unwrap_or_else(|e| Outcome {
            allowed: false,
            policies: Vec::new(),
            errors: vec![e],
            reason: None,
        });
        let outcome = Arc::new(outcome);
        self.metrics.cache_misses.inc();
        if let Some(key) = key {
            self.cache.insert(key, outcome.clone());
        }
        self.finish(started, req.request_id, uids, outcome, false)
    }

    /// Decide a Cedar request given directly. Malformed or non-conforming
    /// input is an error (a 400), not a decision.
    pub fn is_authorized(
        &self,
        mut req: DirectRequest,
        request_id: Option<&str>,
    ) -> Result<Decision, Error> {
        let started = Instant::now();
        let snap = self.current.load();
        let bundle = &snap.bundle;
        // The same JSON as a request already validated and decided under this
        // bundle needs neither parsing nor validation again.
        let exact_key = (self.cache.enabled() && req.entities.is_none()).then(|| {
            let mut k = String::with_capacity(192);
            let _ = write!(
                k,
                "j|{}|{}|{}|{}|{}",
                snap.generation, req.principal, req.action, req.resource, req.context
            );
            k
        });
        if let Some(hit) = exact_key.as_deref().and_then(|k| self.cache.get(k)) {
            self.metrics.cache_hits.inc();
            let (p, a, r) = (req.principal, req.action, req.resource);
            return Ok(self.finish(
                started,
                request_id,
                || Some(Subject::Json(p, a, r)),
                hit,
                true,
            ));
        }
        let uid = |field: &str, v: serde_json::Value| {
            EntityUid::from_json(v)
                .map_err(|e| Error::BadRequest(format!("`{field}`: {}", error::flatten(&e))))
        };
        let principal = uid("principal", req.principal)?;
        let action = uid("action", req.action)?;
        let resource = uid("resource", req.resource)?;
        let scope = bundle.scope(&action);
        // Requests that differ only in context attributes no policy reads
        // share a decision.
        let key = exact_key.is_some().then(|| {
            let mut k = format!("d|{}|{principal}|{action}|{resource}|", snap.generation);
            if let serde_json::Value::Object(map) = &req.context {
                for (name, value) in map.iter().filter(|(n, _)| scope.context_use.reads(n)) {
                    let _ = write!(k, "{name}={value};");
                }
            }
            k
        });
        let cedar_context = |json| {
            Context::from_json_value(json, Some((&bundle.schema, &action)))
                .map_err(|e| Error::BadRequest(format!("`context`: {}", error::flatten(&e))))
        };
        let quick = match &req.context {
            serde_json::Value::Object(attrs) => cedar_json::context(attrs),
            _ => None,
        };
        let quick_path = quick.is_some();
        let context = match quick {
            Some(c) => c,
            None => cedar_context(std::mem::take(&mut req.context))?,
        };
        let request = Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            context,
            Some(&bundle.schema),
        )
        .or_else(|e| {
            // Cedar's parser names the offending attribute; ask it on the
            // (rare) way out.
            if quick_path {
                cedar_context(req.context)?;
            }
            Err(Error::BadRequest(error::flatten(&e)))
        })?;
        let uids = || {
            Some(Subject::Uids(
                principal.clone(),
                action.clone(),
                resource.clone(),
            ))
        };
        if let Some(hit) = key.as_deref().and_then(|k| self.cache.get(k)) {
            self.metrics.cache_hits.inc();
            if let Some(exact) = exact_key {
                self.cache.insert(exact, hit.clone());
            }
            return Ok(self.finish(started, request_id, uids, hit, true));
        }
        let extra;
        let entities = match req.entities {
            Some(json) => {
                let given = Entities::from_json_value(json, Some(&bundle.schema)).map_err(|e| {
                    Error::BadRequest(format!("`entities`: {}", error::flatten(&e)))
                })?;
                extra = bundle
                    .entities
                    .clone()
                    .upsert_entities(given.iter().cloned(), None)
                    .map_err(|e| {
                        Error::BadRequest(format!("`entities`: {}", error::flatten(&e)))
                    })?;
                &extra
            }
            None => &bundle.entities,
        };
        let outcome = Arc::new(Outcome::from_cedar(&self.authorizer.is_authorized(
            &request,
            &scope.policies,
            entities,
        )));
        self.metrics.cache_misses.inc();
        if let (Some(key), Some(exact)) = (key, exact_key) {
            self.cache.insert(key, outcome.clone());
            self.cache.insert(exact, outcome.clone());
        }
        Ok(self.finish(started, request_id, uids, outcome, false))
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
        status.last_attempt = Some(now_secs_f64());
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
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.current
            .store(Arc::new(Snapshot { bundle, generation }));
        self.cache.clear();
    }

    /// The stored entity `type::"id"` in Cedar JSON.
    pub fn entity(&self, type_name: &str, id: &str) -> Option<serde_json::Value> {
        self.current
            .load()
            .bundle
            .stored
            .get(&(type_name.to_owned(), id.to_owned()))
            .cloned()
    }

    /// Create or replace entities (upsert). Validated against the schema and
    /// durably written before it returns; decisions see them at once.
    pub fn put_entities(&self, entities: Vec<serde_json::Value>) -> Result<(), Error> {
        self.write_entities(|stored| {
            for value in entities {
                let key = bundle::entity_key(&value).ok_or_else(|| {
                    Error::BadRequest("every entity needs a `uid` with `type` and `id`".into())
                })?;
                stored.insert(key, value);
            }
            Ok(())
        })
    }

    /// Remove an entity; `NotFound` if it is not stored.
    pub fn delete_entity(&self, type_name: &str, id: &str) -> Result<(), Error> {
        self.write_entities(|stored| {
            stored
                .remove(&(type_name.to_owned(), id.to_owned()))
                .map(|_| ())
                .ok_or_else(|| Error::NotFound(format!("entity `{type_name}::{id:?}`")))
        })
    }

    fn write_entities(
        &self,
        change: impl FnOnce(&mut BTreeMap<EntityKey, serde_json::Value>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _guard = lock(&self.writes);
        let current = self.current.load_full();
        let mut stored = current.bundle.stored.clone();
        change(&mut stored)?;
        // Normalise each entity to Cedar's canonical JSON so the file is stable.
        let next = current.bundle.with_entities(stored)?;
        let canonical: BTreeMap<EntityKey, serde_json::Value> = next
            .stored
            .iter()
            .map(|(k, v)| {
                let uid = EntityUid::from_json(serde_json::json!({"type": k.0, "id": k.1}));
                let json = uid
                    .ok()
                    .and_then(|u| next.entities.get(&u))
                    .and_then(|e| e.to_json_value().ok())
                    .unwrap_or_else(|| v.clone());
                (k.clone(), json)
            })
            .collect();
        let next = next.with_entities(canonical)?;
        bootstrap::fs::write_atomically(
            &self.dir.join(ENTITIES_FILE),
            next.entities_file().as_bytes(),
        )
        .map_err(Error::Storage)?;
        self.swap(next);
        Ok(())
    }
}

/// The entities a check evaluates against. `None` means the stored set as is
/// (the principal is stored, or unknown, and claims add no parents); `Some`
/// is a small slice: the principal with its claim parents, and every stored
/// entity the evaluation can reach (resource, action, attribute references,
/// entity literals of the policies). Building a slice costs a few entity
/// clones; re-closing the whole store per request would cost O(store).
fn principal_slice(
    bundle: &Bundle,
    literal_refs: &[EntityUid],
    principal: &EntityUid,
    claim_parents: &[EntityUid],
    action: &EntityUid,
    resource: &EntityUid,
) -> Result<Option<Entities>, String> {
    let store = &bundle.entities;
    let mut extra: Vec<EntityUid> = Vec::new();
    for parent in claim_parents {
        let already = store
            .ancestors(principal)
            .is_some_and(|mut a| a.any(|x| x == parent));
        if !already && !extra.contains(parent) {
            extra.push(parent.clone());
            if let Some(ancestors) = store.ancestors(parent) {
                extra.extend(ancestors.cloned());
            }
        }
    }
    if extra.is_empty() {
        return Ok(None);
    }
    let principal_entity = match store.get(principal) {
        Some(stored) => bundle::with_parents(stored, extra)
            .ok_or_else(|| format!("principal `{principal}`: cannot merge claim parents"))?,
        None => Entity::new_no_attrs(principal.clone(), extra.into_iter().collect()),
    };
    let mut included: HashSet<&EntityUid> = HashSet::new();
    included.insert(principal);
    let mut slice = vec![principal_entity];
    let reach = |uid: &EntityUid| {
        bundle
            .reach
            .get(uid)
            .map(|r| r.iter())
            .into_iter()
            .flatten()
    };
    let wanted = [action, resource]
        .into_iter()
        .chain(reach(principal))
        .chain(reach(resource))
        .chain(literal_refs);
    for uid in wanted {
        if included.insert(uid)
            && let Some(e) = store.get(uid)
        {
            slice.push(e.clone());
        }
    }
    Entities::from_entities(slice, None)
        .map(Some)
        .map_err(|e| format!("entities: {}", error::flatten(&e)))
}

/// Cache key for a check: the generation, the mapped request, and only the
/// context attributes the policies read.
fn check_key(
    generation: u64,
    uses: &ContextUse,
    mapped: &mapping::Mapped<'_>,
    claims: Option<&Claims>,
    source: Option<IpAddr>,
    time: i64,
) -> String {
    let mut k = String::with_capacity(160);
    let _ = write!(k, "c|{generation}|");
    for uid in [&mapped.principal, &mapped.action, &mapped.resource] {
        push_uid(&mut k, uid);
    }
    k.push('|');
    let mut parents: Vec<&EntityUid> = mapped.claim_parents.iter().collect();
    parents.sort_unstable_by(|a, b| a.id().unescaped().cmp(b.id().unescaped()));
    for p in parents {
        push_uid(&mut k, p);
    }
    let _ = write!(k, "|{}|", mapped.route_context_key);
    if let Some(c) = claims {
        if uses.reads("scopes") {
            push_strs(&mut k, 's', &c.scopes);
        }
        if uses.reads("amr") {
            push_strs(&mut k, 'a', &c.amr);
        }
        if uses.reads("acr") {
            push_strs(&mut k, 'r', c.acr.as_slice());
        }
        if uses.reads("client_id") {
            push_strs(&mut k, 'c', c.client_id.as_slice());
        }
    }
    if uses.reads("source_ip") {
        let _ = write!(k, "i={source:?};");
    }
    if uses.reads("time") {
        let _ = write!(k, "t={time};");
    }
    k
}

/// A list of strings in a cache key, each length-prefixed.
fn push_strs(k: &mut String, tag: char, values: &[String]) {
    k.push(tag);
    for v in values {
        let _ = write!(k, "{}:{v}", v.len());
    }
    k.push(';');
}

/// An entity uid in a cache key: unambiguous (the id is length-prefixed)
/// and far cheaper than Cedar's escaping `Display`.
fn push_uid(k: &mut String, uid: &EntityUid) {
    let t = uid.type_name();
    for part in t.namespace_components() {
        k.push_str(part);
        k.push_str("::");
    }
    k.push_str(t.basename());
    let id = uid.id().unescaped();
    let _ = write!(k, "#{}:{id};", id.len());
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
