//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON: `add`,
//! `replace` and `remove`, with and without `path`, value filters and
//! sub-attributes. The result is validated like a PUT body by the caller.
//!
//! What provisioning clients send beyond the RFC is accepted where it is
//! unambiguous: operation names in any case (Microsoft Entra ID sends
//! `Replace`), path-less values keyed by a path (`{"name.givenName": …}`,
//! `{"urn:…:User:department": …}`), a `remove` of `members` with the
//! values to remove, and an `add`/`replace` of `emails[type eq
//! "work"].value` when no such email exists yet (it is created).

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{self, Filter, Op};
use super::schema::{self, Attribute, Kind, Mutability, Resource};

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Replace,
    Remove,
}

/// Where an operation applies.
struct Target {
    extension: Option<&'static str>,
    attr: &'static Attribute,
    filter: Option<Filter>,
    sub: Option<&'static Attribute>,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn resolve(resource: Resource, text: &str) -> Result<Target, ScimError> {
    let path = filter::parse_path(text).map_err(|e| ScimError::invalid_path(e.0))?;
    let r =
        schema::resolve(resource, path.attr.uri.as_deref(), &path.attr.name).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "`{text}` names no attribute of {}",
                resource.name()
            ))
        })?;
    let sub_name = path.sub.as_deref().or(path.attr.sub.as_deref());
    let sub = match sub_name {
        Some(s) => Some(r.attr.sub_attr(s).ok_or_else(|| {
            ScimError::invalid_path(format!("`{}.{s}` is not an attribute", r.attr.name))
        })?),
        None => None,
    };
    if path.filter.is_some() && !r.attr.multi {
        return Err(ScimError::invalid_path(format!(
            "`{}` is not multi-valued: it takes no filter",
            r.attr.name
        )));
    }
    Ok(Target {
        extension: r.extension,
        attr: r.attr,
        filter: path.filter,
        sub,
    })
}

/// Whether an element of a multi-valued attribute matches a value filter.
fn matches(attr: &Attribute, element: &Value, f: &Filter) -> Result<bool, ScimError> {
    Ok(match f {
        Filter::And(a, b) => matches(attr, element, a)? && matches(attr, element, b)?,
        Filter::Or(a, b) => matches(attr, element, a)? || matches(attr, element, b)?,
        Filter::Not(x) => !matches(attr, element, x)?,
        Filter::Has { .. } => return Err(ScimError::invalid_filter("value filters do not nest")),
        Filter::Present(p) | Filter::Compare { path: p, .. } => {
            let sub = attr.sub_attr(&p.name).ok_or_else(|| {
                ScimError::invalid_filter(format!("`{}.{}` is not an attribute", attr.name, p.name))
            })?;
            let found = element
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| same(k, sub.name)).map(|(_, v)| v));
            let Filter::Compare { op, value, .. } = f else {
                return Ok(found.is_some_and(|v| !v.is_null() && v != ""));
            };
            compare(sub, found.unwrap_or(&Value::Null), *op, value)?
        }
    })
}

fn compare(sub: &Attribute, have: &Value, op: Op, want: &Value) -> Result<bool, ScimError> {
    if let (Value::Bool(h), w) = (have, want) {
        let w = match w {
            Value::Bool(b) => *b,
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            _ => return Ok(false),
        };
        return match op {
            Op::Eq => Ok(*h == w),
            Op::Ne => Ok(*h != w),
            _ => Err(ScimError::invalid_filter(
                "booleans compare only with eq and ne",
            )),
        };
    }
    let (Some(h), Some(w)) = (have.as_str(), want.as_str()) else {
        return Ok(match op {
            Op::Ne => have != want,
            Op::Eq => have == want,
            _ => false,
        });
    };
    let (h, w) = if sub.case_exact {
        (h.to_owned(), w.to_owned())
    } else {
        (h.to_lowercase(), w.to_lowercase())
    };
    Ok(match op {
        Op::Eq => h == w,
        Op::Ne => h != w,
        Op::Co => h.contains(&w),
        Op::Sw => h.starts_with(&w),
        Op::Ew => h.ends_with(&w),
        Op::Gt => h > w,
        Op::Ge => h >= w,
        Op::Lt => h < w,
        Op::Le => h <= w,
    })
}

