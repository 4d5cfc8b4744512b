//! The change feed end to end: an authserver, a sidecar and a gateway run
//! as `portcullis up` runs them (each its own process, here on ephemeral
//! ports), a SCIM client changing users and groups, and what the sidecar
//! and the gateway decide a second later, with each of the three restarted
//! in the middle. On SQLite with in-process state, and on PostgreSQL with
//! Redis (the authserver's short-lived state and the gateway's sessions).

mod federated;
mod monitoring;
mod replicas;
mod stack;
mod traces;

use std::time::Duration;

use stack::{A_SECOND, AUTHSERVER, Backends, GATEWAY, PASSWORD, SIDECAR, Stack};

use crate::signin::{Browser, through_the_authserver_as};

const ALLOWED: (u16, &str) = (200, "Allow");
const DENIED: (u16, &str) = (403, "Deny");
const REVOKED: (u16, &str) = (401, "401");

/// The whole story on one pair of backends.
async fn follow_the_directory(backends: Backends) {
    let mut stack = tokio::task::block_in_place(|| Stack::start(backends));
    let staff = stack.group_id("staff").await;
    let frank = stack.new_user("frank").await;
    let token = stack.token("frank").await;
    stack.until(&token, DENIED, A_SECOND).await;

    // Added to a group the policies let read orders: allowed within a
    // second, with the token issued before (its `groups` claim is empty).
    stack.membership(&staff, "add", &frank).await;
    let took = stack.until(&token, ALLOWED, A_SECOND).await;
    eprintln!("group add → decision: {took:?}");

    // Removed while the sidecar is down: the restarted sidecar starts from
    // a snapshot that has it.
    tokio::task::block_in_place(|| stack.kill(SIDECAR));
    stack.membership(&staff, "remove", &frank).await;
    tokio::task::block_in_place(|| stack.restart(SIDECAR));
    stack.until(&token, DENIED, A_SECOND).await;
    stack.membership(&staff, "add", &frank).await;
    let took = stack.until(&token, ALLOWED, A_SECOND).await;
    eprintln!("group add → decision after a sidecar restart: {took:?}");

    // The authserver restarted: a change made as it comes back reaches
    // both from their cursors (no new snapshot), and the next within a
    // second.
    tokio::task::block_in_place(|| stack.restart(AUTHSERVER));
    stack.membership(&staff, "remove", &frank).await;
    stack.until(&token, DENIED, Duration::from_secs(5)).await;
    assert_eq!(stack.metric(SIDECAR, "feed_snapshots_total").await, 1.0);
    assert_eq!(stack.metric(GATEWAY, "feed_snapshots_total").await, 1.0);
    stack.membership(&staff, "add", &frank).await;
    let took = stack.until(&token, ALLOWED, A_SECOND).await;
    eprintln!("group add → decision after an authserver restart: {took:?}");

    // Deactivated: the still-valid token is refused by the gateway (and
    // the sidecar, which verifies tokens too) within a second, and so is
    // the user's browser session at the gateway.
    let grace = stack.new_user("grace").await;
    stack.membership(&staff, "add", &grace).await;
    let grace_token = stack.token("grace").await;
    stack.until(&grace_token, ALLOWED, A_SECOND).await;
    let mut browser = Browser::new();
    let app = format!("http://{}/app/page", stack.gateway);
    let first = browser.page(&app).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let callback = through_the_authserver_as(
        &mut browser,
        &stack.issuer,
        &first.location(),
        "grace",
        PASSWORD,
    )
    .await;
    assert_eq!(browser.page(&callback).await.status, 302);
    assert_eq!(browser.page(&app).await.status, 200, "signed in");
    stack.set_active(&grace, false).await;
    let took = stack.until(&grace_token, REVOKED, A_SECOND).await;
    eprintln!("deactivation → token refused: {took:?}");
    let page = browser.page(&app).await;
    assert_eq!(page.status, 302, "the session ended: {}", page.body);
    assert!(
        page.location().starts_with(&stack.issuer),
        "{}",
        page.location()
    );

    // Deactivated while the gateway is down: the restarted gateway refuses
    // the token from its first request.
    tokio::task::block_in_place(|| stack.kill(GATEWAY));
    stack.set_active(&frank, false).await;
    tokio::task::block_in_place(|| stack.restart(GATEWAY));
    // The sidecar, not restarted, learns it from the feed a moment later.
    assert_eq!(
        stack.verdicts(&token).await.0,
        401,
        "the gateway's first answer"
    );
    stack.until(&token, REVOKED, A_SECOND).await;
    // Active again, the user signs in afresh; the old token stays refused.
    // Its session did not outlive the authserver's restart (in-process
    // state), so the feed refuses it by `iat`, which counts whole seconds:
    // the reactivation must fall in a later second than the token's issue.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    tokio::time::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second))).await;
    stack.set_active(&frank, true).await;
    let fresh = stack.token("frank").await;
    stack.until(&fresh, ALLOWED, A_SECOND).await;
    assert_eq!(stack.verdicts(&token).await.0, 401);
}

/// The authserver gone past `stale_after_seconds`: both fail closed for
/// its tokens (503, not ready, `feed_stale` 1) and recover when it is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_feed_fails_closed_and_recovers() {
    let keys = "wait_seconds = 1\nstale_after_seconds = 2";
    let mut stack = tokio::task::block_in_place(|| Stack::start_with(Backends::default(), keys));
    let staff = stack.group_id("staff").await;
    let heidi = stack.new_user("heidi").await;
    stack.membership(&staff, "add", &heidi).await;
    let token = stack.token("heidi").await;
    stack.until(&token, ALLOWED, A_SECOND).await;
    assert_eq!(stack.metric(SIDECAR, "feed_stale").await, 0.0);

    tokio::task::block_in_place(|| stack.kill(AUTHSERVER));
    let unavailable = (503, "503");
    let took = stack
        .until(&token, unavailable, Duration::from_secs(10))
        .await;
    eprintln!("authserver gone → fail closed after {took:?}");
    for which in [SIDECAR, GATEWAY] {
        assert_eq!(stack.metric(which, "feed_stale").await, 1.0, "{which}");
        assert_eq!(stack.readiness(which).await, 503, "{which}");
    }

    tokio::task::block_in_place(|| stack.restart(AUTHSERVER));
    stack.until(&token, ALLOWED, Duration::from_secs(10)).await;
    for which in [SIDECAR, GATEWAY] {
        assert_eq!(stack.metric(which, "feed_stale").await, 0.0, "{which}");
        assert_eq!(stack.readiness(which).await, 200, "{which}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_changes_reach_the_edge_on_sqlite_in_process() {
    follow_the_directory(Backends::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_changes_reach_the_edge_on_postgres_and_redis() {
    let Some(redis) = testkit::redis_url() else {
        return;
    };
    let Some(database) = crate::support::fresh_database("pc_feed") else {
        return;
    };
    follow_the_directory(Backends {
        database_url: Some(database.url.clone()),
        redis_url: Some(redis),
    })
    .await;
    drop(database);
}
