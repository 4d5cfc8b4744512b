//! SCIM groups: members are users (`group_members`) or groups
//! (`group_children`, never in a cycle). A membership change is a change
//! of the member's entity for the feed (its parents), and of the user's
//! version (its `groups`); a rename changes every member's parents.

use std::collections::BTreeSet;

use super::super::feed::group_deleted;
use super::*;
use crate::scim::resource::{GroupDoc, GroupRecord, MemberRef};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    external_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

/// What a transaction does to a group's members.
trait MembersTx {
    /// Makes `members` the members of `group`; the users and groups whose
    /// membership changed, or why a member cannot be one.
    async fn set_members(
        &mut self,
        group: &str,
        members: &[MemberRef],
    ) -> Result<Result<(BTreeSet<String>, BTreeSet<String>), StoreError>, sqlx::Error>;
    /// Bumps the users' versions and records the users and groups anew.
    async fn touch(
        &mut self,
        at: i64,
        users: &BTreeSet<String>,
        groups: &BTreeSet<String>,
    ) -> Result<(), sqlx::Error>;
    /// Every member of `group`: users and groups.
    async fn members_of(
        &mut self,
        group: &str,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), sqlx::Error>;
}

macro_rules! members_tx {
    ($db:ty) => {
        impl MembersTx for sqlx::Transaction<'_, $db> {
            async fn members_of(
                &mut self,
                group: &str,
            ) -> Result<(BTreeSet<String>, BTreeSet<String>), sqlx::Error> {
                let users: Vec<(String,)> =
                    sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1")
                        .bind(group)
                        .fetch_all(&mut **self)
                        .await?;
                let groups: Vec<(String,)> =
                    sqlx::query_as("SELECT child_id FROM group_children WHERE parent_id = $1")
                        .bind(group)
                        .fetch_all(&mut **self)
                        .await?;
                Ok((
                    users.into_iter().map(|(u,)| u).collect(),
                    groups.into_iter().map(|(g,)| g).collect(),
                ))
            }

            async fn set_members(
                &mut self,
                group: &str,
                members: &[MemberRef],
            ) -> Result<Result<(BTreeSet<String>, BTreeSet<String>), StoreError>, sqlx::Error> {
                let (had_users, had_groups) = self.members_of(group).await?;
                let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
                for m in members {
                    let is_user = m.kind != Some(Resource::Group)
                        && sqlx::query_as::<_, (String,)>("SELECT id FROM users WHERE id = $1")
                            .bind(&m.id)
                            .fetch_optional(&mut **self)
                            .await?
                            .is_some();
                    if is_user {
                        users.insert(m.id.clone());
                        continue;
                    }
                    let is_group = m.kind != Some(Resource::User)
                        && sqlx::query_as::<_, (String,)>("SELECT id FROM groups WHERE id = $1")
                            .bind(&m.id)
                            .fetch_optional(&mut **self)
                            .await?
                            .is_some();
                    if !is_group {
                        return Ok(Err(StoreError::Invalid(format!(
                            "member `{}` is no {}",
                            m.id,
                            match m.kind {
                                Some(Resource::User) => "user",
                                Some(Resource::Group) => "group",
                                None => "user or group",
                            }
                        ))));
                    }
                    // A group in itself, or in one of its own members, would
                    // make every member its own ancestor.
                    let cycle: Option<(String,)> = sqlx::query_as(
                        "WITH RECURSIVE d(id) AS (SELECT child_id FROM group_children WHERE parent_id = $1 \
                         UNION SELECT c.child_id FROM group_children c JOIN d ON c.parent_id = d.id) \
                         SELECT id FROM d WHERE id = $2",
                    )
                    .bind(&m.id)
                    .bind(group)
                    .fetch_optional(&mut **self)
                    .await?;
                    if m.id == group || cycle.is_some() {
                        return Ok(Err(StoreError::Invalid(format!(
                            "group `{}` cannot be a member of `{group}`: it would contain itself",
                            m.id
                        ))));
                    }
                    groups.insert(m.id.clone());
                }
                for u in users.difference(&had_users) {
                    sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
                        .bind(group)
                        .bind(u)
                        .execute(&mut **self)
                        .await?;
                }
                for u in had_users.difference(&users) {
                    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                        .bind(group)
                        .bind(u)
                        .execute(&mut **self)
                        .await?;
                }
                for g in groups.difference(&had_groups) {
                    sqlx::query("INSERT INTO group_children (parent_id, child_id) VALUES ($1, $2)")
                        .bind(group)
                        .bind(g)
                        .execute(&mut **self)
                        .await?;
                }
                for g in had_groups.difference(&groups) {
                    sqlx::query("DELETE FROM group_children WHERE parent_id = $1 AND child_id = $2")
                        .bind(group)
                        .bind(g)
                        .execute(&mut **self)
                        .await?;
                }
                let changed_users = users.symmetric_difference(&had_users).cloned().collect();
                let changed_groups = groups.symmetric_difference(&had_groups).cloned().collect();
                Ok(Ok((changed_users, changed_groups)))
            }

            async fn touch(
                &mut self,
                at: i64,
                users: &BTreeSet<String>,
                groups: &BTreeSet<String>,
            ) -> Result<(), sqlx::Error> {
                for u in users {
                    sqlx::query("UPDATE users SET version = version + 1, updated_at = $2 WHERE id = $1")
                        .bind(u)
                        .bind(at)
                        .execute(&mut **self)
                        .await?;
                    self.emit_user(at, u).await?;
                }
                for g in groups {
                    self.emit_group(at, g).await?;
                }
                Ok(())
            }
        }
    };
}

