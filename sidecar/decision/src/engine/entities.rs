//! Writes to the stored entities: validated against the schema, written
//! to `entities.json` atomically, then swapped in as a new bundle.

use super::*;

impl Engine {
    /// The stored entity `type::"id"` in Cedar JSON.
    pub fn entity(&self, type_name: &str, id: &str) -> Option<serde_json::Value> {
        self.current
            .load()
            .bundle
            .stored
            .get(&(type_name.to_owned(), id.to_owned()))
            .cloned()
    }

    /// Create or replace entities (upsert). Validated against the schema and
    /// durably written before it returns; decisions see them at once.
    pub fn put_entities(&self, entities: Vec<serde_json::Value>) -> Result<(), Error> {
        self.write_entities(|stored| {
            for value in entities {
                let key = bundle::entity_key(&value).ok_or_else(|| {
                    Error::BadRequest("every entity needs a `uid` with `type` and `id`".into())
                })?;
                stored.insert(key, value);
            }
            Ok(())
        })
    }

    /// Remove an entity; `NotFound` if it is not stored.
    pub fn delete_entity(&self, type_name: &str, id: &str) -> Result<(), Error> {
        self.write_entities(|stored| {
            stored
                .remove(&(type_name.to_owned(), id.to_owned()))
                .map(|_| ())
                .ok_or_else(|| Error::NotFound(format!("entity `{type_name}::{id:?}`")))
        })
    }

    pub(super) fn write_entities(
        &self,
        change: impl FnOnce(&mut BTreeMap<EntityKey, serde_json::Value>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _guard = lock(&self.writes);
        let current = self.current.load_full();
        let mut stored = current.bundle.stored.clone();
        change(&mut stored)?;
        // Normalise each entity to Cedar's canonical JSON so the file is stable.
        let next = current.bundle.with_entities(stored)?;
        let canonical: BTreeMap<EntityKey, serde_json::Value> = next
            .stored
            .iter()
            .map(|(k, v)| {
                let uid = EntityUid::from_json(serde_json::json!({"type": k.0, "id": k.1}));
                let json = uid
                    .ok()
                    .and_then(|u| next.entities.get(&u))
                    .and_then(|e| e.to_json_value().ok())
                    .unwrap_or_else(|| v.clone());
                (k.clone(), json)
            })
            .collect();
        let next = next.with_entities(canonical)?;
        bootstrap::fs::write_atomically(
            &self.dir.join(ENTITIES_FILE),
            next.entities_file().as_bytes(),
        )
        .map_err(Error::Storage)?;
        self.swap(next);
        Ok(())
    }
}
