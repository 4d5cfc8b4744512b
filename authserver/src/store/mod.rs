//! Durable state: users, groups, second factors, clients, signing keys,
//! consents and the audit log, on PostgreSQL (production) or SQLite (embedded default).
//!
//! One interface, two backends. The schema keeps to types both databases
//! share (TEXT, BIGINT Unix seconds, BOOLEAN, bytes; lists as JSON text), so
//! every query is written once and runs on either pool: `on!` expands a body
//! once per backend. Migrations are embedded and append-only, one folder per
//! backend, applied at connect; they only add, so the previous release
//! runs on the new schema during a rolling upgrade. Every change is written in one transaction
//! with its audit event.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions, PgPool, SqlitePool};
use tracing::instrument;

use crate::model::{AuditEvent, ClientAuth};

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
    /// The request cannot be carried out as asked (a filter that names no
    /// attribute, a member that is nobody).
    #[error("{0}")]
    Invalid(String),
    /// A conditional write whose version no longer matches.
    #[error("{0}")]
    Stale(String),
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
    /// Woken after a commit that appended to the change feed, so feed
    /// readers waiting on this process need not poll.
    changed: std::sync::Arc<tokio::sync::Notify>,
}

/// Runs `$body` with `$pool` bound to whichever pool the store has; the body
/// is compiled once per backend.
/// The embedded migrations of one backend. A schema newer than this
/// release (migrations it does not know, applied by the next release
/// during a rolling upgrade) is served as it is: migrations only add
/// (`tests/it/migrations.rs` holds them to that).
macro_rules! migrator {
    ($dir:literal) => {{
        let mut migrator = sqlx::migrate!($dir);
        migrator.set_ignore_missing(true);
        migrator
    }};
}

macro_rules! on {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Postgres($pool) => $body,
            Backend::Sqlite($pool) => $body,
        }
    };
}

/// A federated identity's link to its user, on any executor of either
/// backend (a link made alone, or with the user a sign-in creates).
macro_rules! link_insert {
    ($link:expr) => {
        sqlx::query(
            "INSERT INTO federated_identities (provider, subject, user_id, email, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&$link.provider)
        .bind(&$link.subject)
        .bind(&$link.user_id)
        .bind(&$link.email)
        .bind($link.created_at)
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

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

fn unique_violation(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Database(err),
    }
}

// The resources, one file each; the macros above are in scope there.
mod audit;
mod clients;
mod consents;
mod factors;
mod federation;
mod feed;
mod keys;
mod rows;
pub mod scim;
mod service_tokens;
mod users;

pub use feed::Change;
pub use scim::ScimQuery;
pub use service_tokens::ServiceToken;
pub use users::{NewUser, UserChange};

/// How the store uses its database's connections.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// Connections at most, per authserver process.
    pub size: u32,
    /// How long a request waits for a free connection before it is a 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL cancels a statement running longer (0: never). Migrations
    /// run without it, on a connection of their own.
    pub statement_timeout: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            size: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// How long a migration waits for a lock before it gives up (and the
/// process exits, to be restarted): queued behind a long transaction, an
/// `ALTER TABLE` would otherwise hold up every query behind it.
const MIGRATION_LOCK_TIMEOUT: &str = "10s";

impl Store {
    /// Connects to `postgres://…` or `sqlite:…` with the default pool and
    /// applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, Pool::default()).await
    }

    /// [`Store::connect`] with `pool`'s settings.
    pub async fn connect_with(url: &str, pool: Pool) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: bootstrap::config::redact_url(url),
            reason,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            Self::postgres(options, pool).await
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            Self::sqlite(options, pool).await
        } else {
            Err(bad("expected a postgres:// or sqlite: URL".into()))
        }
    }

    pub async fn postgres(options: PgConnectOptions, pool: Pool) -> Result<Self, StoreError> {
        // Every query here is short: JIT compiling one (which PostgreSQL
        // does when its estimate is high, e.g. a recursive membership
        // query) costs hundreds of milliseconds and saves nothing.
        let options = options.options([("jit", "off")]);
        let mut migrating = options
            .clone()
            .options([("lock_timeout", MIGRATION_LOCK_TIMEOUT)])
            .connect()
            .await?;
        migrator!("./migrations/postgres")
            .run(&mut migrating)
            .await?;
        drop(migrating);
        let timeout = pool.statement_timeout.as_millis().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(pool.size)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options.options([("statement_timeout", timeout.as_str())]))
            .await?;
        Ok(Self {
            backend: Backend::Postgres(pool),
            changed: std::sync::Arc::default(),
        })
    }

    pub async fn sqlite(options: SqliteConnectOptions, pool: Pool) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(pool.size)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        migrator!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            backend: Backend::Sqlite(pool),
            changed: std::sync::Arc::default(),
        })
    }

    /// Signalled after each commit that appended to the change feed.
    pub fn change_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    fn changed(&self) {
        self.changed.notify_one();
    }

    /// `postgres` or `sqlite`, for status pages and logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The database answers.
    #[instrument(name = "store.ping", skip_all)]
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
}

impl ClientAuth {
    fn from_stored(s: &str) -> Result<Self, StoreError> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt(format!("auth_method `{s}`")))
    }
}
