//! Schema changes across releases. During a rolling upgrade the previous
//! release and this one serve from one database: this release migrates a
//! schema that holds the previous release's data, and a release runs on a
//! schema a later release has already migrated.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::browser::Browser;
use crate::flow::{VERIFIER, WEB_REDIRECT, authorize_url, claims_of, consent, exchange, log_in};
use crate::server::Authserver;
use crate::support::{drop_schema, pg_schema_url};

/// The first migration held to the rule below (the earlier ones predate
/// rolling upgrades).
const ADDITIVE_FROM: u32 = 8;

fn migrations(backend: &str) -> Vec<(u32, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name.split('_').next().unwrap().parse().unwrap();
            (version, p)
        })
        .collect();
    files.sort();
    files
}

/// What the previous release could no longer run against: its columns
/// gone, renamed or retyped, or its writes refused by a new constraint.
fn not_additive(sql: &str) -> Option<&'static str> {
    let sql = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    for statement in sql.split(';') {
        let s = statement.trim();
        let refused = [
            ("DROP TABLE", "drops a table"),
            ("DROP COLUMN", "drops a column"),
            ("RENAME", "renames"),
            (" TYPE ", "changes a column's type"),
            ("SET NOT NULL", "makes a column required"),
            (
                "ADD CONSTRAINT",
                "adds a constraint the previous release's writes may break",
            ),
        ];
        if let Some((_, why)) = refused.iter().find(|(word, _)| s.contains(word)) {
            return Some(why);
        }
        if s.contains("ADD COLUMN") && s.contains("NOT NULL") && !s.contains("DEFAULT") {
            return Some("adds a required column without a default");
        }
    }
    None
}

#[test]
fn migrations_from_now_on_only_add() {
    for backend in ["postgres", "sqlite"] {
        for (version, path) in migrations(backend) {
            let sql = std::fs::read_to_string(&path).unwrap();
            if version >= ADDITIVE_FROM
                && let Some(why) = not_additive(&sql)
            {
                panic!(
                    "{}: {why}; the previous release must run on this schema (expand now, contract a release later)",
                    path.display()
                );
            }
        }
    }
    // The check itself.
    assert_eq!(not_additive("CREATE TABLE t (a TEXT);"), None);
    assert_eq!(
        not_additive("ALTER TABLE t ADD COLUMN b BIGINT NOT NULL DEFAULT 0;"),
        None
    );
    for bad in [
        "ALTER TABLE users DROP COLUMN email;",
        "ALTER TABLE users RENAME COLUMN email TO mail;",
        "alter table users\n  alter column roles type jsonb;",
        "ALTER TABLE t ADD COLUMN b BIGINT NOT NULL; -- DEFAULT later",
        "ALTER TABLE t ALTER COLUMN b SET NOT NULL;",
        "DROP TABLE consents;",
    ] {
        assert!(not_additive(bad).is_some(), "{bad}");
    }
}

