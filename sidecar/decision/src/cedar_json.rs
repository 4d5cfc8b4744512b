//! Cedar-JSON request contexts, converted the quick way when the JSON leaves
//! no room for interpretation.
//!
//! Cedar's own schema-directed parser tries serde's untagged variants one by
//! one and formats an error message for every miss; on this workload that is
//! about half the cost of an uncached `is_authorized`. Plain strings, longs,
//! booleans, sets of them and explicit `__entity` references mean the same
//! thing whatever the schema says, so they are built directly. Anything else
//! (records, implicit entity or extension forms, floats, nulls) returns
//! `None` and goes to Cedar's parser. Either way the request is then
//! validated against the schema, so this changes speed, never acceptance.

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};

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
