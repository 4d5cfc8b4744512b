//! The change feed through the real server: access, snapshot, long polls
//! that wake on a change, kinds, revocations of users, sessions and
//! tokens, and the horizon past which a follower must start again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::flow::{VERIFIER, WEB_REDIRECT, authorize_url, consent, exchange, log_in, password};
use crate::scim::{Scim, USER, cli};

struct Follower<'a> {
    scim: &'a Scim,
    token: String,
}

impl Follower<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .scim
            .server
            .http
            .get(self.scim.server.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn changes(&self, after: i64, query: &str) -> Value {
        let (status, page) = self
            .get(&format!("/feed/v1/changes?after={after}{query}"))
            .await;
        assert_eq!(status, 200, "{page}");
        page
    }
}

fn follower(scim: &Scim) -> Follower<'_> {
    let token = cli(
        &scim.server,
        &[],
        &["token", "add", "sidecar", "--scope", "feed"],
    );
    Follower { scim, token }
}

#[tokio::test]
async fn followers_need_the_feed_scope() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let http = &scim.server.http;
    let url = scim.server.url("/feed/v1/changes?after=0");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let scim_only = http
        .get(&url)
        .bearer_auth(&scim.token)
        .send()
        .await
        .unwrap();
    assert_eq!(scim_only.status(), 403);
    let f = follower(&scim);
    let (status, err) = f.get("/feed/v1/changes?after=-1").await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = f.get("/feed/v1/changes?after=0&kinds=gossip").await;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("`gossip`"));
}

#[tokio::test]
async fn a_follower_starts_from_a_snapshot_and_long_polls_for_changes() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let f = follower(&scim);
    let (status, snap) = f.get("/feed/v1/snapshot").await;
    assert_eq!(status, 200, "{snap}");
    let cursor = snap["cursor"].as_i64().unwrap();
    let entities = snap["entities"].as_array().unwrap();
    let demo = entities
        .iter()
        .find(|e| e["entity"] == "user" && e["attrs"]["userName"] == "demo")
        .unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(demo["groups"], json!(["editors", "staff"]));
    assert!(
        entities
            .iter()
            .any(|e| e["entity"] == "group" && e["id"] == "staff")
    );

    // Nothing new: a long poll waits, then answers with the same cursor.
    let started = Instant::now();
    let idle = f.changes(cursor, "&wait=1").await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        (
            idle["cursor"].as_i64(),
            idle["changes"].as_array().map(Vec::len)
        ),
        (Some(cursor), Some(0))
    );

    // A change wakes a waiting poll at once.
    let waiting = tokio::spawn({
        let url = scim
            .server
            .url(&format!("/feed/v1/changes?after={cursor}&wait=20"));
        let token = f.token.clone();
        async move {
            let started = Instant::now();
            let page: Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), page)
        }
    });
    // Changed only once the poll is parked (the server counts it).
    scim.server.until_metric("auth_feed_polls_waiting 1").await;
    let hana = scim
        .user(json!({"schemas": [USER], "userName": "hana", "title": "Engineer"}))
        .await;
    let (took, page) = waiting.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "woken by the change: {took:?}"
    );
    let change = &page["changes"][0];
    assert_eq!(change["kind"], "entity");
    assert_eq!(change["body"]["id"], hana["id"]);
    assert_eq!(change["body"]["attrs"]["title"], "Engineer");
    assert_eq!(change["body"]["active"], true);
    assert!(page["cursor"].as_i64().unwrap() > cursor);

    // Kinds: a gateway follows revocations only.
    let after_create = page["cursor"].as_i64().unwrap();
    let id = hana["id"].as_str().unwrap();
    scim.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let revocations = f.changes(after_create, "&kinds=revocation").await;
    let kinds: Vec<&str> = revocations["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["revocation"]);
    assert_eq!(
        revocations["changes"][0]["body"],
        json!({"revocation": "user", "sub": id, "revoked": true})
    );
    let everything = f.changes(after_create, "").await;
    assert_eq!(
        everything["changes"].as_array().unwrap().len(),
        2,
        "{everything}"
    );
    assert_eq!(everything["cursor"], revocations["cursor"]);
    // The snapshot now carries the revocation too.
    let (_, snap) = f.get("/feed/v1/snapshot?kinds=revocation").await;
    assert!(snap["entities"].as_array().unwrap().is_empty());
    assert!(
        snap["revocations"]
            .as_array()
            .unwrap()
            .contains(&json!({"revocation": "user", "sub": id, "revoked": true}))
    );
}

#[tokio::test]
async fn ended_sessions_and_revoked_tokens_reach_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let f = follower(&scim);
    let cursor = f.changes(0, "").await["cursor"].as_i64().unwrap();
    let mut browser = Browser::new(&scim.server.url(""));
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let page = log_in(&mut browser, &login, "demo", &password(&scim.server)).await;
    let back = consent(&mut browser, &page, "allow").await;
    let (_, tokens) = exchange(
        &scim.server,
        &back.redirect_param("code").unwrap(),
        VERIFIER,
    )
    .await;
    let access = crate::flow::claims_of(tokens["access_token"].as_str().unwrap());
    let sid = access["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid: {access}"))
        .to_owned();
    let id_token = crate::flow::claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["sid"], sid.as_str());

    // The client revokes its access token.
    let (web, secret) = scim.server.client("web");
    let (status, _, _) = scim
        .server
        .form(
            "/revoke",
            Some((&web, &secret)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, 200);
    // The user signs out: the session, and what its refresh tokens minted.
    let confirm = browser.get("/logout").await;
    browser
        .post("/logout", &[("csrf", &confirm.hidden("csrf"))])
        .await;

    let page = f.changes(cursor, "&kinds=revocation").await;
    let bodies: Vec<&Value> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["body"])
        .collect();
    assert!(
        bodies.iter().any(|b| b["revocation"] == "token"
            && b["jti"] == access["jti"]
            && b["exp"] == access["exp"]),
        "{page}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b["revocation"] == "session" && b["sid"] == sid.as_str()),
        "{page}"
    );
    let (_, snap) = f.get("/feed/v1/snapshot?kinds=revocation").await;
    assert!(
        snap["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sid"] == sid.as_str())
    );
    // The refresh token of the ended session is refused.
    let (status, _, _) = scim
        .server
        .form(
            "/token",
            Some((&web, &secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_follower_behind_the_horizon_is_told_to_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start_with(
        dir.path(),
        &[],
        &[("PORTCULLIS_AUTHSERVER__FEED__RETENTION_SECONDS", "2")],
    );
    let f = follower(&scim);
    scim.user(json!({"schemas": [USER], "userName": "ivan"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, answer) = f.get("/feed/v1/changes?after=0").await;
        if status == 410 {
            assert_eq!(answer["error"], "snapshot_required");
            assert!(answer["horizon"].as_i64().unwrap() > 0);
            break;
        }
        assert!(Instant::now() < deadline, "never pruned: {answer}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, snap) = f.get("/feed/v1/snapshot").await;
    let cursor = snap["cursor"].as_i64().unwrap();
    assert!(
        snap["entities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["attrs"]["userName"] == "ivan")
    );
    let (status, _) = f.get(&format!("/feed/v1/changes?after={cursor}")).await;
    assert_eq!(status, 200, "the snapshot's cursor is within the horizon");
}
