//! What a decision is: a leaf the engine, its cache and its log share.

use std::sync::Arc;

use cedar_policy::{Decision as CedarDecision, Response};
use serde::Serialize;

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
}

impl Outcome {
    pub(crate) fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            policies: Vec::new(),
            errors: Vec::new(),
            reason: Some(reason.into()),
        }
    }

    pub(crate) fn from_cedar(response: &Response) -> Self {
        Self {
            allowed: response.decision() == CedarDecision::Allow,
            policies: response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect(),
            errors: response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect(),
            reason: None,
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