/// The sub-attribute values a simple filter (`eq`s joined by `and`)
/// fixes: what a new element must carry to be the one the path named.
fn implied(attr: &Attribute, f: &Filter, into: &mut Map<String, Value>) -> bool {
    match f {
        Filter::And(a, b) => implied(attr, a, into) && implied(attr, b, into),
        Filter::Compare {
            path,
            op: Op::Eq,
            value,
        } => match attr.sub_attr(&path.name) {
            Some(sub) => {
                into.insert(sub.name.to_owned(), value.clone());
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn key_of(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| same(k, name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

/// Two values of a multi-valued attribute are the same value when their
/// `value`s are (members, emails), else when they are equal.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply(
    doc: &mut Map<String, Value>,
    verb: Verb,
    t: &Target,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if t.attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "`{}` is read-only",
            t.attr.name
        )));
    }
    let Some(ext) = t.extension else {
        return apply_in(doc, verb, t, value);
    };
    // An extension's attributes live in its object, which goes when empty.
    let key = key_of(doc, ext);
    let mut inner = match doc.remove(&key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let done = apply_in(&mut inner, verb, t, value);
    if !inner.is_empty() {
        doc.insert(key, Value::Object(inner));
    }
    done
}

fn apply_in(
    holder: &mut Map<String, Value>,
    verb: Verb,
    t: &Target,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let key = key_of(holder, t.attr.name);
    let needs = |v: Option<&Value>| -> Result<Value, ScimError> {
        v.cloned()
            .ok_or_else(|| ScimError::invalid_value(format!("`{}` needs a `value`", t.attr.name)))
    };
    if t.attr.multi {
        let mut items = holder.get(&key).map(as_list).unwrap_or_default();
        match (&t.filter, t.sub) {
            (None, None) => match verb {
                Verb::Add => {
                    for v in as_list(&needs(value)?) {
                        if !items.iter().any(|i| same_value(i, &v)) {
                            items.push(v);
                        }
                    }
                }
                Verb::Replace => items = as_list(&needs(value)?),
                Verb::Remove => match value {
                    // Entra ID: the values to remove, under the plain path.
                    Some(v) => {
                        let gone = as_list(v);
                        items.retain(|i| !gone.iter().any(|g| same_value(i, g)));
                    }
                    None => items.clear(),
                },
            },
            (None, Some(sub)) => match verb {
                Verb::Remove => {
                    for i in items.iter_mut().filter_map(Value::as_object_mut) {
                        let k = key_of(i, sub.name);
                        i.remove(&k);
                    }
                }
                _ => {
                    return Err(ScimError::invalid_path(format!(
                        "`{}.{}`: name which values with a filter",
                        t.attr.name, sub.name
                    )));
                }
            },
            (Some(f), sub) => {
                let mut hit = false;
                let mut kept = Vec::with_capacity(items.len());
                for mut item in items {
                    if !matches(t.attr, &item, f)? {
                        kept.push(item);
                        continue;
                    }
                    hit = true;
                    match (verb, sub) {
                        (Verb::Remove, None) => {}
                        (Verb::Remove, Some(s)) => {
                            if let Some(m) = item.as_object_mut() {
                                let k = key_of(m, s.name);
                                m.remove(&k);
                            }
                            kept.push(item);
                        }
                        (_, Some(s)) => {
                            if let Some(m) = item.as_object_mut() {
                                let k = key_of(m, s.name);
                                m.insert(k, needs(value)?);
                            }
                            kept.push(item);
                        }
                        (Verb::Add, None) => {
                            if let (Some(m), Some(Value::Object(v))) = (item.as_object_mut(), value)
                            {
                                m.extend(v.clone());
                            }
                            kept.push(item);
                        }
                        (Verb::Replace, None) => kept.push(needs(value)?),
                    }
                }
                if !hit {
                    let mut fresh = Map::new();
                    match (verb, sub) {
                        (Verb::Remove, _) => {}
                        (_, Some(s)) if implied(t.attr, f, &mut fresh) => {
                            fresh.insert(s.name.to_owned(), needs(value)?);
                            kept.push(Value::Object(fresh));
                        }
                        _ => {
                            return Err(ScimError::no_target(format!(
                                "no value of `{}` matches the filter",
                                t.attr.name
                            )));
                        }
                    }
                }
                items = kept;
            }
        }
        if items.is_empty() {
            holder.remove(&key);
        } else {
            holder.insert(key, Value::Array(items));
        }
        return Ok(());
    }
    match (verb, t.sub) {
        (Verb::Remove, None) => {
            holder.remove(&key);
        }
        (Verb::Remove, Some(s)) => {
            if let Some(Value::Object(m)) = holder.get_mut(&key) {
                let k = key_of(m, s.name);
                m.remove(&k);
            }
        }
        (_, Some(s)) => {
            let entry = holder.entry(key).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            if let Value::Object(m) = entry {
                let k = key_of(m, s.name);
                m.insert(k, needs(value)?);
            }
        }
        (_, None) if t.attr.kind == Kind::Complex => {
            let given = match needs(value)? {
                Value::Object(given) => given,
                // Entra ID sends the manager as its id alone.
                Value::String(id) if t.attr.sub_attr("value").is_some() => {
                    Map::from_iter([("value".to_owned(), Value::String(id))])
                }
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "`{}` takes an object",
                        t.attr.name
                    )));
                }
            };
            let entry = holder.entry(key).or_insert_with(|| json!({}));
            match entry {
                // Sub-attributes not given stay (§3.5.2.1, §3.5.2.3).
                Value::Object(m) => {
                    for (k, v) in given {
                        let k2 = key_of(m, &k);
                        m.insert(k2, v);
                    }
                }
                other => *other = Value::Object(given),
            }
        }
        (_, None) => {
            holder.insert(key, needs(value)?);
        }
    }
    Ok(())
}

