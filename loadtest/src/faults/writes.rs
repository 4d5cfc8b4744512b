//! The writes made while faults happen, and the check afterwards that
//! every acknowledged one is still there: SCIM users (PostgreSQL, with
//! their audit events, and through the change feed in the sidecar's
//! directory) and the sidecar's stored entities (its entity file).
//!
//! Users are created inactive: a sidecar that has the user from the feed
//! refuses them even when the token claims the viewer role, one that
//! never heard of them allows it. That decision is how the feed's
//! delivery is checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::unix_now;

/// One write every this often, SCIM and entity in turn.
const EVERY: Duration = Duration::from_millis(100);
/// A write not answered by then is counted as unanswered: it may or may
/// not have happened, and was not acknowledged.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ScimUser,
    Entity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acknowledged,
    Refused(u16),
    Unanswered,
}

#[derive(Debug, Clone)]
pub struct Write {
    /// Unix seconds when it was sent.
    pub at: f64,
    pub kind: Kind,
    /// The SCIM id (once acknowledged) or the entity id.
    pub id: String,
    pub outcome: Outcome,
}

/// Where the writes go.
#[derive(Debug, Clone)]
pub struct Targets {
    pub issuer: String,
    pub scim_token: String,
    pub sidecar: String,
    pub sidecar_token: String,
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Write>>,
}

impl Writer {
    pub fn start(rt: &tokio::runtime::Runtime, targets: Targets) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = rt.spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default();
            let mut writes = Vec::new();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0.. {
                tick.tick().await;
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let write = if n % 2 == 0 {
                    scim_user(&http, &targets, n / 2).await
                } else {
                    entity(&http, &targets, n / 2).await
                };
                writes.push(write);
            }
            writes
        });
        Self { stop, task }
    }

    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Result<Vec<Write>, String> {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(self.task)
            .map_err(|e| format!("the writer failed: {e}"))
    }
}

async fn scim_user(http: &reqwest::Client, t: &Targets, n: u64) -> Write {
    let at = unix_now();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("faults-{n:06}"),
        "active": false,
    });
    let answer = http
        .post(format!("{}/scim/v2/Users", t.issuer))
        .bearer_auth(&t.scim_token)
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await;
    let (id, outcome) = match answer {
        Ok(r) if r.status() == 201 => match r.json::<Value>().await {
            Ok(v) => (
                v["id"].as_str().unwrap_or_default().to_owned(),
                Outcome::Acknowledged,
            ),
            Err(_) => (String::new(), Outcome::Unanswered),
        },
        Ok(r) => (String::new(), Outcome::Refused(r.status().as_u16())),
        Err(_) => (String::new(), Outcome::Unanswered),
    };
    Write {
        at,
        kind: Kind::ScimUser,
        id,
        outcome,
    }
}

async fn entity(http: &reqwest::Client, t: &Targets, n: u64) -> Write {
    let at = unix_now();
    let id = format!("faults-{n:06}");
    let body = json!({"attrs": {
        "owner": {"__entity": {"type": "App::User", "id": "alice"}},
        "department": "faults",
    }});
    let answer = http
        .put(format!("{}/v1/entities/App::Order/{id}", t.sidecar))
        .bearer_auth(&t.sidecar_token)
        .json(&body)
        .send()
        .await;
    let outcome = match answer {
        Ok(r) if r.status() == 200 => Outcome::Acknowledged,
        Ok(r) => Outcome::Refused(r.status().as_u16()),
        Err(_) => Outcome::Unanswered,
    };
    Write {
        at,
        kind: Kind::Entity,
        id,
        outcome,
    }
}

/// Every acknowledged write looked for after the faults, once everything
/// runs again. Missing ones are named.
pub async fn verify(
    t: &Targets,
    writes: &[Write],
    audited: &std::collections::HashSet<String>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let acked = |kind| {
        writes
            .iter()
            .filter(move |w| w.kind == kind && w.outcome == Outcome::Acknowledged)
    };
    let mut users_missing = Vec::new();
    let mut audit_missing = Vec::new();
    for w in acked(Kind::ScimUser) {
        let found = http
            .get(format!("{}/scim/v2/Users/{}", t.issuer, w.id))
            .bearer_auth(&t.scim_token)
            .send()
            .await
            .map_err(|e| format!("SCIM: {e}"))?;
        if found.status() != 200 {
            users_missing.push(w.id.clone());
        }
        if !audited.contains(&w.id) {
            audit_missing.push(w.id.clone());
        }
    }
    let mut entities_missing = Vec::new();
    for w in acked(Kind::Entity) {
        let found = http
            .get(format!("{}/v1/entities/App::Order/{}", t.sidecar, w.id))
            .bearer_auth(&t.sidecar_token)
            .send()
            .await
            .map_err(|e| format!("sidecar: {e}"))?;
        if found.status() != 200 {
            entities_missing.push(w.id.clone());
        }
    }
    let ids: Vec<&str> = acked(Kind::ScimUser).map(|w| w.id.as_str()).collect();
    let not_in_directory = not_in_directory(&http, t, &ids).await?;
    let count = |kind, outcome: fn(&Outcome) -> bool| {
        writes
            .iter()
            .filter(|w| w.kind == kind && outcome(&w.outcome))
            .count()
    };
    Ok(json!({
        "scim_users": {
            "sent": count(Kind::ScimUser, |_| true),
            "acknowledged": count(Kind::ScimUser, |o| *o == Outcome::Acknowledged),
            "unanswered": count(Kind::ScimUser, |o| *o == Outcome::Unanswered),
            "missing": users_missing,
            "audit_event_missing": audit_missing,
            "not_in_sidecar_directory": not_in_directory,
        },
        "entities": {
            "sent": count(Kind::Entity, |_| true),
            "acknowledged": count(Kind::Entity, |o| *o == Outcome::Acknowledged),
            "unanswered": count(Kind::Entity, |o| *o == Outcome::Unanswered),
            "missing": entities_missing,
        },
    }))
}

/// The users the sidecar's directory does not have (yet) after waiting
/// for the feed: those it allows as viewers although they are inactive.
async fn not_in_directory(
    http: &reqwest::Client,
    t: &Targets,
    ids: &[&str],
) -> Result<Vec<String>, String> {
    // The check means something only if an unknown user is allowed.
    if decide(http, t, "faults-never-provisioned").await? != "Allow" {
        return Err("the directory check is void: an unknown viewer is not allowed".into());
    }
    let mut waiting: Vec<&str> = ids.to_vec();
    for _ in 0..50 {
        let mut still = Vec::new();
        for id in waiting {
            if decide(http, t, id).await? != "Deny" {
                still.push(id);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(waiting.into_iter().map(str::to_owned).collect())
}

async fn decide(http: &reqwest::Client, t: &Targets, sub: &str) -> Result<String, String> {
    let body = json!({"method": "GET", "path": "/api/orders",
                      "claims": {"sub": sub, "roles": ["viewer"]}});
    let answer: Value = http
        .post(format!("{}/v1/check", t.sidecar))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("sidecar check: {e}"))?
        .json()
        .await
        .map_err(|e| format!("sidecar check: {e}"))?;
    Ok(answer["decision"].as_str().unwrap_or_default().to_owned())
}