members_tx!(sqlx::Postgres);
members_tx!(sqlx::Sqlite);

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl Store {
    /// Groups by id, in the order given, with their members when asked.
    #[instrument(name = "store.scim_groups_by_id", skip_all)]
    pub async fn scim_groups_by_id(
        &self,
        ids: &[String],
        with_members: bool,
    ) -> Result<Vec<GroupRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(0, ids.len());
        let rows_sql = format!(
            "SELECT id, name, external_id, created_at, updated_at, version FROM groups WHERE id IN ({list})"
        );
        let members_sql = format!(
            "SELECT group_id, user_id, 'User' FROM group_members WHERE group_id IN ({list}) \
             UNION ALL SELECT parent_id, child_id, 'Group' FROM group_children WHERE parent_id IN ({list}) \
             ORDER BY 1, 3 DESC, 2"
        );
        let rows: Vec<Row> = on!(self, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(rows_sql.clone()));
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })?;
        let members: Vec<(String, String, String)> = if with_members {
            on!(self, |p| {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(members_sql.clone()));
                for id in ids {
                    q = q.bind(id);
                }
                q.fetch_all(p).await
            })?
        } else {
            Vec::new()
        };
        let mut by_id: std::collections::HashMap<String, Row> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id))
            .map(|r| GroupRecord {
                members: members
                    .iter()
                    .filter(|(g, ..)| *g == r.id)
                    .map(|(_, id, kind)| {
                        let kind = if kind == "Group" {
                            Resource::Group
                        } else {
                            Resource::User
                        };
                        (id.clone(), kind)
                    })
                    .collect(),
                id: r.id,
                display_name: r.name,
                external_id: r.external_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
                version: r.version,
            })
            .collect())
    }

    #[instrument(name = "store.scim_group", skip_all)]
    pub async fn scim_group(
        &self,
        id: &str,
        with_members: bool,
    ) -> Result<Option<GroupRecord>, StoreError> {
        Ok(self
            .scim_groups_by_id(&[id.to_owned()], with_members)
            .await?
            .pop())
    }

    #[instrument(name = "store.scim_groups", skip_all)]
    pub async fn scim_groups(
        &self,
        q: &ScimQuery,
        with_members: bool,
    ) -> Result<(i64, Vec<GroupRecord>), StoreError> {
        let (total, ids) = self.page(Resource::Group, q).await?;
        Ok((total, self.scim_groups_by_id(&ids, with_members).await?))
    }

    #[instrument(name = "store.scim_create_group", skip_all)]
    pub async fn scim_create_group(
        &self,
        id: &str,
        doc: &GroupDoc,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            sqlx::query(
                "INSERT INTO groups (id, name, name_key, external_id, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $5, 1)",
            )
            .bind(id)
            .bind(&doc.display_name)
            .bind(name_key(&doc.display_name))
            .bind(&doc.external_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let (users, groups) = match tx.set_members(id, &doc.members).await? {
                Ok(changed) => changed,
                Err(e) => return Ok(Err(e)),
            };
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.emit_group(at, id).await?;
            tx.touch(at, &users, &groups).await?;
            tx.commit().await.map(|()| Ok(()))
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("group `{}`", doc.display_name)))?
        .inspect(|()| self.changed())
    }

    /// Replaces group `id` (its name and members) if its version is still
    /// `if_version`.
    #[instrument(name = "store.scim_replace_group", skip_all)]
    pub async fn scim_replace_group(
        &self,
        id: &str,
        doc: &GroupDoc,
        if_version: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let before: Option<(String, i64)> =
                sqlx::query_as("SELECT name, version FROM groups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((old_name, version)) = before else {
                return Ok(Err(StoreError::NotFound(format!("group `{id}`"))));
            };
            if if_version.is_some_and(|v| v != version) {
                return Ok(Err(StoreError::Stale(STALE.into())));
            }
            sqlx::query(
                "UPDATE groups SET name = $2, name_key = $3, external_id = $4, \
                 version = version + 1, updated_at = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(&doc.display_name)
            .bind(name_key(&doc.display_name))
            .bind(&doc.external_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let (mut users, mut groups) = match tx.set_members(id, &doc.members).await? {
                Ok(changed) => changed,
                Err(e) => return Ok(Err(e)),
            };
            audit_insert!(audit).execute(&mut *tx).await?;
            if old_name != doc.display_name {
                // Entities are named by the group's name: every member's
                // parent changes with it.
                tx.append(at, "entity", &group_deleted(&old_name), None)
                    .await?;
                let (all_users, all_groups) = tx.members_of(id).await?;
                users.extend(all_users);
                groups.extend(all_groups);
            }
            tx.emit_group(at, id).await?;
            tx.touch(at, &users, &groups).await?;
            tx.commit().await.map(|()| Ok(()))
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("group `{}`", doc.display_name)))?
        .inspect(|()| self.changed())
    }

    #[instrument(name = "store.scim_delete_group", skip_all)]
    pub async fn scim_delete_group(
        &self,
        id: &str,
        if_version: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let before: Option<(String, i64)> =
                sqlx::query_as("SELECT name, version FROM groups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((name, version)) = before else {
                return Ok(Err(StoreError::NotFound(format!("group `{id}`"))));
            };
            if if_version.is_some_and(|v| v != version) {
                return Ok(Err(StoreError::Stale(STALE.into())));
            }
            let (users, groups) = tx.members_of(id).await?;
            sqlx::query(
                "UPDATE groups SET version = version + 1, updated_at = $2 \
                 WHERE id IN (SELECT parent_id FROM group_children WHERE child_id = $1)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM groups WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.append(at, "entity", &group_deleted(&name), None).await?;
            tx.touch(at, &users, &groups).await?;
            tx.commit().await.map(|()| Ok(()))
        }
        .await)?
        .inspect(|()| self.changed())
    }
}
