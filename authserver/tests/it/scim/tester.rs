//! scim2-tester (PyPI), the outside check of the SCIM server: every check
//! it runs passes, on SQLite and on PostgreSQL with Redis.

use std::process::Command;

use super::Scim;
use crate::support::{drop_schema, pg_schema_url, redis_url};

/// Runs scim2-tester against `scim`; the summary line it prints.
fn run_tester(scim: &Scim) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scim/check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(scim.base())
        .arg(&scim.token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scim2-tester found errors:\n{}\n{}",
        stdout
            .lines()
            .filter(|l| !l.starts_with("SUCCESS"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("scim2-tester: {summary}");
    summary
}

fn available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import scim2_tester, httpx2"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "scim2-tester is not installed (scripts/install-deps.sh)"
        );
        eprintln!("skipped: scim2-tester is not installed (scripts/install-deps.sh)");
    }
    ok
}

#[tokio::test]
async fn scim2_tester_passes_every_check_on_sqlite() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let summary = run_tester(&scim);
    assert!(summary["checks"].as_u64().unwrap() >= 100, "{summary}");
    assert_eq!(
        summary["by_status"].as_object().unwrap().len(),
        1,
        "{summary}"
    );
}

#[tokio::test]
async fn scim2_tester_passes_every_check_on_postgres_and_redis() {
    if !available() {
        return;
    }
    let Some((url, schema)) = pg_schema_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let redis = redis_url();
    let prefix = format!("{schema}:");
    let scim = Scim::start_with(
        dir.path(),
        &["--database-url", &url, "--redis-url", &redis],
        &[("PORTCULLIS_AUTHSERVER__REDIS_PREFIX", &prefix)],
    );
    let summary = run_tester(&scim);
    assert_eq!(
        summary["by_status"].as_object().unwrap().len(),
        1,
        "{summary}"
    );
    drop(scim);
    drop_schema(&schema).await;
}
