//! The change feed's outbox: each change to users and groups appends what
//! its followers need (the entity as it now is; a revocation) inside the
//! same transaction, so a change is in the feed exactly when it is in the
//! database. On PostgreSQL appenders take one advisory lock, so sequence
//! numbers commit in order and a follower reading `seq > cursor` never
//! skips one that commits late; SQLite has one writer at a time anyway.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sqlx::types::Json;

use super::*;

/// The advisory lock key of the feed's appenders ("feed" in ASCII).
const FEED_LOCK: i64 = 0x6665_6564;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub seq: i64,
    pub at: i64,
    /// `entity` or `revocation`.
    pub kind: String,
    pub body: Value,
}

/// The user attributes a policy may read, by their SCIM names: what the
/// feed carries for each user (besides `active` and the groups).
pub const USER_FACTS: &[(&str, &[&str])] = &[
    ("title", &["title"]),
    ("userType", &["userType"]),
    ("locale", &["locale"]),
    ("employeeNumber", &[scim_ext(), "employeeNumber"]),
    ("costCenter", &[scim_ext(), "costCenter"]),
    ("organization", &[scim_ext(), "organization"]),
    ("division", &[scim_ext(), "division"]),
    ("department", &[scim_ext(), "department"]),
];

const fn scim_ext() -> &'static str {
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
}

/// What a transaction that changes users or groups does for the feed.
pub(super) trait FeedTx {
    /// Orders appenders (a no-op where writes are serial).
    async fn lock_feed(&mut self) -> Result<(), sqlx::Error>;
    /// `until`: when a revocation stops mattering (none: kept for the
    /// retention period, like entity changes).
    async fn append(
        &mut self,
        at: i64,
        kind: &str,
        body: &Value,
        until: Option<i64>,
    ) -> Result<(), sqlx::Error>;
    /// The user `id` as it now is: its entity, or its deletion.
    async fn emit_user(&mut self, at: i64, id: &str) -> Result<(), sqlx::Error>;
    /// The group `id` as it now is (its parents), by name.
    async fn emit_group(&mut self, at: i64, id: &str) -> Result<(), sqlx::Error>;

    /// User `id` may (`active`) or may not sign in from `at` on. Made
    /// active again, tokens issued before `at` stay refused for as long as
    /// any access token can live.
    async fn user_access(&mut self, at: i64, id: &str, active: bool) -> Result<(), sqlx::Error> {
        if active {
            let until = at + crate::model::MAX_ACCESS_SECONDS;
            let body = json!({"revocation": "user", "sub": id, "revoked": false,
                              "not_before": at, "exp": until});
            self.append(at, "revocation", &body, Some(until)).await
        } else {
            self.append(at, "revocation", &user_revoked(id), None).await
        }
    }
}

/// What the feed says of a user, as the `users` table holds it (the
/// queries name these columns).
#[derive(sqlx::FromRow)]
pub(super) struct UserFacts {
    id: String,
    username: String,
    display_name: Option<String>,
    email: Option<String>,
    /// JSON list.
    roles: String,
    disabled: bool,
    profile: Json<Value>,
}

impl UserFacts {
    /// The entity body, with the names of the groups the user is in.
    fn entity(&self, groups: Vec<String>) -> Value {
        let mut attrs = Map::new();
        attrs.insert("userName".into(), json!(self.username));
        if let Some(d) = &self.display_name {
            attrs.insert("displayName".into(), json!(d));
        }
        if let Some(e) = &self.email {
            attrs.insert("email".into(), json!(e));
        }
        for (name, path) in USER_FACTS {
            let mut v = &self.profile.0;
            for key in *path {
                v = &v[*key];
            }
            if let Some(s) = v.as_str() {
                attrs.insert((*name).to_owned(), json!(s));
            }
        }
        let roles: Vec<String> = serde_json::from_str(&self.roles).unwrap_or_default();
        json!({
            "entity": "user",
            "id": self.id,
            "active": !self.disabled,
            "attrs": attrs,
            "groups": groups,
            "roles": roles,
        })
    }
}

