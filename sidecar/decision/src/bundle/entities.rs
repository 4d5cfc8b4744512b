//! Stored entities: `entities.json` indexed by uid, built against the
//! schema, and what each entity's attributes reach.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cedar_policy::{Entities, EntityUid, Schema};

use super::{ENTITIES_FILE, EntityKey};
use crate::error::{LoadError, flatten};

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

pub(super) fn build_entities(
    schema: &Schema,
    stored: &BTreeMap<EntityKey, serde_json::Value>,
) -> Result<Entities, LoadError> {
    let list = serde_json::Value::Array(stored.values().cloned().collect());
    Entities::from_json_value(list, Some(schema))
        .map_err(|e| LoadError::one(format!("{ENTITIES_FILE}: {}", flatten(&e))))
}

pub(super) fn reach_map(entities: &Entities) -> HashMap<EntityUid, Arc<[EntityUid]>> {
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
pub(super) fn reach_of(entities: &Entities, start: &EntityUid) -> Option<Vec<EntityUid>> {
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
pub(super) fn collect_entity_literals(json: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
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
