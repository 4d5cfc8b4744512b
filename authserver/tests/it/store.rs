//! One suite, every durable backend.

use authserver::model::{AuditEvent, Client, ClientAuth, KeyState, MfaPolicy, StoredKey};
use authserver::store::{NewUser, StoreError};
use serde_json::json;

use crate::support::Stores;

fn alice() -> NewUser {
    NewUser {
        id: "u-alice".into(),
        username: "Alice".into(),
        email: Some("alice@example.com".into()),
        display_name: Some("Alice A.".into()),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        roles: vec!["auditor".into()],
        groups: vec!["staff".into(), "editors".into()],
        link: None,
    }
}

fn web_client() -> Client {
    Client {
        id: "web".into(),
        name: "Web app".into(),
        secret_digest: Some(vec![1, 2, 3, 255]),
        auth_method: ClientAuth::ClientSecretBasic,
        redirect_uris: vec!["http://127.0.0.1:3000/callback".into()],
        post_logout_redirect_uris: vec!["http://127.0.0.1:3000/".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid".into(), "profile".into()],
        jwks: None,
        require_consent: true,
        introspect: true,
        mfa: MfaPolicy::Required,
        created_at: 1_700_000_000,
        backchannel_logout_uri: Some("https://app.example.com/backchannel-logout".into()),
    }
}

#[tokio::test]
async fn users_round_trip_with_groups_and_case_insensitive_names() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let created = store
            .create_user(
                &alice(),
                &AuditEvent::new(100, "admin", "user.create").target("u-alice"),
            )
            .await
            .unwrap();
        assert_eq!(created.username, "Alice", "{backend}");
        assert_eq!(created.groups, ["editors", "staff"], "{backend}");
        assert_eq!(created.roles, ["auditor"], "{backend}");
        assert!(!created.disabled);
        assert_eq!(created.created_at, 100);

        let found = store.user_by_username("  aLiCe ").await.unwrap().unwrap();
        assert_eq!(found, created, "{backend}");
        assert!(store.user_by_username("bob").await.unwrap().is_none());

        // The same name in another case is the same user.
        let mut twin = alice();
        twin.id = "u-other".into();
        twin.username = "ALICE".into();
        let err = store
            .create_user(&twin, &AuditEvent::new(101, "admin", "user.create"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");
        assert!(err.to_string().contains("ALICE"), "{backend}: {err}");
        // A second user joins an existing group.
        let bob = NewUser {
            id: "u-bob".into(),
            username: "bob".into(),
            groups: vec!["staff".into()],
            ..NewUser::default()
        };
        store
            .create_user(&bob, &AuditEvent::new(102, "admin", "user.create"))
            .await
            .unwrap();
        let page = store.users(0, 10).await.unwrap();
        let names: Vec<_> = page.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["Alice", "bob"], "{backend}");
        assert_eq!(store.users(1, 10).await.unwrap().len(), 1);
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn user_changes_are_audited_in_the_same_transaction() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        store
            .create_user(
                &alice(),
                &AuditEvent::new(100, "admin", "user.create").target("u-alice"),
            )
            .await
            .unwrap();
        store
            .set_password(
                "u-alice",
                "$argon2id$new",
                &AuditEvent::new(110, "u-alice", "user.password"),
            )
            .await
            .unwrap();
        store
            .set_disabled(
                "u-alice",
                true,
                &AuditEvent::new(120, "admin", "user.disable"),
            )
            .await
            .unwrap();
        let user = store.user_by_id("u-alice").await.unwrap().unwrap();
        assert_eq!(user.password_hash.as_deref(), Some("$argon2id$new"));
        assert!(user.disabled);
        assert_eq!(user.updated_at, 120);

        // A change to nothing writes nothing, audit included.
        let err = store
            .set_disabled(
                "u-ghost",
                true,
                &AuditEvent::new(130, "admin", "user.disable"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{backend}: {err}");
        // A failed insert (duplicate) rolls its audit event back too.
        store
            .create_user(&alice(), &AuditEvent::new(140, "admin", "user.create.dup"))
            .await
            .unwrap_err();

        store
            .audit(
                &AuditEvent::new(150, "anonymous", "login.failure")
                    .failed()
                    .source(Some("10.0.0.9".parse().unwrap()))
                    .client("web")
                    .detail(json!({"username": "a***e"})),
            )
            .await
            .unwrap();
        store
            .delete_user("u-alice", &AuditEvent::new(160, "admin", "user.delete"))
            .await
            .unwrap();
        assert!(store.user_by_id("u-alice").await.unwrap().is_none());

        let events = store.audit_events(10).await.unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "user.delete",
                "login.failure",
                "user.disable",
                "user.password",
                "user.create"
            ],
            "{backend}"
        );
        let failure = &events[1];
        assert_eq!(failure.outcome, "failure");
        assert_eq!(failure.source_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(failure.client_id.as_deref(), Some("web"));
        assert_eq!(failure.detail, json!({"username": "a***e"}));
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn clients_round_trip() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let client = web_client();
        store
            .create_client(&client, &AuditEvent::new(1, "admin", "client.create"))
            .await
            .unwrap();
        assert_eq!(
            store.client("web").await.unwrap().unwrap(),
            client,
            "{backend}"
        );
        let err = store
            .create_client(&client, &AuditEvent::new(2, "admin", "client.create"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");

        let spa = Client {
            id: "spa".into(),
            secret_digest: None,
            auth_method: ClientAuth::None,
            ..web_client()
        };
        store
            .create_client(&spa, &AuditEvent::new(3, "admin", "client.create"))
            .await
            .unwrap();
        let ids: Vec<_> = store
            .clients()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["spa", "web"]);
        assert!(store.client("spa").await.unwrap().unwrap().is_public());

        store
            .set_client_secret(
                "web",
                &[9; 32],
                &AuditEvent::new(4, "admin", "client.secret"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.client("web").await.unwrap().unwrap().secret_digest,
            Some(vec![9; 32])
        );
        store
            .delete_client("spa", &AuditEvent::new(5, "admin", "client.delete"))
            .await
            .unwrap();
        assert!(store.client("spa").await.unwrap().is_none());
        assert!(matches!(
            store
                .delete_client("spa", &AuditEvent::new(6, "admin", "client.delete"))
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn key_rotation_is_one_transaction() {
    let stores = Stores::new().await;
    let key = |kid: &str, state| StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        sealed_private_key: vec![0xAB; 48],
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        state,
        created_at: 10,
        activated_at: None,
        retired_at: None,
    };
    for (backend, store) in &stores.all {
        let audit = |at| AuditEvent::new(at, "admin", "keys.rotate");
        store
            .rotate_keys(&[key("k1", KeyState::Next)], &[], &[], &audit(10))
            .await
            .unwrap();
        store
            .rotate_keys(
                &[key("k2", KeyState::Next)],
                &[("k1".into(), KeyState::Active)],
                &[],
                &audit(20),
            )
            .await
            .unwrap();
        store
            .rotate_keys(
                &[],
                &[
                    ("k1".into(), KeyState::Retired),
                    ("k2".into(), KeyState::Active),
                ],
                &[],
                &audit(30),
            )
            .await
            .unwrap();
        let keys = store.keys().await.unwrap();
        assert_eq!(keys.len(), 2, "{backend}");
        assert_eq!(
            (keys[0].state, keys[0].activated_at, keys[0].retired_at),
            (KeyState::Retired, Some(20), Some(30))
        );
        assert_eq!(
            (keys[1].state, keys[1].activated_at),
            (KeyState::Active, Some(30))
        );
        assert_eq!(keys[1].sealed_private_key, vec![0xAB; 48]);

        // A duplicate kid fails the whole rotation: k2 stays active.
        let err = store
            .rotate_keys(
                &[key("k1", KeyState::Next)],
                &[("k2".into(), KeyState::Retired)],
                &[],
                &audit(40),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");
        assert_eq!(store.keys().await.unwrap()[1].state, KeyState::Active);

        // A move from a state the key is no longer in (a rotation that lost
        // a race) is a conflict, and writes nothing.
        let err = store
            .rotate_keys(
                &[key("k3", KeyState::Next)],
                &[("k2".into(), KeyState::Active)],
                &[],
                &audit(45),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");
        assert!(store.keys().await.unwrap().iter().all(|k| k.kid != "k3"));
        store
            .rotate_keys(&[], &[], &["k1".into()], &audit(50))
            .await
            .unwrap();
        let kids: Vec<_> = store
            .keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, ["k2"]);
        let rotations = store
            .audit_events(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "keys.rotate")
            .count();
        assert_eq!(
            rotations, 4,
            "{backend}: the failed rotation left no audit event"
        );
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn consents_accumulate_and_go_with_the_user() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        store
            .create_user(&alice(), &AuditEvent::new(1, "admin", "user.create"))
            .await
            .unwrap();
        store
            .create_client(&web_client(), &AuditEvent::new(1, "admin", "client.create"))
            .await
            .unwrap();
        assert!(store.consent("u-alice", "web").await.unwrap().is_empty());
        let grant = |scopes: &[&str]| scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store
            .grant_consent(
                "u-alice",
                "web",
                &grant(&["openid", "profile"]),
                &AuditEvent::new(2, "u-alice", "consent.grant"),
            )
            .await
            .unwrap();
        store
            .grant_consent(
                "u-alice",
                "web",
                &grant(&["email", "openid"]),
                &AuditEvent::new(3, "u-alice", "consent.grant"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.consent("u-alice", "web").await.unwrap(),
            ["email", "openid", "profile"],
            "{backend}"
        );
        store
            .delete_user("u-alice", &AuditEvent::new(4, "admin", "user.delete"))
            .await
            .unwrap();
        assert!(
            store.consent("u-alice", "web").await.unwrap().is_empty(),
            "{backend}"
        );
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn bad_urls_are_named_and_redacted() {
    let err = authserver::store::Store::connect("mysql://root:hunter2@db/auth")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
    assert!(err.contains("root:***@db"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn retired_keys_stay_published_until_their_tokens_expire() {
    use authserver::crypto::MasterKey;
    use authserver::keys::KeyRing;
    use std::time::Duration;

    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let (master, _) = MasterKey::generate().unwrap();
        let ring = KeyRing::open(
            store.clone(),
            master.sealer(),
            jsonwebtoken::Algorithm::ES256,
            Duration::from_secs(10),
            Duration::ZERO,
            1000,
        )
        .await
        .unwrap();
        let kids = |ring: &KeyRing| {
            let jwks: serde_json::Value = serde_json::from_str(&ring.current().jwks).unwrap();
            let mut k: Vec<String> = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect();
            k.sort();
            k
        };
        let first = ring.current().signer.kid().to_owned();
        let r1 = ring
            .rotate(1000, authserver::model::Actor::local("test"), false)
            .await
            .unwrap();
        assert_eq!(r1.retired, std::slice::from_ref(&first));
        assert_eq!(ring.current().signer.kid(), r1.active, "{backend}");
        let r2 = ring
            .rotate(1005, authserver::model::Actor::local("test"), false)
            .await
            .unwrap();
        assert!(
            r2.removed.is_empty(),
            "{backend}: the first key's tokens may still be valid"
        );
        assert!(kids(&ring).contains(&first));
        let r3 = ring
            .rotate(1011, authserver::model::Actor::local("test"), false)
            .await
            .unwrap();
        assert_eq!(r3.removed, std::slice::from_ref(&first), "{backend}");
        assert!(!kids(&ring).contains(&first));
        // A second instance with the same master key reads the same ring.
        let other = KeyRing::open(
            store.clone(),
            master.sealer(),
            jsonwebtoken::Algorithm::ES256,
            Duration::from_secs(10),
            Duration::from_secs(30),
            1012,
        )
        .await
        .unwrap();
        assert_eq!(other.current().signer.kid(), r3.active);
        assert_eq!(kids(&other), kids(&ring));
        // Its next key was published at 1011: too recent to sign at 1020
        // with a 30 s lead, unless forced.
        let err = other
            .rotate(1020, authserver::model::Actor::local("test"), false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("published 9 s ago") && err.contains("wait 21 s"),
            "{backend}: {err}"
        );
        assert!(
            other
                .rotate(1020, authserver::model::Actor::local("test"), true)
                .await
                .is_ok()
        );
        // Another master key cannot unseal it: a clear error, not a panic.
        let (wrong, _) = MasterKey::generate().unwrap();
        let err = KeyRing::open(
            store.clone(),
            wrong.sealer(),
            jsonwebtoken::Algorithm::ES256,
            Duration::from_secs(10),
            Duration::from_secs(30),
            1012,
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("does not open with this master key"), "{err}");
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn audit_batches_commit_together() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let events: Vec<AuditEvent> = (0..600)
            .map(|i| {
                AuditEvent::new(i, format!("client:c{i}"), "token.issue")
                    .client(format!("c{i}"))
                    .detail(json!({"n": i}))
            })
            .collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        store.audit_all(&refs).await.unwrap();
        let back = store.audit_events(1000).await.unwrap();
        assert_eq!(back.len(), 600, "{backend}");
        assert_eq!(
            back[0], events[599],
            "{backend}: newest first, fields intact"
        );
        assert_eq!(back[599], events[0], "{backend}");
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn scim_prefix_filters_take_the_value_literally() {
    use authserver::scim::filter::{attr_path, parse};
    use authserver::store::ScimQuery;
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        for (i, name) in ["a_b", "axb", "A%c", "ayc", "a\\d", "a\\\\d"]
            .iter()
            .enumerate()
        {
            let user = NewUser {
                id: format!("u-{i}"),
                username: (*name).into(),
                ..NewUser::default()
            };
            store
                .create_user(&user, &AuditEvent::new(100, "admin", "user.create"))
                .await
                .unwrap();
        }
        for (prefix, want) in [
            ("a_", vec!["a_b"]),
            ("a%", vec!["A%c"]),
            ("A", vec!["A%c", "a\\\\d", "a\\d", "a_b", "axb", "ayc"]),
            ("a\\d", vec!["a\\d"]),
            ("a\\", vec!["a\\\\d", "a\\d"]),
        ] {
            let filter = format!("userName sw \"{}\"", prefix.replace('\\', "\\\\"));
            let q = ScimQuery {
                filter: Some(parse(&filter).unwrap()),
                sort_by: Some(attr_path("userName").unwrap()),
                descending: false,
                start_index: 1,
                count: 10,
            };
            let (total, users) = store.scim_users(&q).await.unwrap();
            // Which, not in which order (that is the database's collation).
            let mut names: Vec<&str> = users.iter().map(|u| u.doc.user_name.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, want, "{backend}: {filter}");
            assert_eq!(total, want.len() as i64, "{backend}: {filter}");
        }
    }
    stores.cleanup().await;
}
