//! A policy directory loaded into memory: schema, policies, stored entities
//! and the HTTP mapping, all validated together. A bundle is immutable; a
//! reload or an entity write builds a new one and swaps it in whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{
    ActionConstraint, Entities, Entity, EntityUid, Policy, PolicyId, PolicySet, Schema,
    ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

use crate::error::{LoadError, diagnostic, flatten};
use crate::mapping::{ContextUse, Mapping};

/// File names inside a policy directory.
pub const ENTITIES_FILE: &str = "entities.json";
pub const ROUTES_FILE: &str = "routes.toml";
const SCHEMA_EXT: &str = "cedarschema";
const POLICY_EXT: &str = "cedar";

/// One policy as written on disk, for `GET /v1/policies`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicySource {
    pub id: String,
    pub file: String,
    pub text: String,
}

/// An immutable, validated policy directory.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub schema: Schema,
    pub schema_text: String,
    pub policies: PolicySet,
    /// What a request for each schema action needs; see [`Bundle::scope`].
    by_action: HashMap<EntityUid, Arc<ActionScope>>,
    /// The same for an action the schema does not declare: every policy.
    all_actions: Arc<ActionScope>,
    pub sources: Vec<PolicySource>,
    /// Stored entities plus the schema's action entities.
    pub entities: Entities,
    /// Stored entities in their JSON form, the content of `entities.json`.
    pub stored: BTreeMap<EntityKey, serde_json::Value>,
    pub mapping: Mapping,
    /// For each stored entity, the other entities its attributes reach.
    pub reach: HashMap<EntityUid, Arc<[EntityUid]>>,
    /// Content hash of the directory (first 16 hex digits of SHA-256).
    pub version: String,
    pub loaded_at: SystemTime,
}

/// `(type, id)` of a stored entity, ordered so `entities.json` is stable.
pub type EntityKey = (String, String);

/// The raw files of a policy directory, read in one pass.
struct Files {
    schema: (String, String),
    policies: Vec<(String, String)>,
    routes: String,
    entities: Option<String>,
}