macro_rules! feed_tx {
    ($db:ty, $lock:expr) => {
        impl FeedTx for sqlx::Transaction<'_, $db> {
            async fn lock_feed(&mut self) -> Result<(), sqlx::Error> {
                if let Some(sql) = $lock {
                    sqlx::query(sql).bind(FEED_LOCK).execute(&mut **self).await?;
                }
                Ok(())
            }

            async fn append(
                &mut self,
                at: i64,
                kind: &str,
                body: &Value,
                until: Option<i64>,
            ) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO changes (at, kind, body, until) VALUES ($1, $2, $3, $4)")
                    .bind(at)
                    .bind(kind)
                    .bind(body.to_string())
                    .bind(until)
                    .execute(&mut **self)
                    .await?;
                Ok(())
            }

            async fn emit_user(&mut self, at: i64, id: &str) -> Result<(), sqlx::Error> {
                let row: Option<UserFacts> = sqlx::query_as(
                    "SELECT id, username, display_name, email, roles, disabled, profile \
                     FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut **self)
                .await?;
                let body = match row {
                    None => json!({"entity": "user", "id": id, "deleted": true}),
                    Some(user) => {
                        let groups: Vec<(String,)> = sqlx::query_as(
                            "SELECT g.name FROM groups g JOIN group_members m ON m.group_id = g.id \
                             WHERE m.user_id = $1 ORDER BY g.name",
                        )
                        .bind(id)
                        .fetch_all(&mut **self)
                        .await?;
                        user.entity(groups.into_iter().map(|(g,)| g).collect())
                    }
                };
                self.append(at, "entity", &body, None).await
            }

            async fn emit_group(&mut self, at: i64, id: &str) -> Result<(), sqlx::Error> {
                let name: Option<(String,)> = sqlx::query_as("SELECT name FROM groups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **self)
                    .await?;
                let Some((name,)) = name else { return Ok(()) };
                let parents: Vec<(String,)> = sqlx::query_as(
                    "SELECT g.name FROM groups g JOIN group_children c ON c.parent_id = g.id \
                     WHERE c.child_id = $1 ORDER BY g.name",
                )
                .bind(id)
                .fetch_all(&mut **self)
                .await?;
                let body = json!({
                    "entity": "group",
                    "id": name,
                    "groups": parents.into_iter().map(|(p,)| p).collect::<Vec<_>>(),
                });
                self.append(at, "entity", &body, None).await
            }
        }
    };
}

feed_tx!(sqlx::Postgres, Some("SELECT pg_advisory_xact_lock($1)"));
feed_tx!(sqlx::Sqlite, None::<&str>);

/// A group's deletion (by name: that is the entity's id).
pub(super) fn group_deleted(name: &str) -> Value {
    json!({"entity": "group", "id": name, "deleted": true})
}

/// A user who may not sign in: their tokens are refused.
fn user_revoked(id: &str) -> Value {
    json!({"revocation": "user", "sub": id, "revoked": true})
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    at: i64,
    kind: String,
    body: String,
}

