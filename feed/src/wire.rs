//! What `/feed/v1` answers, as followers read it.

use serde::Deserialize;
use serde_json::Value;

/// One change: `kind` is `entity` (the entity as it now is, or its
/// deletion) or `revocation`.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub body: Value,
}

/// `GET /feed/v1/changes`: what happened after the cursor asked for; the
/// next request asks after `cursor`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChangesPage {
    pub cursor: i64,
    pub changes: Vec<Change>,
}

/// `GET /feed/v1/snapshot`: every entity and the revocations that still
/// matter; changes follow from `cursor`.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub cursor: i64,
    #[serde(default)]
    pub entities: Vec<Value>,
    #[serde(default)]
    pub revocations: Vec<Value>,
}
