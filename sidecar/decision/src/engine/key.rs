//! The decision cache key: everything a decision depends on (the
//! generation, the request, the principal slice the policies can reach,
//! the context attributes they read), length-prefixed so no two requests share one.

use super::*;

/// The entities a check evaluates against. `None` means the stored set as is
/// (the principal is stored, or unknown, and claims add no parents); `Some`
/// is a small slice: the principal with its claim parents, and every stored
/// entity the evaluation can reach (resource, action, attribute references,
/// entity literals of the policies). Building a slice costs a few entity
/// clones; re-closing the whole store per request would cost O(store).
pub(super) fn principal_slice(
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
pub(super) fn check_key(
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
        if uses.reads("auth_time") {
            let _ = write!(k, "u={:?};", c.auth_time);
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
pub(super) fn push_strs(k: &mut String, tag: char, values: &[String]) {
    k.push(tag);
    for v in values {
        let _ = write!(k, "{}:{v}", v.len());
    }
    k.push(';');
}

/// An entity uid in a cache key: unambiguous (the id is length-prefixed)
/// and far cheaper than Cedar's escaping `Display`.
pub(super) fn push_uid(k: &mut String, uid: &EntityUid) {
    let t = uid.type_name();
    for part in t.namespace_components() {
        k.push_str(part);
        k.push_str("::");
    }
    k.push_str(t.basename());
    let id = uid.id().unescaped();
    let _ = write!(k, "#{}:{id};", id.len());
}
