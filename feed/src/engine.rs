//! A decision engine as the feed's [`Sink`]: each batch becomes a new
//! directory, swapped in with a new generation (so no cached decision
//! answers from before it).

use std::sync::Arc;

use decision::Engine;
use decision::directory::Directory;
use serde_json::Value;

use crate::follower::Sink;

pub struct EngineSink {
    pub engine: Arc<Engine>,
    /// The issuer's `subject_prefix`, applied to the directory's ids.
    pub prefix: Option<String>,
}

impl Sink for EngineSink {
    fn reset(&self, entities: Vec<Value>, cursor: i64) {
        let dir = Directory::from_snapshot(self.prefix.as_deref(), &entities);
        tracing::info!(
            users = dir.users(),
            groups = dir.groups(),
            "directory loaded from the feed"
        );
        self.engine.set_directory(dir);
        self.engine.set_feed_cursor(cursor);
    }

    fn apply(&self, changes: Vec<Value>, cursor: i64) {
        if !changes.is_empty() {
            // Only the follower writes the directory: read, change, swap.
            let next = self.engine.directory().with_changes(&changes);
            self.engine.set_directory(next);
        }
        self.engine.set_feed_cursor(cursor);
    }
}
