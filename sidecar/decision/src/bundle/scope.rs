//! The per-action index: for each action, only the policies that can
//! apply, the context attributes they read and the entities they reach.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, Entities, EntityUid, Policy, PolicySet, Schema};

use super::entities::{collect_entity_literals, reach_of};
use crate::mapping::ContextUse;

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
pub(super) fn index_by_action(
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use std::path::Path;

    use cedar_policy::{Authorizer, Request};

    use super::*;
    use crate::bundle::Bundle;

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