/// The schema of the release before the newest migration, with data
/// written as that release wrote it; this release migrates it at start
/// and serves it: the old account signs in and keeps its group.
#[tokio::test]
async fn the_previous_schema_with_its_data_migrates_and_serves() {
    let Some((url, schema)) = pg_schema_url().await else {
        return;
    };
    let all = migrations("postgres");
    let previous = tempfile::tempdir().unwrap();
    for (_, path) in &all[..all.len() - 1] {
        std::fs::copy(path, previous.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut db = PgConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(previous.path())
        .await
        .unwrap()
        .run(&mut db)
        .await
        .unwrap();
    let hash = authserver::password::Passwords::new(&Default::default())
        .unwrap()
        .hash("an old password, still good")
        .unwrap();
    for statement in [
        format!(
            "INSERT INTO users (id, username, username_key, email, display_name, password_hash, roles, created_at, updated_at) \
             VALUES ('u-veteran', 'Veteran', 'veteran', 'veteran@example.com', 'Val Veteran', '{hash}', '[\"auditor\"]', 1700000000, 1700000000)"
        ),
        "INSERT INTO groups (id, name, name_key, created_at, updated_at) VALUES ('g-old', 'old-timers', 'old-timers', 1700000000, 1700000000)".into(),
        "INSERT INTO group_members (group_id, user_id) VALUES ('g-old', 'u-veteran')".into(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut db)
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &["--database-url", &url], &[]);
    let applied: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let expected: Vec<(i64,)> = all.iter().map(|(v, _)| (i64::from(*v),)).collect();
    assert_eq!(applied, expected, "every migration applied once");

    let tokens = signed_in_tokens(&server, "veteran", "an old password, still good").await;
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["groups"], serde_json::json!(["old-timers"]), "{id}");
    drop(server);
    drop(db);
    drop_schema(&schema).await;
}

/// A release starts on a schema that a later release has migrated
/// further (a migration it does not know), as a rolling upgrade's older
/// replicas restarting do.
#[tokio::test]
async fn a_schema_migrated_by_a_later_release_is_served() {
    let mut urls = vec![];
    let pg = pg_schema_url().await;
    if let Some((url, _)) = &pg {
        urls.push(url.clone());
    }
    let sqlite = tempfile::tempdir().unwrap();
    urls.push(format!("sqlite:{}", sqlite.path().join("a.db").display()));
    for url in urls {
        let store = authserver::store::Store::connect(&url).await.unwrap();
        drop(store);
        if url.starts_with("sqlite:") {
            let mut db = <sqlx::SqliteConnection as Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99999, 'a later release', TRUE, X'00', 0)",
            )
            .execute(&mut db)
            .await
            .unwrap();
        } else {
            let mut db = PgConnection::connect(&url).await.unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99999, 'a later release', TRUE, '\\x00'::bytea, 0)",
            )
            .execute(&mut db)
            .await
            .unwrap();
        }
        let again = authserver::store::Store::connect(&url).await;
        assert!(again.is_ok(), "{url}: {:?}", again.err());
    }
    if let Some((_, schema)) = pg {
        drop_schema(&schema).await;
    }
}

/// `deploy/README.md`'s backup and restore, run as written: `pg_dump` of
/// a serving database, `pg_restore` into an empty one, an authserver with
/// the same master key on the copy: the account signs in and the signing
/// keys are the ones the tokens were issued with.
#[tokio::test]
async fn a_dump_restored_into_an_empty_database_serves() {
    let (Ok(original), Ok(restored)) = (
        testkit::Database::fresh("pc_backup"),
        testkit::Database::fresh("pc_restored"),
    ) else {
        testkit::required("PostgreSQL", Some("cannot create databases".into()));
        return;
    };
    // One data directory: dev mode keeps its master key there.
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &["--database-url", &original.url], &[]);
    let (status, body) = server
        .admin(
            "POST",
            "/admin/v1/users",
            &serde_json::json!({"username": "kept", "password": "kept across a restore 1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let keys_before: serde_json::Value = server.get_json("/jwks").await;
    drop(server);

    let dump = dir.path().join("portcullis.dump");
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "pg_dump",
        &[
            "--format=custom",
            "--file",
            dump.to_str().unwrap(),
            &original.url,
        ],
    );
    run(
        "pg_restore",
        &[
            "--no-owner",
            "--dbname",
            &restored.url,
            dump.to_str().unwrap(),
        ],
    );

    let server = Authserver::dev(dir.path(), &["--database-url", &restored.url], &[]);
    let keys_after: serde_json::Value = server.get_json("/jwks").await;
    assert_eq!(keys_after, keys_before, "the same signing keys, unsealed");
    signed_in_tokens(&server, "kept", "kept across a restore 1").await;
}

/// The demo web client's tokens for `username`, through the sign-in and
/// consent pages; the exchange must succeed.
async fn signed_in_tokens(server: &Authserver, username: &str, password: &str) -> Value {
    let mut browser = Browser::new(&server.url(""));
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login, username, password).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let code = back
        .redirect_param("code")
        .unwrap_or_else(|| panic!("no code: {}", back.location()));
    let (status, tokens) = exchange(server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}
