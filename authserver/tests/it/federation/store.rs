//! Federated links and mapped groups on both backends.

use authserver::model::{AuditEvent, FederatedLink};
use authserver::store::NewUser;

use crate::support::Stores;

fn link(user_id: &str) -> FederatedLink {
    FederatedLink {
        provider: "corp".into(),
        subject: "upstream-1".into(),
        user_id: user_id.into(),
        email: Some("Ursula@Example.com".into()),
        created_at: 100,
        last_used_at: None,
    }
}

#[tokio::test]
async fn links_are_unique_per_upstream_account_and_groups_follow_the_map() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let audit = AuditEvent::new(100, "test", "user.create");
        let ursula = store
            .create_user(
                &NewUser {
                    id: "u-ursula".into(),
                    username: "ursula".into(),
                    email: Some("ursula@example.com".into()),
                    link: Some(link("u-ursula")),
                    ..NewUser::default()
                },
                &audit,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .federated_user("corp", "upstream-1", 200)
                .await
                .unwrap(),
            Some(ursula.id.clone()),
            "{backend}"
        );
        assert_eq!(
            store
                .federated_user("corp", "upstream-2", 200)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .federated_user("other", "upstream-1", 200)
                .await
                .unwrap(),
            None,
            "{backend}: a subject is only unique at its provider"
        );
        let links = store.federated_links(&ursula.id).await.unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].last_used_at, Some(200));
        assert!(store.email_taken("URSULA@example.COM").await.unwrap());
        assert!(!store.email_taken("nobody@example.com").await.unwrap());

        // One upstream account, one local user.
        store
            .create_user(
                &NewUser {
                    id: "u-vera".into(),
                    username: "vera".into(),
                    ..NewUser::default()
                },
                &audit,
            )
            .await
            .unwrap();
        let taken = store
            .link_identity(
                &link("u-vera"),
                &AuditEvent::new(300, "u-vera", "federation.link"),
            )
            .await;
        assert!(
            matches!(taken, Err(authserver::store::StoreError::Conflict(_))),
            "{backend}: {taken:?}"
        );

        // Mapped groups: joined, created when missing, left when gone
        // upstream; unmapped memberships stay.
        let mapped = vec!["staff".to_owned(), "contractors".to_owned()];
        let event = AuditEvent::new(400, "federation:corp", "user.groups");
        assert!(
            store
                .set_federated_groups(&ursula.id, &mapped, &["contractors".to_owned()], &event)
                .await
                .unwrap()
        );
        let groups = |u: authserver::model::User| {
            let mut g = u.groups;
            g.sort();
            g
        };
        let now = store.user_by_id(&ursula.id).await.unwrap().unwrap();
        assert_eq!(groups(now), vec!["contractors".to_owned()], "{backend}");
        assert!(
            !store
                .set_federated_groups(&ursula.id, &mapped, &["contractors".to_owned()], &event)
                .await
                .unwrap(),
            "nothing changed the second time"
        );
        store
            .set_federated_groups(&ursula.id, &mapped, &["staff".to_owned()], &event)
            .await
            .unwrap();
        let now = store.user_by_id(&ursula.id).await.unwrap().unwrap();
        assert_eq!(groups(now), vec!["staff".to_owned()], "{backend}");

        store
            .unlink_identity(
                &ursula.id,
                "corp",
                "upstream-1",
                &AuditEvent::new(500, "u", "federation.unlink"),
            )
            .await
            .unwrap();
        assert!(store.federated_links(&ursula.id).await.unwrap().is_empty());
        let again = store
            .unlink_identity(
                &ursula.id,
                "corp",
                "upstream-1",
                &AuditEvent::new(500, "u", "federation.unlink"),
            )
            .await;
        assert!(matches!(
            again,
            Err(authserver::store::StoreError::NotFound(_))
        ));
    }
    stores.cleanup().await;
}
