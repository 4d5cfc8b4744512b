//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5): which parts
//! of a resource a response carries.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::AttrPath;
use super::schema::{self, Resource};

/// Resolves `attributes`/`excludedAttributes` paths on `resource`.
/// The paths of `list` that `resource` has (a search across resource
/// types names attributes of each).
pub fn paths_of(resource: Resource, list: &str) -> Vec<AttrPath> {
    list.split(',')
        .filter_map(|p| paths(resource, p).ok())
        .flatten()
        .collect()
}

pub fn paths(resource: Resource, list: &str) -> Result<Vec<AttrPath>, ScimError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let path = super::filter::attr_path(p).map_err(|e| ScimError::invalid_value(e.0))?;
            schema::resolve(resource, path.uri.as_deref(), &path.name).ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "`{p}` is not an attribute of {}",
                    resource.name()
                ))
            })?;
            Ok(path)
        })
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Keeps what `attributes` asks for (and what is always returned), or
/// drops what `excludedAttributes` names (RFC 7644 §3.4.2.5).
pub fn project(
    doc: &mut Value,
    resource: Resource,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) {
    let Value::Object(map) = doc else { return };
    let always = |key: &str| ["schemas", "id"].iter().any(|k| same(k, key));
    let core = |p: &AttrPath| p.uri.as_deref().is_none_or(|u| same(u, resource.schema()));
    let is_extension = |key: &str| resource.extensions().iter().any(|(id, _)| same(id, key));
    if !attributes.is_empty() {
        map.retain(|key, value| {
            if always(key) {
                return true;
            }
            if is_extension(key) {
                let Value::Object(inner) = value else {
                    return false;
                };
                inner.retain(|k, _| {
                    attributes
                        .iter()
                        .any(|p| p.uri.as_deref().is_some_and(|u| same(u, key)) && same(&p.name, k))
                });
                return !inner.is_empty();
            }
            let hits: Vec<&AttrPath> = attributes
                .iter()
                .filter(|p| core(p) && same(&p.name, key))
                .collect();
            if hits.is_empty() {
                return false;
            }
            if hits.iter().all(|p| p.sub.is_some()) {
                let subs: Vec<&str> = hits.iter().filter_map(|p| p.sub.as_deref()).collect();
                keep_subs(value, &subs);
            }
            true
        });
        return;
    }
    for p in excluded {
        let target = if core(p) {
            Some(&mut *map)
        } else {
            map.iter_mut()
                .find(|(k, _)| p.uri.as_deref().is_some_and(|u| same(u, k)))
                .and_then(|(_, v)| v.as_object_mut())
        };
        let Some(target) = target else { continue };
        let Some(key) = target
            .keys()
            .find(|k| same(k, &p.name) && !always(k))
            .cloned()
        else {
            continue;
        };
        match &p.sub {
            None => {
                target.remove(&key);
            }
            Some(sub) => drop_sub(target.get_mut(&key), sub),
        }
    }
}

fn keep_subs(value: &mut Value, subs: &[&str]) {
    let keep = |m: &mut Map<String, Value>| m.retain(|k, _| subs.iter().any(|s| same(s, k)));
    match value {
        Value::Object(m) => keep(m),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(keep),
        _ => {}
    }
}

fn drop_sub(value: Option<&mut Value>, sub: &str) {
    let drop = |m: &mut Map<String, Value>| m.retain(|k, _| !same(k, sub));
    match value {
        Some(Value::Object(m)) => drop(m),
        Some(Value::Array(items)) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(drop),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::scim::resource::{UserRecord, user_doc, user_json};

    #[test]
    fn projection_keeps_what_is_asked_and_what_is_always_returned() {
        let record = UserRecord {
            id: "u-1".into(),
            doc: user_doc(&json!({"userName": "bjensen", "emails": [{"value": "b@x", "type": "work"}], "name": {"givenName": "B", "familyName": "J"}, schema::ENTERPRISE: {"department": "D", "division": "V"}})).unwrap(),
            groups: vec![],
            created_at: 0,
            updated_at: 86_400,
            version: 3,
        };
        let full = user_json(&record, "https://a/scim/v2");
        assert_eq!(full["meta"]["version"], "W/\"3\"");
        assert_eq!(full["meta"]["lastModified"], "1970-01-02T00:00:00Z");
        let mut v = full.clone();
        let attrs = paths(Resource::User, "userName,emails.value,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department").unwrap();
        project(&mut v, Resource::User, &attrs, &[]);
        assert_eq!(v["userName"], "bjensen");
        assert_eq!(v["id"], "u-1");
        assert_eq!(v["emails"], json!([{"value": "b@x"}]));
        assert_eq!(v[schema::ENTERPRISE], json!({"department": "D"}));
        assert!(v.get("name").is_none() && v.get("meta").is_none());
        let mut v = full;
        let excluded = paths(Resource::User, "name,emails.type,id").unwrap();
        project(&mut v, Resource::User, &[], &excluded);
        assert!(v.get("name").is_none());
        assert_eq!(v["emails"], json!([{"value": "b@x"}]));
        assert_eq!(v["id"], "u-1", "id is always returned");
        assert!(paths(Resource::User, "nosuch").is_err());
    }
}
