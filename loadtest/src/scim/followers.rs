//! The followers of the change feed: sidecars with the demo policies,
//! and how long a SCIM group change takes to change their decisions.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::Process;

use super::{GIVE_UP, Options, PATCH, POLL, Scim, TARGET_GROUP, Xorshift, summary};
use crate::procs::{self, free_addr};

pub(super) struct Follower {
    pub(super) proc: Process,
    check: String,
}

/// Sidecars following the feed with the demo policies, each ready once
/// it has applied the snapshot.
pub(super) fn start(
    bin: &Path,
    dir: &Path,
    issuer: &str,
    token: &str,
    n: usize,
) -> Result<Vec<Follower>, String> {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let config = dir.join("sidecar.toml");
    let text = format!(
        "log_level = \"warn\"\nworkers = 1\n[decision_log]\nenabled = false\n[feed]\nurl = {}\ntoken = {}\n",
        json!(issuer),
        json!(token)
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let mut followers = Vec::with_capacity(n);
    for i in 0..n {
        let (http, grpc) = (free_addr()?, free_addr()?);
        let proc = procs::spawn(
            &format!("sidecar {i}"),
            bin,
            &[
                "sidecar",
                "serve",
                "--config",
                &config.display().to_string(),
                "--policies",
                &policies.display().to_string(),
                "--http",
                &http.to_string(),
                "--grpc",
                &grpc.to_string(),
            ],
            &[],
        )?;
        followers.push(Follower {
            proc,
            check: format!("http://{http}/v1/check"),
        });
    }
    Ok(followers)
}

/// Waits until every follower is ready (its snapshot applied).
async fn all_ready(followers: &mut [Follower]) -> Result<Duration, String> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    for f in followers.iter_mut() {
        let ready = f.check.replace("/v1/check", "/readyz");
        loop {
            match http.get(&ready).send().await {
                Ok(r) if r.status() == 200 => break,
                _ if f.proc.has_exited() => {
                    return Err(format!("{} exited: {:?}", f.proc.name(), f.proc.stderr()));
                }
                _ if started.elapsed() > Duration::from_secs(600) => {
                    return Err(format!("{}: not ready after 600 s", f.proc.name()));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(started.elapsed())
}

/// The watched decision for user `id` at one follower.
async fn decision(http: &reqwest::Client, check: &str, id: &str) -> Result<String, String> {
    let body =
        json!({"method": "GET", "path": "/api/orders", "claims": {"sub": id, "scope": "openid"}});
    let answer: Value = http
        .post(check)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{check}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{check}: {e}"))?;
    Ok(answer["decision"].as_str().unwrap_or_default().to_owned())
}

/// Asks every `POLL` until the follower answers `want`; the time since
/// `sent`, or `None` past `GIVE_UP`.
async fn reached(
    http: reqwest::Client,
    check: String,
    id: String,
    want: &'static str,
    sent: Instant,
) -> Option<Duration> {
    loop {
        if decision(&http, &check, &id).await.ok().as_deref() == Some(want) {
            return Some(sent.elapsed());
        }
        if sent.elapsed() > GIVE_UP {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SCIM change → first decision reflecting it, at every follower.
pub(super) async fn propagation(
    scim: &Scim,
    followers: &mut [Follower],
    ids: &[String],
    opts: &Options,
) -> Result<Value, String> {
    let ready = all_ready(followers).await?;
    let target = scim.group_id(TARGET_GROUP).await?;
    let http = reqwest::Client::new();
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let (mut samples, mut writes, mut lost) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..opts.rounds {
        let i = loop {
            let i = rng.below(opts.users);
            if !i.is_multiple_of(opts.groups) {
                break i;
            }
        };
        let id = ids[i].clone();
        for f in followers.iter() {
            let before = decision(&http, &f.check, &id).await?;
            if before != "Deny" {
                return Err(format!("user-{i:06} outside {TARGET_GROUP}: {before}"));
            }
        }
        for (op, want) in [("add", "Allow"), ("remove", "Deny")] {
            let change = match op {
                "add" => json!({"op": "add", "path": "members", "value": [{"value": id}]}),
                _ => json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}),
            };
            let body = json!({"schemas": [PATCH], "Operations": [change]});
            let sent = Instant::now();
            scim.send("PATCH", &format!("/Groups/{target}"), Some(&body))
                .await?;
            writes.push(sent.elapsed().as_secs_f64() * 1e3);
            let mut waits = tokio::task::JoinSet::new();
            for f in followers.iter() {
                waits.spawn(reached(
                    http.clone(),
                    f.check.clone(),
                    id.clone(),
                    want,
                    sent,
                ));
            }
            while let Some(r) = waits.join_next().await {
                match r.map_err(|e| e.to_string())? {
                    Some(d) => samples.push(d.as_secs_f64() * 1e3),
                    None => lost += 1,
                }
            }
            // Out of step with the followers' polls and the feed's timers.
            tokio::time::sleep(Duration::from_millis(100 + rng.below(100) as u64)).await;
        }
    }
    Ok(json!({
        "change_to_decision": summary(samples),
        "scim_write": summary(writes),
        "lost": lost,
        "poll_ms": POLL.as_millis() as u64,
        "followers_ready_seconds": (ready.as_secs_f64() * 10.0).round() / 10.0,
    }))
}
