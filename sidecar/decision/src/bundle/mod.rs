//! A policy directory loaded into memory: schema, policies, stored entities
//! and the HTTP mapping, all validated together. A bundle is immutable; a
//! reload or an entity write builds a new one and swaps it in whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{
    Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
};

use crate::directory::AttrKinds;
use crate::error::{LoadError, diagnostic};
use crate::mapping::Mapping;
use crate::outcome::StepUp;

mod entities;
mod files;
mod scope;

pub use entities::{entity_key, stored_map};
pub use scope::ActionScope;

use entities::{build_entities, reach_map};
use files::{Files, read_dir, version_of};
use scope::index_by_action;

/// File names inside a policy directory.
pub const ENTITIES_FILE: &str = "entities.json";
pub const ROUTES_FILE: &str = "routes.toml";

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
    /// The schema's entity and action types by name, so a request's uids
    /// need no parsing.
    type_names: HashMap<String, EntityTypeName>,
    pub sources: Vec<PolicySource>,
    /// Stored entities plus the schema's action entities.
    pub entities: Entities,
    /// Stored entities in their JSON form, the content of `entities.json`.
    pub stored: BTreeMap<EntityKey, serde_json::Value>,
    pub mapping: Mapping,
    /// Policies annotated `@step_up` (by id): what a deny they determine
    /// asks for instead (RFC 9470).
    pub step_ups: HashMap<String, StepUp>,
    /// For each stored entity, the other entities its attributes reach.
    pub reach: HashMap<EntityUid, Arc<[EntityUid]>>,
    /// The attributes the schema declares for each entity type: which of
    /// the directory's a decision may see.
    pub attr_kinds: AttrKinds,
    /// Content hash of the directory (first 16 hex digits of SHA-256).
    pub version: String,
    pub loaded_at: SystemTime,
}

/// A policy's `@step_up("<acr values>")` and `@max_age("<seconds>")`:
/// only on a forbid (a permit cannot deny), with values that say something.
fn step_up_of(policy: &Policy) -> Result<Option<StepUp>, String> {
    let acr = policy.annotation("step_up");
    let max_age = policy.annotation("max_age");
    let Some(acr) = acr.map(str::trim) else {
        return match max_age {
            Some(_) => Err("`@max_age` needs `@step_up`".into()),
            None => Ok(None),
        };
    };
    if policy.effect() != cedar_policy::Effect::Forbid {
        return Err("`@step_up` belongs on a forbid policy".into());
    }
    if acr.is_empty() || acr.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err("`@step_up` must name one or more acr values".into());
    }
    let max_age = max_age
        .map(|m| {
            m.trim()
                .parse::<u64>()
                .map_err(|_| format!("`@max_age(\"{m}\")` is not a number of seconds"))
        })
        .transpose()?;
    Ok(Some(StepUp {
        acr_values: acr.to_owned(),
        max_age,
    }))
}

/// `(type, id)` of a stored entity, ordered so `entities.json` is stable.
pub type EntityKey = (String, String);

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
            type_names: self.type_names.clone(),
            sources: self.sources.clone(),
            entities,
            stored,
            mapping: self.mapping.clone(),
            step_ups: self.step_ups.clone(),
            reach,
            attr_kinds: self.attr_kinds.clone(),
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
        let mut step_ups = HashMap::new();
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
                match step_up_of(policy) {
                    Ok(Some(step)) => {
                        step_ups.insert(id.clone(), step);
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(format!("{file}: policy `{id}`: {e}")),
                }
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
        let attr_kinds = AttrKinds::from_schema(&schema_text);
        let type_names = type_names(&schema);
        let mut bundle = Self {
            dir: dir.to_owned(),
            schema,
            schema_text,
            policies,
            by_action,
            all_actions,
            type_names,
            sources,
            reach: reach_map(&entities),
            attr_kinds,
            entities,
            stored,
            mapping,
            step_ups,
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

    /// The schema's entity or action type called `name`.
    pub fn type_name(&self, name: &str) -> Option<&EntityTypeName> {
        self.type_names.get(name)
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

fn type_names(schema: &Schema) -> HashMap<String, EntityTypeName> {
    let actions = schema.actions().map(EntityUid::type_name);
    schema
        .entity_types()
        .chain(actions)
        .map(|t| (t.to_string(), t.clone()))
        .collect()
}
