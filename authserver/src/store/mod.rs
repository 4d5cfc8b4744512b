//! Durable state: users, groups, clients, signing keys, consents and the
//! audit log, on PostgreSQL (production) or SQLite (embedded default).
//!
//! One interface, two backends. The schema keeps to types both databases
//! share (TEXT, BIGINT Unix seconds, BOOLEAN, bytes; lists as JSON text), so
//! every query is written once and runs on either pool: `on!` expands a body
//! once per backend. Migrations are embedded and append-only, one folder per
//! backend, applied at connect. Every change is written in one transaction
//! with its audit event.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::model::{AuditEvent, Client, ClientAuth, KeyState, StoredKey, User};

mod rows;

use rows::{AuditRow, ClientRow, KeyRow, UserRow};

/// What can go wrong reading or writing durable state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("invalid database URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored record `{0}` is corrupt")]
    Corrupt(String),
}

#[derive(Debug, Clone)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The durable store. Cheap to clone (pools are shared).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to whichever pool the store has; the body
/// is compiled once per backend.
macro_rules! on {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Postgres($pool) => $body,
            Backend::Sqlite($pool) => $body,
        }
    };
}

/// The audit insert, usable on any executor of either backend.
macro_rules! audit_insert {
    ($event:expr) => {
        sqlx::query(
            "INSERT INTO audit_events (at, actor, action, target, source_ip, client_id, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind($event.at)
        .bind(&$event.actor)
        .bind(&$event.action)
        .bind(&$event.target)
        .bind(&$event.source_ip)
        .bind(&$event.client_id)
        .bind(&$event.outcome)
        .bind($event.detail.to_string())
    };
}

/// Runs one change in a transaction with its audit event. The body returns
/// the statement's result; when it touched no row nothing is written and the
/// expression is `Ok(false)`.
macro_rules! changed_with_audit {
    ($pool:expr, $audit:expr, |$tx:ident| $body:expr) => {
        async {
            let mut $tx = $pool.begin().await?;
            let done = $body?;
            if done.rows_affected() == 0 {
                return Ok::<bool, sqlx::Error>(false);
            }
            audit_insert!($audit).execute(&mut *$tx).await?;
            $tx.commit().await.map(|()| true)
        }
        .await
    };
}

fn found(changed: bool, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if changed {
        Ok(())
    } else {
        Err(StoreError::NotFound(what()))
    }
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

// Column lists as macros so queries stay `&'static str` (sqlx refuses
// dynamically built SQL).
macro_rules! user_columns {
    () => {
        "id, username, email, display_name, password_hash, roles, disabled, created_at, updated_at"
    };
}
macro_rules! client_columns {
    () => {
        "id, name, secret_digest, auth_method, redirect_uris, post_logout_redirect_uris, \
         grant_types, scopes, jwks, require_consent, introspect, created_at"
    };
}
macro_rules! key_columns {
    () => {
        "kid, alg, private_key, public_jwk, state, created_at, activated_at, retired_at"
    };
}

/// Usernames are unique and looked up without regard to case.
fn username_key(username: &str) -> String {
    username.trim().to_lowercase()
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

fn unique_violation(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Database(err),
    }
}

impl Store {
    /// Connects to `postgres://…` or `sqlite:…` and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: redact(url),
            reason,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            Self::postgres(options).await
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            Self::sqlite(options).await
        } else {
            Err(bad("expected a postgres:// or sqlite: URL".into()))
        }
    }

    pub async fn postgres(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            backend: Backend::Postgres(pool),
        })
    }

    pub async fn sqlite(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            backend: Backend::Sqlite(pool),
        })
    }

    /// `postgres` or `sqlite`, for status pages and logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on!(self, |p| p.close().await);
    }

    // ---- users ----

    pub async fn create_user(&self, new: &NewUser, audit: &AuditEvent) -> Result<User, StoreError> {
        let at = audit.at;
        let key = username_key(&new.username);
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, username, username_key, email, display_name, password_hash, roles, disabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8)",
            )
            .bind(&new.id)
            .bind(new.username.trim())
            .bind(&key)
            .bind(&new.email)
            .bind(&new.display_name)
            .bind(&new.password_hash)
            .bind(json_list(&new.roles))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            for group in &new.groups {
                sqlx::query(
                    "INSERT INTO groups (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(group)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO group_members (group_id, user_id) SELECT id, $2 FROM groups WHERE name = $1",
                )
                .bind(group)
                .bind(&new.id)
                .execute(&mut *tx)
                .await?;
            }
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("user `{}`", new.username.trim())))?;
        self.user_by_id(&new.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user `{}`", new.id)))
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let row: Option<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        self.with_groups(row).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key = $1"
        );
        let key = username_key(username);
        let row: Option<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(&key)
            .fetch_optional(p)
            .await)?;
        self.with_groups(row).await
    }

    /// Users ordered by username, a page at a time.
    pub async fn users(&self, offset: i64, limit: i64) -> Result<Vec<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username_key LIMIT $1 OFFSET $2"
        );
        let rows: Vec<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(p)
            .await)?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(user) = self.with_groups(Some(row)).await? {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn with_groups(&self, row: Option<UserRow>) -> Result<Option<User>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let groups: Vec<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT g.name FROM groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.name",
        )
        .bind(&row.id)
        .fetch_all(p)
        .await)?;
        row.into_user(groups.into_iter().map(|(g,)| g).collect())
            .map(Some)
    }

    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(audit.at)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("user `{user_id}`"))
    }

    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(user_id)
        .bind(disabled)
        .bind(audit.at)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("user `{user_id}`"))
    }

    /// Sets a new password hash and/or the disabled flag in one
    /// transaction with their audit events.
    pub async fn update_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        disabled: Option<bool>,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let at = audit.first().map_or(0, |a| a.at);
        let changed = on!(self, |p| async {
            let mut tx = p.begin().await?;
            let done = sqlx::query(
                "UPDATE users SET password_hash = COALESCE($2, password_hash), \
                 disabled = COALESCE($3, disabled), updated_at = $4 WHERE id = $1",
            )
            .bind(user_id)
            .bind(password_hash)
            .bind(disabled)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            for event in audit {
                audit_insert!(event).execute(&mut *tx).await?;
            }
            tx.commit().await.map(|()| true)
        }
        .await)?;
        found(changed, || format!("user `{user_id}`"))
    }

    pub async fn delete_user(&self, user_id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "DELETE FROM users WHERE id = $1"
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("user `{user_id}`"))
    }

    // ---- clients ----

    pub async fn create_client(
        &self,
        client: &Client,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO clients (id, name, secret_digest, auth_method, redirect_uris, post_logout_redirect_uris, \
                 grant_types, scopes, jwks, require_consent, introspect, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&client.id)
            .bind(&client.name)
            .bind(&client.secret_digest)
            .bind(client.auth_method.as_str())
            .bind(json_list(&client.redirect_uris))
            .bind(json_list(&client.post_logout_redirect_uris))
            .bind(json_list(&client.grant_types))
            .bind(json_list(&client.scopes))
            .bind(&client.jwks)
            .bind(client.require_consent)
            .bind(client.introspect)
            .bind(client.created_at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("client `{}`", client.id)))
    }

    pub async fn client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        let sql = concat!("SELECT ", client_columns!(), " FROM clients WHERE id = $1");
        let row: Option<ClientRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        row.map(ClientRow::into_client).transpose()
    }

    pub async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let sql = concat!("SELECT ", client_columns!(), " FROM clients ORDER BY id");
        let rows: Vec<ClientRow> = on!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    pub async fn set_client_secret(
        &self,
        client_id: &str,
        digest: &[u8],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE clients SET secret_digest = $2 WHERE id = $1"
        )
        .bind(client_id)
        .bind(digest)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }

    pub async fn delete_client(
        &self,
        client_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "DELETE FROM clients WHERE id = $1"
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }

    // ---- signing keys ----

    pub async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys ORDER BY created_at, kid"
        );
        let rows: Vec<KeyRow> = on!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        rows.into_iter().map(KeyRow::into_key).collect()
    }

    /// Applies a key rotation in one transaction: inserts `new` keys, moves
    /// the listed keys to their new state (each from the state before it),
    /// deletes `remove`d ones. If another rotation moved a key first,
    /// nothing is written and the error is a conflict.
    pub async fn rotate_keys(
        &self,
        new: &[StoredKey],
        moves: &[(String, KeyState)],
        remove: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            for key in new {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at, activated_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.sealed_private_key)
                .bind(&key.public_jwk)
                .bind(key.state.as_str())
                .bind(key.created_at)
                .bind(key.activated_at)
                .bind(key.retired_at)
                .execute(&mut *tx)
                .await?;
            }
            for (kid, state) in moves {
                // Each move names the state it leaves (next → active →
                // retired): a concurrent rotation that got there first
                // makes this one touch no row, and it is rolled back.
                let from = match state {
                    KeyState::Active => KeyState::Next,
                    KeyState::Retired => KeyState::Active,
                    KeyState::Next => KeyState::Next,
                };
                let done = sqlx::query(
                    "UPDATE signing_keys SET state = $2, \
                     activated_at = CASE WHEN $2 = 'active' THEN $3 ELSE activated_at END, \
                     retired_at = CASE WHEN $2 = 'retired' THEN $3 ELSE retired_at END \
                     WHERE kid = $1 AND state = $4",
                )
                .bind(kid)
                .bind(state.as_str())
                .bind(at)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(sqlx::Error::RowNotFound);
                }
            }
            for kid in remove {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                    .bind(kid)
                    .execute(&mut *tx)
                    .await?;
            }
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => {
                StoreError::Conflict("a concurrent change to the signing keys".into())
            }
            e => unique_violation(e, || "signing key".into()),
        })
    }

    // ---- consents ----

    /// The scopes the user has already granted the client.
    pub async fn consent(&self, user_id: &str, client_id: &str) -> Result<Vec<String>, StoreError> {
        let row: Option<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2"
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(p)
        .await)?;
        Ok(row
            .map(|(s,)| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Remembers a grant; the stored scopes become the union of old and new.
    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut all = self.consent(user_id, client_id).await?;
        all.extend(scopes.iter().cloned());
        all.sort();
        all.dedup();
        let joined = all.join(" ");
        on!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(&joined)
            .bind(audit.at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await
        })?;
        Ok(())
    }

    // ---- audit ----

    /// Records an event that changes nothing else (a login, a token issued).
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        on!(self, |p| audit_insert!(event).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Records several events in one transaction (group commit).
    pub async fn audit_all(&self, events: &[&AuditEvent]) -> Result<(), StoreError> {
        // Multi-row inserts: a statement per event would cost the database
        // a round trip each. 256 rows × 8 binds stays under both backends'
        // parameter limits.
        on!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            for chunk in events.chunks(256) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_events (at, actor, action, target, source_ip, client_id, outcome, detail) ",
                );
                insert.push_values(chunk, |mut row, e| {
                    row.push_bind(e.at)
                        .push_bind(e.actor.clone())
                        .push_bind(e.action.clone())
                        .push_bind(e.target.clone())
                        .push_bind(e.source_ip.clone())
                        .push_bind(e.client_id.clone())
                        .push_bind(e.outcome.clone())
                        .push_bind(e.detail.to_string());
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await
        })?;
        Ok(())
    }

    /// The newest events first.
    pub async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<AuditRow> = on!(self, |p| sqlx::query_as(
            "SELECT at, actor, action, target, source_ip, client_id, outcome, detail \
             FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(p)
        .await)?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }
}

/// A database URL fit for logs: the password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl ClientAuth {
    fn from_stored(s: &str) -> Result<Self, StoreError> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt(format!("auth_method `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/auth"),
            "postgres://app:***@db:5432/auth"
        );
        assert_eq!(redact("postgres://app@db/auth"), "postgres://app@db/auth");
        assert_eq!(redact("sqlite:data/auth.db"), "sqlite:data/auth.db");
    }
}
