//! The directory the change feed keeps current: users and groups as the
//! authserver has them (SCIM, the admin API), beside the entity files.
//!
//! Precedence, where both name an entity: the directory's attributes win
//! over the file's, and parents are the union (the file may say a group is
//! in a role, the directory which groups a user is in). For a user the
//! directory knows, its groups and roles replace the token's `groups` and
//! `roles` claims: the token says what was true when it was issued, the
//! directory what is true now (removed from a group is removed at once).
//! A user the directory knows is `principal.user::"<id>"` with its
//! attributes (those the schema declares for that type, of the declared
//! type), `active`, its groups as `principal.groups::"<name>"` and its
//! roles as `principal.roles::"<name>"` parents; groups carry their parent
//! groups. A batch of changes makes a new directory, swapped in whole with
//! a new engine generation, so no cached decision outlives a change it
//! should reflect.

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, SchemaFragment,
};
use serde_json::{Map, Value};

/// A user as the feed describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub active: bool,
    pub attrs: Map<String, Value>,
    /// Names of the groups the user is directly in.
    pub groups: Vec<String>,
    /// Names of the user's roles.
    pub roles: Vec<String>,
}

/// Users and groups from the feed; immutable once shared.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, Arc<User>>,
    /// Group name → names of the groups it is in.
    groups: HashMap<String, Arc<[String]>>,
    /// Prepended to ids and names (the issuer's `subject_prefix`).
    prefix: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Directory {
    /// An empty directory whose ids get `prefix` (one issuer among several).
    pub fn new(prefix: Option<&str>) -> Self {
        Self {
            prefix: prefix.unwrap_or_default().to_owned(),
            ..Self::default()
        }
    }

    /// The directory a snapshot describes.
    pub fn from_snapshot(prefix: Option<&str>, entities: &[Value]) -> Self {
        let mut d = Self::new(prefix);
        for e in entities {
            d.apply_one(e);
        }
        d
    }

    /// This directory with `changes` applied, in order.
    pub fn with_changes(&self, changes: &[Value]) -> Self {
        let mut d = self.clone();
        for c in changes {
            d.apply_one(c);
        }
        d
    }

    fn apply_one(&mut self, e: &Value) {
        let Some(id) = e["id"].as_str() else { return };
        let id = format!("{}{id}", self.prefix);
        let deleted = e["deleted"] == true;
        match e["entity"].as_str() {
            Some("user") if deleted => {
                self.users.remove(&id);
            }
            Some("user") => {
                let user = User {
                    active: e["active"] != false,
                    attrs: e["attrs"].as_object().cloned().unwrap_or_default(),
                    groups: self.qualified(&e["groups"]),
                    roles: self.qualified(&e["roles"]),
                };
                self.users.insert(id, Arc::new(user));
            }
            Some("group") if deleted => {
                self.groups.remove(&id);
            }
            Some("group") => {
                let parents = self.qualified(&e["groups"]);
                self.groups.insert(id, parents.into());
            }
            _ => {}
        }
    }

    /// A list of names, each with the prefix.
    fn qualified(&self, names: &Value) -> Vec<String> {
        strings(names)
            .into_iter()
            .map(|n| format!("{}{n}", self.prefix))
            .collect()
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(Arc::as_ref)
    }

    pub fn group_parents(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(AsRef::as_ref)
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// The Cedar type of an attribute the schema declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    String,
    Bool,
    Long,
}

/// Declared attributes by entity type: which directory attributes an
/// entity may carry.
#[derive(Debug, Clone, Default)]
pub struct AttrKinds(HashMap<String, HashMap<String, AttrKind>>);

impl AttrKinds {
    /// Read from the schema (Cedar syntax), through its JSON form.
    pub fn from_schema(text: &str) -> Self {
        let Some(json) = SchemaFragment::from_cedarschema_str(text)
            .ok()
            .and_then(|(f, _)| f.to_json_value().ok())
        else {
            return Self::default();
        };
        let mut out = HashMap::new();
        for (namespace, ns) in json.as_object().into_iter().flatten() {
            for (name, ty) in ns["entityTypes"].as_object().into_iter().flatten() {
                let full = if namespace.is_empty() {
                    name.clone()
                } else {
                    format!("{namespace}::{name}")
                };
                let mut attrs = HashMap::new();
                for (attr, decl) in ty["shape"]["attributes"].as_object().into_iter().flatten() {
                    let t = match decl["type"].as_str() {
                        Some("EntityOrCommon") => decl["name"].as_str(),
                        other => other,
                    };
                    let kind = match t.map(|t| t.trim_start_matches("__cedar::")) {
                        Some("String") => AttrKind::String,
                        Some("Boolean" | "Bool") => AttrKind::Bool,
                        Some("Long") => AttrKind::Long,
                        _ => continue,
                    };
                    attrs.insert(attr.clone(), kind);
                }
                out.insert(full, attrs);
            }
        }
        Self(out)
    }

    fn of(&self, ty: &EntityTypeName) -> Option<&HashMap<String, AttrKind>> {
        self.0.get(&ty.to_string())
    }
}

/// The Cedar attributes of a directory user: those its type declares, of
/// the declared type, plus `active` if declared.
fn attributes(
    user: &User,
    kinds: Option<&HashMap<String, AttrKind>>,
) -> HashMap<String, RestrictedExpression> {
    let Some(kinds) = kinds else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let values = user
        .attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .chain(std::iter::once(("active", Value::Bool(user.active))));
    for (name, value) in values {
        let expr = match (kinds.get(name), &value) {
            (Some(AttrKind::String), Value::String(s)) => {
                RestrictedExpression::new_string(s.clone())
            }
            (Some(AttrKind::Bool), Value::Bool(b)) => RestrictedExpression::new_bool(*b),
            (Some(AttrKind::Long), Value::Number(n)) => match n.as_i64() {
                Some(n) => RestrictedExpression::new_long(n),
                None => continue,
            },
            _ => continue,
        };
        out.insert(name.to_owned(), expr);
    }
    out
}

/// The types directory entities become.
#[derive(Debug, Clone, Copy)]
pub struct Types<'a> {
    pub user: &'a EntityTypeName,
    pub group: Option<&'a EntityTypeName>,
    pub role: Option<&'a EntityTypeName>,
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The entities a decision about `principal` needs when the directory or
/// the claims add to what is stored: the principal (stored attributes,
/// the directory's over them; parents from the store, and from the
/// directory when it knows the user, else from the claims), and every
/// group or role above it with its parents from the store and the
/// directory. `None` when the stored set alone is right.
pub fn principal_entities(
    store: &cedar_policy::Entities,
    dir: &Directory,
    types: Types<'_>,
    kinds: &AttrKinds,
    principal: &EntityUid,
    claim_parents: &[EntityUid],
) -> Option<Vec<Entity>> {
    let is_user = principal.type_name() == types.user;
    let known = is_user
        .then(|| dir.user(principal.id().unescaped()))
        .flatten();
    let group_uid = |name: &str| types.group.map(|t| uid(t, name));
    // Everything above `u` in the store (closed transitively when the
    // store was built), read in place: cloning an entity to read its
    // parents converts all its attributes, most of a slice's cost.
    let stored_parents = |u: &EntityUid| -> Vec<EntityUid> {
        store
            .ancestors(u)
            .map(|a| a.cloned().collect())
            .unwrap_or_default()
    };
    let dir_parents = |u: &EntityUid| -> Vec<EntityUid> {
        if Some(u.type_name()) != types.group {
            return Vec::new();
        }
        dir.group_parents(u.id().unescaped())
            .into_iter()
            .flatten()
            .filter_map(|g| group_uid(g))
            .collect()
    };
    let mut first: Vec<EntityUid> = stored_parents(principal);
    match known {
        Some(user) => {
            first.extend(user.groups.iter().filter_map(|g| group_uid(g)));
            first.extend(
                user.roles
                    .iter()
                    .filter_map(|r| types.role.map(|t| uid(t, r))),
            );
        }
        None => first.extend(claim_parents.iter().cloned()),
    }
    // Everything above the principal, through either source.
    let mut above: Vec<EntityUid> = Vec::new();
    let mut seen: HashSet<EntityUid> = HashSet::new();
    let mut queue: VecDeque<EntityUid> = first.iter().cloned().collect();
    let mut touched = known.is_some() || !claim_parents.is_empty();
    while let Some(u) = queue.pop_front() {
        if !seen.insert(u.clone()) {
            continue;
        }
        let from_dir = dir_parents(&u);
        touched |= !from_dir.is_empty();
        queue.extend(stored_parents(&u));
        queue.extend(from_dir);
        above.push(u);
    }
    if !touched {
        return None;
    }
    let (attrs, _) = match store.get(principal) {
        Some(e) => {
            let (_, attrs, parents) = e.clone().into_inner();
            (attrs, parents)
        }
        None => (HashMap::new(), HashSet::new()),
    };
    let mut attrs = attrs;
    if let Some(user) = known {
        attrs.extend(attributes(user, kinds.of(types.user)));
    }
    let parents: HashSet<EntityUid> = first.into_iter().collect();
    let mut out = vec![Entity::new(principal.clone(), attrs, parents).ok()?];
    for u in above {
        let extra = dir_parents(&u);
        let entity = match store.get(&u) {
            Some(e) if extra.is_empty() => e.clone(),
            Some(e) => with_parents(e, extra)?,
            None => Entity::new_no_attrs(u, extra.into_iter().collect()),
        };
        out.push(entity);
    }
    Some(out)
}

/// A stored entity with the directory's parents added.
fn with_parents(entity: &Entity, extra: Vec<EntityUid>) -> Option<Entity> {
    let (uid, attrs, mut parents) = entity.clone().into_inner();
    parents.extend(extra);
    Entity::new(uid, attrs, parents).ok()
}

/// An entity type by name (for tests and callers outside the engine).
pub fn type_name(name: &str) -> Option<EntityTypeName> {
    EntityTypeName::from_str(name).ok()
}

#[cfg(test)]
mod tests;