impl Store {
    /// Changes after `cursor` up to `up_to` (the newest when asked), oldest
    /// first, at most `limit`; `kinds` empty means every kind.
    #[instrument(name = "store.changes_after", skip_all)]
    pub async fn changes_after(
        &self,
        cursor: i64,
        up_to: i64,
        kinds: &[&str],
        limit: i64,
    ) -> Result<Vec<Change>, StoreError> {
        let all = kinds.is_empty();
        let entity = all || kinds.contains(&"entity");
        let revocation = all || kinds.contains(&"revocation");
        let rows: Vec<ChangeRow> = on!(self, |p| sqlx::query_as(
            "SELECT seq, at, kind, body FROM changes WHERE seq > $1 AND seq <= $2 \
             AND ((kind = 'entity' AND $3) OR (kind = 'revocation' AND $4)) ORDER BY seq LIMIT $5"
        )
        .bind(cursor)
        .bind(up_to)
        .bind(entity)
        .bind(revocation)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(Change {
                    body: serde_json::from_str(&r.body)
                        .map_err(|_| StoreError::Corrupt(format!("change {}", r.seq)))?,
                    seq: r.seq,
                    at: r.at,
                    kind: r.kind,
                })
            })
            .collect()
    }

    /// The newest sequence number (0 before any change) and the horizon:
    /// the highest one pruned (a follower behind it needs a snapshot).
    #[instrument(name = "store.feed_position", skip_all)]
    pub async fn feed_position(&self) -> Result<(i64, i64), StoreError> {
        let (newest, horizon): (Option<i64>, i64) = on!(self, |p| sqlx::query_as(
            "SELECT (SELECT MAX(seq) FROM changes), horizon FROM feed_horizon WHERE id = 1"
        )
        .fetch_one(p)
        .await)?;
        Ok((newest.unwrap_or(0).max(horizon), horizon))
    }

    /// Records revocations that are not a database change (a session
    /// ended, a token revoked), each with when it stops mattering: their
    /// own transaction, in feed order.
    #[instrument(name = "store.append_revocations", skip_all)]
    pub async fn append_revocations(
        &self,
        at: i64,
        revocations: &[(Value, i64)],
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            for (body, until) in revocations {
                tx.append(at, "revocation", body, Some(*until)).await?;
            }
            tx.commit().await
        }
        .await)?;
        self.changed();
        Ok(())
    }

    /// Forgets what was recorded before `before` (a follower that far
    /// behind starts from a snapshot), except revocations that still
    /// matter at `now`; moves the horizon past what it removed.
    #[instrument(name = "store.prune_changes", skip_all)]
    pub async fn prune_changes(&self, before: i64, now: i64) -> Result<u64, StoreError> {
        Ok(on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let (highest,): (Option<i64>,) = sqlx::query_as(
                "SELECT MAX(seq) FROM changes WHERE at < $1 AND (until IS NULL OR until < $2)",
            )
            .bind(before)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let Some(highest) = highest else {
                return Ok(0);
            };
            let gone = sqlx::query(
                "DELETE FROM changes WHERE seq <= $1 AND (until IS NULL OR until < $2)",
            )
            .bind(highest)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE feed_horizon SET horizon = $1 WHERE id = 1 AND horizon < $1")
                .bind(highest)
                .execute(&mut *tx)
                .await?;
            tx.commit().await.map(|()| gone)
        }
        .await)?)
    }

    /// Users as entities, `limit` at a time after id `after` (a snapshot).
    #[instrument(name = "store.user_entities", skip_all)]
    pub async fn user_entities(&self, after: &str, limit: i64) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<UserFacts> = on!(self, |p| sqlx::query_as(
            "SELECT id, username, display_name, email, roles, disabled, profile \
             FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        )
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let memberships: Vec<(String, String)> = on!(self, |p| sqlx::query_as(
            "SELECT m.user_id, g.name FROM group_members m JOIN groups g ON g.id = m.group_id \
             WHERE m.user_id >= $1 AND m.user_id <= $2 ORDER BY m.user_id, g.name"
        )
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(p)
        .await)?;
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for (user, group) in memberships {
            groups.entry(user).or_default().push(group);
        }
        Ok(rows
            .iter()
            .map(|u| u.entity(groups.remove(&u.id).unwrap_or_default()))
            .collect())
    }

    /// Every group as an entity (by name, with its parent groups).
    #[instrument(name = "store.group_entities", skip_all)]
    pub async fn group_entities(&self) -> Result<Vec<Value>, StoreError> {
        let groups: Vec<(String, String)> = on!(self, |p| sqlx::query_as(
            "SELECT id, name FROM groups ORDER BY name"
        )
        .fetch_all(p)
        .await)?;
        let edges: Vec<(String, String)> = on!(self, |p| {
            sqlx::query_as(
            "SELECT c.child_id, g.name FROM group_children c JOIN groups g ON g.id = c.parent_id ORDER BY g.name"
        )
        .fetch_all(p)
        .await
        })?;
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for (child, parent) in edges {
            parents.entry(child).or_default().push(parent);
        }
        Ok(groups
            .into_iter()
            .map(|(id, name)| {
                let above = parents.remove(&id).unwrap_or_default();
                json!({"entity": "group", "id": name, "groups": above})
            })
            .collect())
    }

    /// The revocations that matter at `now`: inactive users, and tokens
    /// and sessions revoked before they expire.
    #[instrument(name = "store.live_revocations", skip_all)]
    pub async fn live_revocations(&self, now: i64) -> Result<Vec<Value>, StoreError> {
        let disabled: Vec<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT id FROM users WHERE disabled"
        )
        .fetch_all(p)
        .await)?;
        let live: Vec<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT body FROM changes WHERE kind = 'revocation' AND until >= $1 ORDER BY seq"
        )
        .bind(now)
        .fetch_all(p)
        .await)?;
        // The live ones first: a user made active again (whose older
        // tokens stay refused) and disabled since is disabled.
        let mut out = Vec::with_capacity(live.len() + disabled.len());
        for (body,) in live {
            out.push(
                serde_json::from_str(&body)
                    .map_err(|_| StoreError::Corrupt("a revocation".into()))?,
            );
        }
        out.extend(disabled.iter().map(|(id,)| user_revoked(id)));
        Ok(out)
    }
}
