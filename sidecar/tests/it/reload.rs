//! Hot reload: atomic swaps under load, refused sets, file watching.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Sidecar, copy_policies, demo_policies, eventually};

/// Two files whose policies must always be seen together.
fn write_generation(dir: &std::path::Path, tag: &str) {
    for part in ["a", "b"] {
        let text = format!(
            "@id(\"{tag}-{part}\")\npermit (principal == App::User::\"bob\", action == App::Action::\"ReadReport\", resource == App::Report::\"r-eng\");\n"
        );
        std::fs::write(dir.join(format!("gen-{part}.cedar")), text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_never_fails_a_request_or_mixes_sets() {
    let dir = copy_policies(&demo_policies());
    write_generation(dir.path(), "v1");
    // Reloads by admin call only, so each one sees both files written.
    let sidecar = Arc::new(Sidecar::start(
        dir.path(),
        &[("PORTCULLIS_SIDECAR__WATCH", "false")],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (sidecar, stop, seen) = (sidecar.clone(), stop.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let req =
                json!({"method": "GET", "path": "/api/reports/r-eng", "claims": {"sub": "bob"}});
            let mut versions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = sidecar.post("/v1/check", &req).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["decision"], "Allow", "{body}");
                let mut policies: Vec<String> = body["determiningPolicies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_owned())
                    .collect();
                policies.sort();
                let tag = policies[0].split('-').next().unwrap().to_owned();
                assert_eq!(
                    policies,
                    [format!("{tag}-a"), format!("{tag}-b")],
                    "mixed policy set"
                );
                versions.insert(tag);
                seen.fetch_add(1, Ordering::Relaxed);
            }
            versions
        }));
    }
    for round in 0..20 {
        let tag = format!("v{}", round + 2);
        write_generation(dir.path(), &tag);
        let (status, body) = sidecar.admin(Method::POST, "/v1/admin/reload", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "reloaded");
    }
    stop.store(true, Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    for c in clients {
        versions.extend(c.await.unwrap());
    }
    assert!(
        seen.load(Ordering::Relaxed) > 100,
        "too few requests to prove anything"
    );
    assert!(versions.len() > 2, "requests saw only {versions:?}");
}

#[tokio::test]
async fn an_invalid_set_is_refused_and_the_old_one_keeps_serving() {
    let dir = copy_policies(&demo_policies());
    let sidecar = Sidecar::start(dir.path(), &[("PORTCULLIS_SIDECAR__WATCH", "false")]);
    let (_, before) = sidecar.get("/v1/status").await;
    std::fs::write(
        dir.path().join("broken.cedar"),
        "permit (principal, action, resource) when { principal.nope };\n",
    )
    .unwrap();

    let (status, body) = sidecar.admin(Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("broken.cedar:1:"),
        "{body}"
    );

    let (_, after) = sidecar.get("/v1/status").await;
    assert_eq!(after["version"], before["version"]);
    assert!(
        after["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("broken.cedar"),
        "{after}"
    );
    assert_eq!(after["reload"]["reloads_failed"], 1);
    let (status, body) = sidecar
        .post(
            "/v1/check",
            &json!({"method": "GET", "path": "/api/orders", "claims": {"sub": "bob"}}),
        )
        .await;
    assert_eq!((status, body["decision"].clone()), (200, json!("Allow")));
    let metrics = sidecar.text("/metrics").await;
    assert!(
        metrics.contains(r#"policy_reloads_total{result="failure"} 1"#),
        "{metrics}"
    );
    assert!(sidecar.stderr_contains("policy reload refused"));

    // Fixing the file recovers on the next reload.
    std::fs::remove_file(dir.path().join("broken.cedar")).unwrap();
    std::fs::write(
        dir.path().join("extra.cedar"),
        "@id(\"extra\")\nforbid (principal == App::User::\"bob\", action, resource);\n",
    )
    .unwrap();
    let (status, _) = sidecar.admin(Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 200);
    let (_, status_now) = sidecar.get("/v1/status").await;
    assert_eq!(status_now["reload"]["last_error"], Value::Null);
    let (_, body) = sidecar
        .post(
            "/v1/check",
            &json!({"method": "GET", "path": "/api/orders", "claims": {"sub": "bob"}}),
        )
        .await;
    assert_eq!(body["determiningPolicies"], json!(["extra"]));
}

#[tokio::test]
async fn file_changes_reload_by_themselves() {
    let dir = copy_policies(&demo_policies());
    let sidecar = Sidecar::start(dir.path(), &[]);
    let req = json!({"method": "GET", "path": "/api/orders", "claims": {"sub": "bob"}});
    assert_eq!(sidecar.post("/v1/check", &req).await.1["decision"], "Allow");
    std::fs::write(
        dir.path().join("lockdown.cedar"),
        "@id(\"lockdown\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    eventually("the watcher to pick up lockdown.cedar", || async {
        sidecar.post("/v1/check", &req).await.1["determiningPolicies"] == json!(["lockdown"])
    })
    .await;
    // A broken edit is refused; the lockdown stays in force.
    std::fs::write(
        dir.path().join("lockdown.cedar"),
        "forbid (principal, action, resource",
    )
    .unwrap();
    eventually("the refused reload to show in /v1/status", || async {
        sidecar.get("/v1/status").await.1["reload"]["last_error"].is_string()
    })
    .await;
    assert_eq!(
        sidecar.post("/v1/check", &req).await.1["determiningPolicies"],
        json!(["lockdown"])
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads() {
    let dir = copy_policies(&demo_policies());
    let sidecar = Sidecar::start(dir.path(), &[("PORTCULLIS_SIDECAR__WATCH", "false")]);
    let (_, before) = sidecar.get("/v1/status").await;
    std::fs::write(
        dir.path().join("hup.cedar"),
        "@id(\"hup\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let pid = sidecar.pid().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    eventually("SIGHUP to reload", || async {
        sidecar.get("/v1/status").await.1["version"] != before["version"]
    })
    .await;
}
