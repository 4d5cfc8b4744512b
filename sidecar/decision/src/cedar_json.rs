//! Cedar's JSON and text forms, the quick way where the input leaves no
//! room for interpretation: request contexts and entity uids read, uids and
//! ids written as Cedar writes them.
//!
//! Cedar's own schema-directed parser tries serde's untagged variants one by
//! one and formats an error message for every miss; on this workload that is
//! about half the cost of an uncached `is_authorized`. Plain strings, longs,
//! booleans, sets of them and explicit `__entity` references mean the same
//! thing whatever the schema says, so they are built directly. Anything else
//! (records, implicit entity or extension forms, floats, nulls) returns
//! `None` and goes to Cedar's parser. Either way the request is then
//! validated against the schema, so this changes speed, never acceptance.
//!
//! A uid is built directly in its two plain forms (`{"type", "id"}` and
//! `{"__entity": {"type", "id"}}`) when its type is one the schema
//! declares; Cedar's own reading of it (an untagged enum, a regular
//! expression for the type name) cost more than a third of the uncached
//! decision's own work.

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};

/// The uid, when `v` has one of the plain forms and `known` names its
/// type; otherwise `None`, for Cedar's parser to accept or refuse.
pub fn uid<'a>(v: &Value, known: impl Fn(&str) -> Option<&'a EntityTypeName>) -> Option<EntityUid> {
    let mut fields = v.as_object()?;
    if fields.len() == 1 {
        fields = fields.get("__entity")?.as_object()?;
    }
    let (Some(Value::String(ty)), Some(Value::String(id)), 2) =
        (fields.get("type"), fields.get("id"), fields.len())
    else {
        return None;
    };
    Some(EntityUid::from_type_name_and_id(
        known(ty)?.clone(),
        EntityId::new(id),
    ))
}

/// `uid` as Cedar writes it (its `Display`: `Type::"id"`), without the
/// formatting machinery, which was most of a decision-log line's cost.
pub fn uid_text(uid: &EntityUid) -> String {
    let (ty, id) = (uid.type_name(), uid.id().unescaped());
    let mut out = String::with_capacity(ty.basename().len() + id.len() + 24);
    for part in ty.namespace_components() {
        out.push_str(part);
        out.push_str("::");
    }
    out.push_str(ty.basename());
    out.push_str("::\"");
    push_escaped(&mut out, id);
    out.push('"');
    out
}

/// `text` escaped as Cedar escapes ids in its text forms
/// (`str::escape_debug`); printable ASCII other than quotes and backslash,
/// the usual id, is copied as it is.
pub fn push_escaped(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'))
    {
        out.push_str(text);
    } else {
        out.extend(text.escape_debug());
    }
}

/// The context, when every attribute has an unambiguous form.
pub fn context(attrs: &Map<String, Value>) -> Option<Context> {
    let pairs = attrs
        .iter()
        .map(|(name, v)| Some((name.clone(), value(v)?)))
        .collect::<Option<Vec<_>>>()?;
    Context::from_pairs(pairs).ok()
}

fn value(v: &Value) -> Option<RestrictedExpression> {
    match v {
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::Array(items) => items
            .iter()
            .map(value)
            .collect::<Option<Vec<_>>>()
            .map(RestrictedExpression::new_set),
        Value::Object(o) if o.len() == 1 => {
            let uid = o.get("__entity")?.as_object()?;
            let (Some(Value::String(ty)), Some(Value::String(id)), 2) =
                (uid.get("type"), uid.get("id"), uid.len())
            else {
                return None;
            };
            let ty: EntityTypeName = ty.parse().ok()?;
            Some(RestrictedExpression::new_entity_uid(
                EntityUid::from_type_name_and_id(ty, EntityId::new(id)),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    /// Whatever the quick path accepts, it reads exactly as Cedar does.
    #[test]
    fn agrees_with_cedar_where_it_applies() {
        let cases = [
            json!({}),
            json!({"a": "x", "b": 7, "c": true, "d": -9_223_372_036_854_775_808_i64}),
            json!({"s": ["x", "y", "x"], "n": [[1, 2], []], "e": []}),
            json!({"u": {"__entity": {"type": "App::User", "id": "alice \"q\""}}}),
            json!({"u": [{"__entity": {"type": "App::Group", "id": ""}}]}),
        ];
        for case in cases {
            let attrs = case.as_object().unwrap();
            let quick = context(attrs).unwrap_or_else(|| panic!("quick path for {case}"));
            let cedar = Context::from_json_value(case.clone(), None).unwrap();
            for name in attrs.keys() {
                assert_eq!(quick.get(name), cedar.get(name), "{name} in {case}");
            }
        }
    }

    /// A uid read the quick way is the one Cedar reads; written, it is
    /// what Cedar writes.
    #[test]
    fn uids_agree_with_cedar() {
        let types: Vec<EntityTypeName> = ["App::User", "Group", "A::B::C"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let known = |name: &str| types.iter().find(|t| t.to_string() == name);
        for (ty, id) in [
            ("App::User", "alice"),
            ("Group", ""),
            (
                "A::B::C",
                "o'neil \"q\" \\ tab\t new\nline é \u{301} \u{7f}",
            ),
        ] {
            for form in [
                json!({"type": ty, "id": id}),
                json!({"__entity": {"type": ty, "id": id}}),
            ] {
                let cedar = EntityUid::from_json(form.clone()).unwrap();
                assert_eq!(uid(&form, known), Some(cedar.clone()), "{form}");
                assert_eq!(uid_text(&cedar), cedar.to_string(), "{form}");
            }
            let policy = cedar_policy::PolicyId::new(id);
            let mut text = String::new();
            push_escaped(&mut text, policy.as_ref());
            assert_eq!(text, policy.to_string());
        }
        for other in [
            json!({"type": "App::Spaceship", "id": "x"}),
            json!({"type": "App::User", "id": "x", "extra": 1}),
            json!({"type": "App::User", "id": 7}),
            json!({"__entity": {"type": "App::User"}}),
            json!({"__expr": "App::User::\"x\""}),
            json!("App::User::\"x\""),
        ] {
            assert_eq!(uid(&other, known), None, "{other}");
        }
    }

    /// Forms that need the schema or that Cedar refuses are left to Cedar.
    #[test]
    fn leaves_the_rest_to_cedar() {
        for case in [
            json!({"r": {"a": 1}}),
            json!({"u": {"type": "App::User", "id": "alice"}}),
            json!({"ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}),
            json!({"ip": {"fn": "ip", "arg": "10.0.0.1"}}),
            json!({"f": 1.5}),
            json!({"big": 9_223_372_036_854_775_808_u64}),
            json!({"n": null}),
            json!({"s": ["x", null]}),
            json!({"u": {"__entity": {"type": "App::User"}}}),
            json!({"u": {"__entity": {"type": "App::User", "id": "a", "x": 1}}}),
            json!({"u": {"__entity": {"type": "not a type", "id": "a"}}}),
        ] {
            assert!(context(case.as_object().unwrap()).is_none(), "{case}");
        }
    }
}
