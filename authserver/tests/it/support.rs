//! Real backends for the tests: SQLite in a temp dir, PostgreSQL in a fresh
//! schema, Redis under a fresh key prefix, and the in-process store.
//! Without PostgreSQL or Redis a test says it skipped them, except under CI
//! (`CI` set), where a missing server fails the test.

use std::str::FromStr;

use authserver::ephemeral::Ephemeral;
use authserver::store::Store;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

pub fn postgres_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique suffix for schema names and key prefixes.
pub fn unique() -> String {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Notes a skipped backend; under CI, fails the test instead.
fn unavailable(what: &str, err: &dyn std::fmt::Display) {
    testkit::required(what, Some(err.to_string()));
}

/// A store per backend: SQLite always, PostgreSQL when reachable.
pub struct Stores {
    pub all: Vec<(&'static str, Store)>,
    _dir: tempfile::TempDir,
    pg_schema: Option<String>,
}

impl Stores {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite_url = format!("sqlite:{}", dir.path().join("auth.db").display());
        let mut all = vec![("sqlite", Store::connect(&sqlite_url).await.unwrap())];
        let mut pg_schema = None;
        match PgConnection::connect(&postgres_url()).await {
            Ok(mut admin) => {
                let schema = format!("pc_test_{}", unique());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let options = PgConnectOptions::from_str(&postgres_url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                all.push((
                    "postgres",
                    Store::postgres(options, Default::default()).await.unwrap(),
                ));
                pg_schema = Some(schema);
            }
            Err(e) => unavailable("PostgreSQL", &e),
        }
        Self {
            all,
            _dir: dir,
            pg_schema,
        }
    }

    /// Drops the PostgreSQL schema (a failed test leaves it for inspection).
    pub async fn cleanup(self) {
        for (_, store) in &self.all {
            store.close().await;
        }
        if let Some(schema) = self.pg_schema {
            let mut admin = PgConnection::connect(&postgres_url()).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// A fresh PostgreSQL schema and a URL whose connections use it; `None`
/// (skipped) without a reachable server outside CI. Dropped by
/// [`drop_schema`].
pub async fn pg_schema_url() -> Option<(String, String)> {
    let mut admin = match PgConnection::connect(&postgres_url()).await {
        Ok(c) => c,
        Err(e) => {
            unavailable("PostgreSQL", &e);
            return None;
        }
    };
    let schema = format!("pc_test_{}", unique());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if postgres_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}options=-c%20search_path%3D{schema}", postgres_url());
    Some((url, schema))
}

pub async fn drop_schema(schema: &str) {
    let mut admin = PgConnection::connect(&postgres_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Redis is reachable (or the test is skipped, outside CI).
pub async fn redis_available() -> bool {
    match Ephemeral::redis(&redis_url(), "pc_test:probe:").await {
        Ok(r) => match r.ping().await {
            Ok(()) => true,
            Err(e) => {
                unavailable("Redis", &e);
                false
            }
        },
        Err(e) => {
            unavailable("Redis", &e);
            false
        }
    }
}

/// An ephemeral store per backend: in-process always; Redis and a Redis
/// Cluster when reachable.
pub async fn ephemerals() -> Vec<(&'static str, Ephemeral)> {
    let mut all = vec![("memory", Ephemeral::memory())];
    let prefix = format!("pc_test:{}:", unique());
    let cluster = testkit::RedisCluster::shared().map(testkit::RedisCluster::url);
    for (backend, url) in [("redis", Some(redis_url())), ("redis-cluster", cluster)] {
        let Some(url) = url else { continue };
        match Ephemeral::redis(&url, &prefix).await {
            Ok(redis) => match redis.ping().await {
                Ok(()) => all.push((backend, redis)),
                Err(e) => unavailable(backend, &e),
            },
            Err(e) => unavailable(backend, &e),
        }
    }
    all
}

pub use testkit::{totp_code, unix_now};
