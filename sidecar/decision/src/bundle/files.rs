//! Reading a policy directory: one schema, the policies, the route mapping
//! and the stored entities, in one pass; and the directory's content hash.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{ENTITIES_FILE, PolicySource, ROUTES_FILE};
use crate::error::LoadError;

const SCHEMA_EXT: &str = "cedarschema";
const POLICY_EXT: &str = "cedar";

/// The raw files of a policy directory, read in one pass.
pub(super) struct Files {
    pub schema: (String, String),
    pub policies: Vec<(String, String)>,
    pub routes: String,
    pub entities: Option<String>,
}

pub(super) fn read_dir(dir: &Path) -> Result<Files, LoadError> {
    let listing = std::fs::read_dir(dir).map_err(|e| {
        LoadError::one(format!(
            "{}: cannot read policy directory: {e}",
            dir.display()
        ))
    })?;
    let mut names: Vec<String> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| LoadError::one(format!("{}: {e}", dir.display())))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| LoadError::one(format!("{name}: cannot read: {e}")))
    };
    let schemas: Vec<&String> = names.iter().filter(|n| has_ext(n, SCHEMA_EXT)).collect();
    let schema = match schemas.as_slice() {
        [one] => ((*one).clone(), read(one)?),
        [] => {
            return Err(LoadError::one(format!(
                "{}: no `*.{SCHEMA_EXT}` schema file",
                dir.display()
            )));
        }
        many => {
            return Err(LoadError::one(format!(
                "{}: more than one schema file: {}",
                dir.display(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut policies = Vec::new();
    for name in names.iter().filter(|n| has_ext(n, POLICY_EXT)) {
        policies.push((name.clone(), read(name)?));
    }
    if !names.iter().any(|n| n == ROUTES_FILE) {
        return Err(LoadError::one(format!(
            "{}: no `{ROUTES_FILE}` route mapping",
            dir.display()
        )));
    }
    let routes = read(ROUTES_FILE)?;
    let entities = if names.iter().any(|n| n == ENTITIES_FILE) {
        Some(read(ENTITIES_FILE)?)
    } else {
        None
    };
    Ok(Files {
        schema,
        policies,
        routes,
        entities,
    })
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e == ext)
}

pub(super) fn version_of(
    schema: &str,
    sources: &[PolicySource],
    routes: &str,
    entities: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [schema, routes, entities] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for s in sources {
        h.update((s.id.len() as u64).to_le_bytes());
        h.update(s.id.as_bytes());
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}