/// Applies a PatchOp request body to `doc` (a resource as returned).
pub fn apply_patch(resource: Resource, doc: &mut Value, body: &Value) -> Result<(), ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    let schemas = body
        .iter()
        .find(|(k, _)| same(k, "schemas"))
        .map(|(_, v)| v);
    if !schemas.is_some_and(|s| {
        as_list(s)
            .iter()
            .any(|x| x.as_str().is_some_and(|x| same(x, PATCH_SCHEMA)))
    }) {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body names the schema `{PATCH_SCHEMA}`"
        )));
    }
    let ops = body
        .iter()
        .find(|(k, _)| same(k, "Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs `Operations`, a list"))?;
    let Value::Object(map) = doc else {
        return Err(ScimError::internal("the resource is not an object"));
    };
    for (n, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.as_object()
                .and_then(|o| o.iter().find(|(k, _)| same(k, name)).map(|(_, v)| v))
        };
        let verb = match field("op").and_then(Value::as_str) {
            Some(v) if same(v, "add") => Verb::Add,
            Some(v) if same(v, "replace") => Verb::Replace,
            Some(v) if same(v, "remove") => Verb::Remove,
            Some(v) => {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {n}: `{v}` is not add, replace or remove"
                )));
            }
            None => {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {n} has no `op`"
                )));
            }
        };
        let value = field("value").filter(|v| !v.is_null());
        let path = field("path").and_then(Value::as_str).map(str::trim);
        // A path that is an extension's URN names all its attributes.
        if let Some((ext, _)) =
            path.and_then(|p| resource.extensions().iter().find(|(id, _)| same(id, p)))
        {
            if verb == Verb::Remove {
                let key = key_of(map, ext);
                map.remove(&key);
                continue;
            }
            let Some(Value::Object(values)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "operation {n}: `{ext}` takes an object of its attributes"
                )));
            };
            for (k, v) in values.iter().filter(|(k, _)| !same(k, "schemas")) {
                apply(
                    map,
                    verb,
                    &resolve(resource, &format!("{ext}:{k}"))?,
                    Some(v),
                )?;
            }
            continue;
        }
        match path.filter(|p| !p.is_empty()) {
            Some(path) => apply(map, verb, &resolve(resource, path)?, value)?,
            None if verb == Verb::Remove => {
                return Err(ScimError::no_target(format!(
                    "operation {n}: `remove` needs a `path`"
                )));
            }
            None => {
                let Some(Value::Object(values)) = value else {
                    return Err(ScimError::invalid_value(format!(
                        "operation {n}: without a `path`, the value is an object of attributes"
                    )));
                };
                for (k, v) in values {
                    if ["schemas", "id", "meta"].iter().any(|x| same(x, k)) {
                        continue;
                    }
                    // An extension's object: each of its attributes.
                    if let (Some((ext, _)), Value::Object(inner)) =
                        (resource.extensions().iter().find(|(id, _)| same(id, k)), v)
                    {
                        for (ik, iv) in inner.iter().filter(|(k, _)| !same(k, "schemas")) {
                            apply(
                                map,
                                verb,
                                &resolve(resource, &format!("{ext}:{ik}"))?,
                                Some(iv),
                            )?;
                        }
                        continue;
                    }
                    let t = resolve(resource, k)?;
                    if t.attr.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    apply(map, verb, &t, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
