//! `deploy/kubernetes/monitoring`: every series the SLO rules and the
//! Grafana dashboard query, and every label they select or group by, is
//! one the services export, scraped from the real binaries after the
//! traffic the panels describe (a sign-in, a token through the gateway, a
//! refused token).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::stack::{AUTHSERVER, Backends, GATEWAY, SIDECAR, Stack};

/// Series name → the label names it carries, from Prometheus text.
fn series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            for pair in rest.split('}').next().unwrap_or_default().split(',') {
                if let Some((key, _)) = pair.split_once('=') {
                    labels.insert(key.trim().to_owned());
                }
            }
        }
    }
    out
}

/// Every PromQL expression of the rules and the dashboard.
fn expressions() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/monitoring");
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let mut exprs: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(|e| e.trim_matches('\'').to_owned())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).unwrap())
            .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    exprs
}

/// The services' series names an expression reads (recording rules, with
/// a `:`, are the rules' own).
fn names_in(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            !w.contains(':')
                && ["gateway_", "auth_", "policy_", "feed_"]
                    .iter()
                    .any(|p| w.starts_with(p))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_series_the_rules_and_the_dashboard_use_is_exported() {
    let stack = tokio::task::block_in_place(|| Stack::start(Backends::default()));
    let staff = stack.group_id("staff").await;
    let mona = stack.new_user("mona").await;
    stack.membership(&staff, "add", &mona).await;
    let token = stack.token("mona").await;
    stack
        .until(&token, (200, "Allow"), super::stack::A_SECOND)
        .await;
    assert_eq!(stack.verdicts("not-a-token").await.0, 401);

    let mut exported = BTreeMap::new();
    for which in [AUTHSERVER, SIDECAR, GATEWAY] {
        exported.extend(series(&stack.metrics(which).await));
    }
    let exprs = expressions();
    assert!(exprs.len() > 30, "{} expressions", exprs.len());
    for expr in &exprs {
        let names = names_in(expr);
        for name in &names {
            let labels = exported
                .get(*name)
                .unwrap_or_else(|| panic!("`{name}` is not exported (in `{expr}`)"));
            // Labels selected on this series.
            if let Some(selector) = expr
                .split(name)
                .nth(1)
                .and_then(|rest| rest.strip_prefix('{'))
            {
                for pair in selector.split('}').next().unwrap().split(',') {
                    let key = pair.split(['=', '!']).next().unwrap().trim();
                    assert!(
                        labels.contains(key),
                        "`{name}` has no label `{key}` (in `{expr}`)"
                    );
                }
            }
        }
        // Labels grouped by: each on some series the expression reads.
        for group in expr.split("by (").skip(1) {
            for key in group.split(')').next().unwrap().split(',') {
                let key = key.trim();
                assert!(
                    key == "le"
                        || names
                            .iter()
                            .any(|n| exported.get(*n).is_some_and(|l| l.contains(key))),
                    "no series of `{expr}` has the label `{key}`"
                );
            }
        }
    }
}