impl Bundle {
    /// Read and validate a policy directory.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let files = read_dir(dir)?;
        let entities_json = match &files.entities {
            Some(text) => serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                LoadError::one(format!("{ENTITIES_FILE}:{}:{}: {e}", e.line(), e.column()))
            })?,
            None => serde_json::Value::Array(Vec::new()),
        };
        let stored = stored_map(entities_json)?;
        Self::build(dir, files, stored)
    }

    /// The same directory with a new set of stored entities (an entity write).
    pub fn with_entities(
        &self,
        stored: BTreeMap<EntityKey, serde_json::Value>,
    ) -> Result<Self, LoadError> {
        let entities = build_entities(&self.schema, &stored)?;
        let reach = reach_map(&entities);
        let (by_action, all_actions) = index_by_action(&self.schema, &self.policies, &entities);
        let mut next = Self {
            dir: self.dir.clone(),
            schema: self.schema.clone(),
            schema_text: self.schema_text.clone(),
            policies: self.policies.clone(),
            by_action,
            all_actions,
            sources: self.sources.clone(),
            entities,
            stored,
            mapping: self.mapping.clone(),
            reach,
            version: String::new(),
            loaded_at: SystemTime::now(),
        };
        next.version = version_of(
            &next.schema_text,
            &next.sources,
            &self.mapping.source,
            &next.entities_file(),
        );
        Ok(next)
    }

    fn build(
        dir: &Path,
        files: Files,
        stored: BTreeMap<EntityKey, serde_json::Value>,
    ) -> Result<Self, LoadError> {
        let (schema_file, schema_text) = files.schema;
        let schema = match Schema::from_cedarschema_str(&schema_text) {
            Ok((schema, _warnings)) => schema,
            Err(e) => return Err(LoadError::one(diagnostic(&schema_file, &schema_text, &e))),
        };

        let mut errors = Vec::new();
        let mut policies = PolicySet::new();
        let mut sources = Vec::new();
        let mut file_of: HashMap<String, usize> = HashMap::new();
        for (index, (file, text)) in files.policies.iter().enumerate() {
            let parsed = match PolicySet::from_str(text) {
                Ok(set) => set,
                Err(e) => {
                    errors.push(diagnostic(file, text, &e));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                errors.push(format!(
                    "{file}: policy templates are not supported; write static policies"
                ));
                continue;
            }
            // `from_str` names policies `policy0`, `policy1`, … in source order.
            let mut in_file: Vec<&Policy> = parsed.policies().collect();
            in_file.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(0)
            });
            for (n, policy) in in_file.into_iter().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{file}#{n}"));
                let renamed = policy.new_id(PolicyId::new(&id));
                if file_of.contains_key(&id) {
                    errors.push(format!("{file}: duplicate policy id `{id}`"));
                    continue;
                }
                file_of.insert(id.clone(), index);
                sources.push(PolicySource {
                    id: id.clone(),
                    file: file.clone(),
                    text: policy.to_string(),
                });
                if let Err(e) = policies.add(renamed) {
                    errors.push(format!("{file}: {e}"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(LoadError(errors));
        }

        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for e in result.validation_errors() {
            let (file, text) = file_of
                .get(&e.policy_id().to_string())
                .map(|i| (&files.policies[*i].0, &files.policies[*i].1))
                .map_or(("<policies>", ""), |(f, t)| (f.as_str(), t.as_str()));
            errors.push(diagnostic(file, text, e));
        }
        if !errors.is_empty() {
            return Err(LoadError(errors));
        }

        let mapping = Mapping::parse(&files.routes, &schema).map_err(|errs| {
            LoadError(
                errs.into_iter()
                    .map(|e| format!("{ROUTES_FILE}: {e}"))
                    .collect(),
            )
        })?;
        let entities = build_entities(&schema, &stored)?;
        let (by_action, all_actions) = index_by_action(&schema, &policies, &entities);
        let mut bundle = Self {
            dir: dir.to_owned(),
            schema,
            schema_text,
            policies,
            by_action,
            all_actions,
            sources,
            reach: reach_map(&entities),
            entities,
            stored,
            mapping,
            version: String::new(),
            loaded_at: SystemTime::now(),
        };
        bundle.version = version_of(
            &bundle.schema_text,
            &bundle.sources,
            &bundle.mapping.source,
            files.entities.as_deref().unwrap_or("[]"),
        );
        Ok(bundle)
    }

    /// What evaluating a request for `action` needs.
    pub fn scope(&self, action: &EntityUid) -> &ActionScope {
        self.by_action.get(action).unwrap_or(&self.all_actions)
    }

    /// The content of `entities.json` for the stored entities.
    pub fn entities_file(&self) -> String {
        let list: Vec<&serde_json::Value> = self.stored.values().collect();
        let mut text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
        text.push('\n');
        text
    }

    /// Number of stored entities (not counting actions).
    pub fn entity_count(&self) -> usize {
        self.stored.len()
    }
}

fn read_dir(dir: &Path) -> Result<Files, LoadError> {
    let listing = std::fs::read_dir(dir).map_err(|e| {
        LoadError::one(format!(
            "{}: cannot read policy directory: {e}",
            dir.display()
        ))
    })?;
    let mut names: Vec<String> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| LoadError::one(format!("{}: {e}", dir.display())))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| LoadError::one(format!("{name}: cannot read: {e}")))
    };
    let schemas: Vec<&String> = names.iter().filter(|n| has_ext(n, SCHEMA_EXT)).collect();
    let schema = match schemas.as_slice() {
        [one] => ((*one).clone(), read(one)?),
        [] => {
            return Err(LoadError::one(format!(
                "{}: no `*.{SCHEMA_EXT}` schema file",
                dir.display()
            )));
        }
        many => {
            return Err(LoadError::one(format!(
                "{}: more than one schema file: {}",
                dir.display(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut policies = Vec::new();
    for name in names.iter().filter(|n| has_ext(n, POLICY_EXT)) {
        policies.push((name.clone(), read(name)?));
    }
    if !names.iter().any(|n| n == ROUTES_FILE) {
        return Err(LoadError::one(format!(
            "{}: no `{ROUTES_FILE}` route mapping",
            dir.display()
        )));
    }
    let routes = read(ROUTES_FILE)?;
    let entities = if names.iter().any(|n| n == ENTITIES_FILE) {
        Some(read(ENTITIES_FILE)?)
    } else {
        None
    };
    Ok(Files {
        schema,
        policies,
        routes,
        entities,
    })
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e == ext)
}

/// Index `entities.json` by uid, refusing duplicates and malformed uids.
pub fn stored_map(
    json: serde_json::Value,
) -> Result<BTreeMap<EntityKey, serde_json::Value>, LoadError> {
    let serde_json::Value::Array(list) = json else {
        return Err(LoadError::one(format!(
            "{ENTITIES_FILE}: expected a JSON array of entities"
        )));
    };
    let mut map = BTreeMap::new();
    for (i, value) in list.into_iter().enumerate() {
        let key = entity_key(&value).ok_or_else(|| {
            LoadError::one(format!(
                "{ENTITIES_FILE}: entity #{i} has no `uid` with `type` and `id`"
            ))
        })?;
        if map.insert(key.clone(), value).is_some() {
            return Err(LoadError::one(format!(
                "{ENTITIES_FILE}: duplicate entity `{}::\"{}\"`",
                key.0, key.1
            )));
        }
    }
    Ok(map)
}

/// `(type, id)` of an entity in Cedar's JSON format (`uid` as `{type, id}`
/// or `{"__entity": {type, id}}`).
pub fn entity_key(value: &serde_json::Value) -> Option<EntityKey> {
    let uid = value.get("uid")?;
    let uid = uid.get("__entity").unwrap_or(uid);
    Some((
        uid.get("type")?.as_str()?.to_owned(),
        uid.get("id")?.as_str()?.to_owned(),
    ))
}

fn build_entities(
    schema: &Schema,
    stored: &BTreeMap<EntityKey, serde_json::Value>,
) -> Result<Entities, LoadError> {
    let list = serde_json::Value::Array(stored.values().cloned().collect());
    Entities::from_json_value(list, Some(schema))
        .map_err(|e| LoadError::one(format!("{ENTITIES_FILE}: {}", flatten(&e))))
}

fn reach_map(entities: &Entities) -> HashMap<EntityUid, Arc<[EntityUid]>> {
    entities
        .iter()
        .filter_map(|e| {
            let uid = e.uid();
            let reach = reach_of(entities, &uid)?;
            (!reach.is_empty()).then(|| (uid, reach.into()))
        })
        .collect()
}

/// Entities reachable from `start` through attribute values (not `start`).
fn reach_of(entities: &Entities, start: &EntityUid) -> Option<Vec<EntityUid>> {
    let mut seen: Vec<EntityUid> = vec![start.clone()];
    let mut queue = vec![start.clone()];
    while let Some(uid) = queue.pop() {
        let Some(entity) = entities.get(&uid) else {
            continue;
        };
        let Ok(json) = entity.to_json_value() else {
            continue;
        };
        let mut found = Vec::new();
        if let Some(attrs) = json.get("attrs") {
            collect_entity_literals(attrs, &mut found);
        }
        if let Some(tags) = json.get("tags") {
            collect_entity_literals(tags, &mut found);
        }
        for raw in found {
            if let Ok(next) = EntityUid::from_json(raw)
                && !seen.contains(&next)
            {
                seen.push(next.clone());
                queue.push(next);
            }
        }
    }
    seen.remove(0);
    Some(seen)
}

/// Every `{"__entity": {...}}` inside a JSON value.
fn collect_entity_literals(json: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match json {
        serde_json::Value::Object(map) => {
            if let Some(uid) = map.get("__entity")
                && !out.contains(uid)
            {
                out.push(uid.clone());
            }
            for v in map.values() {
                collect_entity_literals(v, out);
            }
        }
        serde_json::Value::Array(list) => {
            for v in list {
                collect_entity_literals(v, out);
            }
        }
        _ => {}
    }
}

fn walk_context(json: &serde_json::Value, usage: &mut ContextUse) {
    match json {
        serde_json::Value::Object(map) => {
            if map.get("Var").and_then(|v| v.as_str()) == Some("context") {
                // `context` used as a whole value (`context == {...}`, `context has x` is caught below).
                usage.whole = true;
                return;
            }
            for (op, body) in map {
                let reads_context = (op == "." || op == "has")
                    && body
                        .get("left")
                        .and_then(|l| l.get("Var"))
                        .and_then(|v| v.as_str())
                        == Some("context");
                if reads_context && let Some(attr) = body.get("attr").and_then(|a| a.as_str()) {
                    usage.attrs.insert(attr.to_owned());
                    continue;
                }
                walk_context(body, usage);
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| walk_context(v, usage)),
        _ => {}
    }
}

fn version_of(schema: &str, sources: &[PolicySource], routes: &str, entities: &str) -> String {
    let mut h = Sha256::new();
    for part in [schema, routes, entities] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for s in sources {
        h.update((s.id.len() as u64).to_le_bytes());
        h.update(s.id.as_bytes());
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Cedar's `Entity` cloned with extra parents (claims add groups and roles).
pub fn with_parents(entity: &Entity, extra: impl IntoIterator<Item = EntityUid>) -> Option<Entity> {
    let (uid, attrs, mut parents) = entity.clone().into_inner();
    parents.extend(extra);
    Entity::new(uid, attrs, parents).ok()
}

/// The policies that can apply to a request for one action, and what they
/// read. Cedar checks a policy's scope before its conditions, so a policy whose
/// action scope cannot match is never satisfied and never errors: leaving it
/// out gives the same decision, determining policies and errors, with less
/// work per request, a smaller context and a smaller entity slice.
#[derive(Debug, Clone)]
pub struct ActionScope {
    pub policies: PolicySet,
    /// The context attributes these policies read.
    pub context_use: ContextUse,
    /// Stored entities these policies may dereference whatever the request:
    /// entity literals in their bodies and whatever their attributes reach.
    pub literal_refs: Vec<EntityUid>,
}

impl ActionScope {
    fn of<'a>(policies: impl Iterator<Item = &'a (Policy, ContextUse, Vec<EntityUid>)>) -> Self {
        let mut scope = Self {
            policies: PolicySet::new(),
            context_use: ContextUse::default(),
            literal_refs: Vec::new(),
        };
        for (policy, usage, literals) in policies {
            // Ids are unique in the bundle's set, so `add` cannot fail.
            let _ = scope.policies.add(policy.clone());
            scope.context_use.whole |= usage.whole;
            scope.context_use.attrs.extend(usage.attrs.iter().cloned());
            scope.literal_refs.extend(literals.iter().cloned());
        }
        scope.literal_refs.sort_by_key(ToString::to_string);
        scope.literal_refs.dedup();
        scope
    }
}

/// Pre-computes [`Bundle::scope`] for every action the schema declares,
/// following action groups (`action in [...]`), and for any other action.
fn index_by_action(
    schema: &Schema,
    policies: &PolicySet,
    entities: &Entities,
) -> (HashMap<EntityUid, Arc<ActionScope>>, Arc<ActionScope>) {
    let facts: Vec<(Policy, ContextUse, Vec<EntityUid>)> = policies
        .policies()
        .map(|policy| {
            let mut usage = ContextUse::default();
            let mut found = Vec::new();
            match policy.to_json() {
                Ok(json) => {
                    walk_context(&json, &mut usage);
                    collect_entity_literals(&json, &mut found);
                }
                Err(_) => usage.whole = true,
            }
            let mut literals: Vec<EntityUid> = found
                .into_iter()
                .filter_map(|uid| EntityUid::from_json(uid).ok())
                .filter(|uid| entities.get(uid).is_some())
                .collect();
            let reached: Vec<EntityUid> = literals
                .iter()
                .filter_map(|u| reach_of(entities, u))
                .flatten()
                .collect();
            literals.extend(reached);
            (policy.clone(), usage, literals)
        })
        .collect();
    let all = Arc::new(ActionScope::of(facts.iter()));
    let Ok(actions) = schema.action_entities() else {
        return (HashMap::new(), all);
    };
    let mut index = HashMap::new();
    for action in schema.actions() {
        let groups: Vec<&EntityUid> = actions
            .ancestors(action)
            .map(|a| a.collect())
            .unwrap_or_default();
        let applicable = facts
            .iter()
            .filter(|(p, _, _)| match p.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => &a == action,
                ActionConstraint::In(list) => {
                    list.iter().any(|a| a == action || groups.contains(&a))
                }
            });
        index.insert(action.clone(), Arc::new(ActionScope::of(applicable)));
    }
    (index, all)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cedar_policy::{Authorizer, Request};

    use super::*;

    /// The per-action index must never change a decision: every principal,
    /// action and resource of the demo model, under the full set and under
    /// the action's scope, gives the same decision, reasons and errors.
    #[test]
    fn action_scope_decides_like_the_full_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let bundle = Bundle::load(&dir).unwrap();
        let uids: Vec<EntityUid> = bundle
            .stored
            .keys()
            .map(|(t, i)| EntityUid::from_json(serde_json::json!({"type": t, "id": i})).unwrap())
            .collect();
        let actions: Vec<EntityUid> = bundle.schema.actions().cloned().collect();
        let authorizer = Authorizer::new();
        let full = ContextUse {
            whole: true,
            attrs: BTreeSet::new(),
        };
        let claims = crate::claims::Claims::from_json(
            serde_json::json!({"sub": "x", "amr": ["pwd", "mfa"], "scope": "orders:read orders:write"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let (mut compared, mut allowed) = (0, 0);
        for action in &actions {
            let scope = bundle.scope(action);
            assert!(scope.policies.policies().count() <= bundle.policies.policies().count());
            for principal in &uids {
                for resource in &uids {
                    let context = crate::mapping::context(
                        &full,
                        Some(&claims),
                        Some("10.0.0.1".parse().unwrap()),
                        0,
                        &[],
                    )
                    .unwrap();
                    let request = Request::new(
                        principal.clone(),
                        action.clone(),
                        resource.clone(),
                        context,
                        None,
                    )
                    .unwrap();
                    let a = authorizer.is_authorized(&request, &bundle.policies, &bundle.entities);
                    let b = authorizer.is_authorized(&request, &scope.policies, &bundle.entities);
                    assert_eq!(
                        a.decision(),
                        b.decision(),
                        "{principal} {action} {resource}"
                    );
                    let reasons = |r: &cedar_policy::Response| {
                        let mut v: Vec<String> =
                            r.diagnostics().reason().map(ToString::to_string).collect();
                        v.sort();
                        v
                    };
                    assert_eq!(reasons(&a), reasons(&b), "{principal} {action} {resource}");
                    assert_eq!(
                        a.diagnostics().errors().count(),
                        b.diagnostics().errors().count(),
                        "{principal} {action} {resource}"
                    );
                    compared += 1;
                    allowed += usize::from(a.decision() == cedar_policy::Decision::Allow);
                }
            }
        }
        assert!(
            compared > 1000 && allowed > 50,
            "compared {compared}, allowed {allowed}"
        );
        // Action groups are followed: a policy on `Read` applies to `ReadOrder`.
        let read_order =
            EntityUid::from_json(serde_json::json!({"type": "App::Action", "id": "ReadOrder"}))
                .unwrap();
        let administer =
            EntityUid::from_json(serde_json::json!({"type": "App::Action", "id": "Administer"}))
                .unwrap();
        assert_ne!(
            bundle.scope(&read_order).policies.policies().count(),
            bundle.scope(&administer).policies.policies().count()
        );
    }
}
