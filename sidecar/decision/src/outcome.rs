//! What a decision is: a leaf the engine, its cache and its log share.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{Decision as CedarDecision, Response};
use serde::Serialize;

/// What a forbid policy annotated `@step_up("<acr values>")` (and
/// optionally `@max_age("<seconds>")`) asks of a denied request: a
/// stronger or fresher sign-in (RFC 9470), not a plain refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepUp {
    /// Space-separated `acr` values, any of which would do.
    pub acr_values: String,
    pub max_age: Option<u64>,
}

/// The result of one decision, shared between the cache and callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub allowed: bool,
    /// Ids of the policies that determined the decision.
    pub policies: Vec<String>,
    /// Evaluation errors; a decision with errors is never an allow by error.
    pub errors: Vec<String>,
    /// Why the request was denied before Cedar ran (`no route`, …).
    pub reason: Option<String>,
    /// On a deny, the sign-in a determining policy asks for instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUp>,
}

impl Outcome {
    pub(crate) fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            policies: Vec::new(),
            errors: Vec::new(),
            reason: Some(reason.into()),
            step_up: None,
        }
    }

    /// Cedar's answer. A deny asks for a step-up only when every policy
    /// that determined it is a step-up policy (a stronger sign-in would
    /// lift it); the first, in policy-id order, names the `acr`, and the
    /// shortest `max_age` of them all applies.
    pub(crate) fn from_cedar(response: &Response, step_ups: &HashMap<String, StepUp>) -> Self {
        let allowed = response.decision() == CedarDecision::Allow;
        // As `PolicyId`'s `Display` writes them, without its formatting.
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| {
                let mut text = String::new();
                crate::cedar_json::push_escaped(&mut text, id.as_ref());
                text
            })
            .collect();
        policies.sort();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        let lifted = !allowed
            && errors.is_empty()
            && !policies.is_empty()
            && policies.iter().all(|p| step_ups.contains_key(p));
        let step_up = lifted
            .then(|| {
                let mut first = policies.first().and_then(|p| step_ups.get(p)).cloned()?;
                first.max_age = policies
                    .iter()
                    .filter_map(|p| step_ups.get(p)?.max_age)
                    .min();
                Some(first)
            })
            .flatten();
        Self {
            allowed,
            policies,
            errors,
            reason: None,
            step_up,
        }
    }
}

/// A decision and where it came from.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Arc<Outcome>,
    pub cached: bool,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.outcome.allowed
    }
}
