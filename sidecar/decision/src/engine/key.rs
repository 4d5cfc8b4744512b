//! The decision cache key: everything a decision depends on (the
//! generation, the request, the principal slice the policies can reach,
//! the context attributes they read), length-prefixed so no two requests share one.

use super::*;

/// The entities a check evaluates against. `None` means the stored set as
/// is (neither the directory nor the claims add to the principal); `Some`
/// is a small slice: the principal as the store, the directory and the
/// claims describe it, everything above it, and every stored entity the
/// evaluation can reach (resource, action, attribute references, entity
/// literals of the policies). Building a slice costs a few entity clones;
/// re-closing the whole store per request would cost O(store).
pub(super) fn principal_slice(
    bundle: &Bundle,
    directory: &Directory,
    literal_refs: &[EntityUid],
    principal: &EntityUid,
    claim_parents: &[EntityUid],
    action: &EntityUid,
    resource: &EntityUid,
) -> Result<Option<Entities>, String> {
    let store = &bundle.entities;
    let Some(mut slice) = crate::directory::principal_entities(
        store,
        directory,
        bundle.mapping.directory_types(),
        &bundle.attr_kinds,
        principal,
        claim_parents,
    ) else {
        return Ok(None);
    };
    let mut included: HashSet<EntityUid> = slice.iter().map(Entity::uid).collect();
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
        if !included.contains(uid)
            && let Some(e) = store.get(uid)
        {
            included.insert(uid.clone());
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
