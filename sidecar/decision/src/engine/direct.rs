//! A Cedar request asked directly (`/v1/is_authorized`): principal,
//! action, resource and context in Cedar JSON, validated by the schema.

use super::*;

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

impl Engine {
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
            if let Some(uid) = cedar_json::uid(&v, |name| bundle.type_name(name)) {
                return Ok(uid);
            }
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
        let outcome = Arc::new(self.evaluate(bundle, &request, &scope.policies, entities));
        self.metrics.cache_misses.inc();
        if let (Some(key), Some(exact)) = (key, exact_key) {
            self.cache.insert(key, outcome.clone());
            self.cache.insert(exact, outcome.clone());
        }
        Ok(self.finish(started, request_id, uids, outcome, false))
    }
}

pub(super) fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}
