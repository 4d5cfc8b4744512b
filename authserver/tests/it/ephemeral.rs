//! One suite, every ephemeral backend.

use std::time::Duration;

use authserver::ephemeral::Ephemeral;

use crate::support::ephemerals;

/// Waits (with a deadline) until `key` has expired.
async fn expired(store: &Ephemeral, key: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.get(key).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "`{key}` never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn values_expire_and_take_is_single_use() {
    for (backend, store) in ephemerals().await {
        store
            .put("k", b"one", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.get("k").await.unwrap().as_deref(),
            Some(&b"one"[..]),
            "{backend}"
        );
        store
            .put("k", b"two", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.take("k").await.unwrap().as_deref(),
            Some(&b"two"[..]),
            "{backend}"
        );
        assert_eq!(
            store.take("k").await.unwrap(),
            None,
            "{backend}: taken twice"
        );
        assert_eq!(store.get("missing").await.unwrap(), None);

        store
            .put("short", b"x", Duration::from_millis(150))
            .await
            .unwrap();
        store
            .put("binary", &[0, 255, 10, 13], Duration::from_secs(60))
            .await
            .unwrap();
        expired(&store, "short").await;
        assert_eq!(
            store.get("short").await.unwrap(),
            None,
            "{backend}: expired"
        );
        assert_eq!(
            store.take("short").await.unwrap(),
            None,
            "{backend}: expired"
        );
        assert_eq!(
            store.get("binary").await.unwrap().as_deref(),
            Some(&[0, 255, 10, 13][..]),
            "{backend}"
        );
        store.delete("binary").await.unwrap();
        assert_eq!(store.get("binary").await.unwrap(), None, "{backend}");
    }
}

#[tokio::test]
async fn put_new_refuses_a_live_key_only() {
    for (backend, store) in ephemerals().await {
        let ttl = Duration::from_millis(200);
        assert!(store.put_new("jti", b"1", ttl).await.unwrap(), "{backend}");
        assert!(
            !store.put_new("jti", b"2", ttl).await.unwrap(),
            "{backend}: replay"
        );
        assert_eq!(store.get("jti").await.unwrap().as_deref(), Some(&b"1"[..]));
        expired(&store, "jti").await;
        assert!(
            store.put_new("jti", b"3", ttl).await.unwrap(),
            "{backend}: expired"
        );
    }
}

#[tokio::test]
async fn concurrent_takers_get_one_value() {
    for (backend, store) in ephemerals().await {
        for round in 0..20 {
            let key = format!("code-{round}");
            store
                .put(&key, b"v", Duration::from_secs(60))
                .await
                .unwrap();
            let takers: Vec<_> = (0..8)
                .map(|_| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move { store.take(&key).await.unwrap().is_some() })
                })
                .collect();
            let mut won = 0;
            for t in takers {
                won += usize::from(t.await.unwrap());
            }
            assert_eq!(won, 1, "{backend}: round {round}");
        }
    }
}

#[tokio::test]
async fn sliding_windows_count_recent_events() {
    for (backend, store) in ephemerals().await {
        let w = Duration::from_secs(10);
        let t0 = 1_000_000;
        assert_eq!(store.hits("login:a", w, t0).await.unwrap(), 0, "{backend}");
        // Two events in the same millisecond both count.
        assert_eq!(store.hit("login:a", w, t0).await.unwrap(), 1, "{backend}");
        assert_eq!(store.hit("login:a", w, t0).await.unwrap(), 2, "{backend}");
        assert_eq!(store.hit("login:a", w, t0 + 4_000).await.unwrap(), 3);
        assert_eq!(
            store.hits("login:a", w, t0 + 9_999).await.unwrap(),
            3,
            "{backend}"
        );
        // The first two slide out; counting does not add.
        assert_eq!(
            store.hits("login:a", w, t0 + 10_000).await.unwrap(),
            1,
            "{backend}"
        );
        assert_eq!(
            store.hits("login:a", w, t0 + 10_000).await.unwrap(),
            1,
            "{backend}"
        );
        assert_eq!(
            store.hit("login:a", w, t0 + 14_001).await.unwrap(),
            1,
            "{backend}"
        );
        // Windows are per key; deleting resets one.
        assert_eq!(store.hit("login:b", w, t0).await.unwrap(), 1, "{backend}");
        store.delete("login:b").await.unwrap();
        assert_eq!(store.hits("login:b", w, t0).await.unwrap(), 0, "{backend}");
    }
}

#[tokio::test]
async fn sets_hold_members_until_removed_or_expired() {
    for (backend, store) in ephemerals().await {
        let long = Duration::from_secs(60);
        store
            .add_member("user-sessions:u1", "a", long)
            .await
            .unwrap();
        store
            .add_member("user-sessions:u1", "b", long)
            .await
            .unwrap();
        store
            .add_member("user-sessions:u1", "a", long)
            .await
            .unwrap();
        store
            .add_member("user-sessions:u2", "c", long)
            .await
            .unwrap();
        let mut members = store.members("user-sessions:u1").await.unwrap();
        members.sort();
        assert_eq!(members, ["a", "b"], "{backend}");
        assert!(
            store.remove_member("user-sessions:u1", "a").await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.remove_member("user-sessions:u1", "a").await.unwrap(),
            "{backend}: removed twice"
        );
        assert_eq!(store.members("user-sessions:u1").await.unwrap(), ["b"]);
        assert!(store.members("missing").await.unwrap().is_empty());

        // A short addition does not shorten the set's life; the set
        // expires after its longest member's time.
        store
            .add_member("short", "x", Duration::from_millis(150))
            .await
            .unwrap();
        store
            .add_member("short", "y", Duration::from_millis(600))
            .await
            .unwrap();
        store
            .add_member("short", "z", Duration::from_millis(100))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            store.members("short").await.unwrap().len(),
            3,
            "{backend}: the set lives as long as its longest addition"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !store.members("short").await.unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: never expired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.delete("user-sessions:u2").await.unwrap();
        assert!(store.members("user-sessions:u2").await.unwrap().is_empty());
    }
}
