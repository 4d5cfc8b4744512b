//! The command line: exit codes and messages for config and policy errors.

use std::process::Command;

use crate::support::{copy_policies, demo_policies};

fn sidecar(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_and_test_the_demo_policies() {
    let dir = demo_policies();
    let dir = dir.to_str().unwrap();
    let (code, out, _) = sidecar(&["validate", dir], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK (16 policies, 20 entities"), "{out}");
    let (code, out, _) = sidecar(&["test", dir], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_policy_test_fails_the_command() {
    let dir = copy_policies(&demo_policies());
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/wrong.toml"),
        "[[case]]\nname = \"bob is an admin\"\nhttp = { method = \"DELETE\", path = \"/api/orders/o-100\", claims = { sub = \"bob\", amr = [\"mfa\"] } }\nexpect = \"Allow\"\n",
    )
    .unwrap();
    let (code, out, _) = sidecar(&["test", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL wrong.toml: bob is an admin"), "{out}");
    assert!(out.contains("expected Allow, got Deny"), "{out}");
}

#[test]
fn invalid_policies_name_file_line_and_column() {
    let dir = copy_policies(&demo_policies());
    std::fs::write(
        dir.path().join("typo.cedar"),
        "permit (principal, action, resource)\nwhen { resource.owner.nam == \"x\" };\n",
    )
    .unwrap();
    let (code, _, err) = sidecar(&["validate", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("typo.cedar:2:"), "{err}");
    let (code, _, err) = sidecar(
        &[
            "serve",
            "--policies",
            dir.path().to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("typo.cedar:2:"), "{err}");

    std::fs::remove_file(dir.path().join("typo.cedar")).unwrap();
    std::fs::write(
        dir.path().join("routes.toml"),
        "[principal]\nuser = \"App::Nobody\"\nclient = \"App::Client\"\n",
    )
    .unwrap();
    let (code, _, err) = sidecar(&["validate", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 65);
    assert!(
        err.contains(
            "routes.toml: `principal.user`: entity type `App::Nobody` is not in the schema"
        ),
        "{err}"
    );
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let policies = demo_policies();
    let p = policies.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("PORTCULLIS_SIDECAR__CACHE__TTL_MS", "soon")],
            "cache.ttl_ms",
        ),
        (
            &[("PORTCULLIS_SIDECAR__ADMIN_TOKEN", "short")],
            "admin_token",
        ),
        (&[("PORTCULLIS_SIDECAR__HTTP", "nowhere")], "http"),
        (&[("PORTCULLIS_SIDECAR__NO_SUCH_KEY", "1")], "no_such_key"),
        (&[("PORTCULLIS_SIDECAR__WORKERS", "100000")], "workers"),
    ];
    for (env, key) in cases {
        let (code, _, err) = sidecar(&["serve", "--check", "--policies", p], env);
        assert_eq!(code, 64, "{env:?}: {err}");
        assert!(err.contains(key), "{key} not named: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    std::fs::write(&file, "[decision_log]\nsample_allows = 2.0\n").unwrap();
    let (code, _, err) = sidecar(
        &[
            "serve",
            "--check",
            "--config",
            file.to_str().unwrap(),
            "--policies",
            p,
        ],
        &[],
    );
    assert_eq!(code, 64);
    assert!(err.contains("decision_log.sample_allows"), "{err}");
}

#[test]
fn the_example_config_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.example.toml");
    let (code, out, err) = sidecar(
        &[
            "serve",
            "--check",
            "--config",
            example.to_str().unwrap(),
            "--policies",
            demo_policies().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config and policies OK"));
}
