//! Second factors and recovery codes on every durable backend: single use
//! is enforced by the database, so it holds across replicas.

use authserver::model::{AuditEvent, FactorKind, MfaPolicy, SecondFactor};
use authserver::store::{NewUser, StoreError, UserChange};

use crate::support::Stores;

fn totp(id: &str, label: &str) -> SecondFactor {
    SecondFactor {
        id: id.into(),
        user_id: "u-1".into(),
        kind: FactorKind::Totp,
        label: label.into(),
        sealed_secret: Some(vec![1, 2, 3]),
        data: "{}".into(),
        credential_id: None,
        last_step: 100,
        created_at: 10,
        last_used_at: None,
    }
}

#[tokio::test]
async fn factors_are_named_uniquely_and_spent_once_per_step() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let user = NewUser {
            id: "u-1".into(),
            username: "carol".into(),
            ..NewUser::default()
        };
        store
            .create_user(&user, &AuditEvent::new(1, "test", "user.create"))
            .await
            .unwrap();
        let enrol = AuditEvent::new(10, "u-1", "mfa.totp.enrol");
        store
            .add_factor(&totp("f-1", "phone"), &enrol)
            .await
            .unwrap();
        let err = store
            .add_factor(&totp("f-2", "phone"), &enrol)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");
        store
            .add_factor(&totp("f-2", "tablet"), &enrol)
            .await
            .unwrap();
        let rename = AuditEvent::new(11, "u-1", "mfa.factor.rename");
        let err = store
            .rename_factor("u-1", "f-2", "phone", &rename)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend}: {err}");
        store
            .rename_factor("u-1", "f-2", "old phone", &rename)
            .await
            .unwrap();
        let factors = store.factors("u-1").await.unwrap();
        let labels: Vec<_> = factors.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["phone", "old phone"], "{backend}");
        assert_eq!(factors[0].sealed_secret.as_deref(), Some(&[1u8, 2, 3][..]));

        // A step is spent once; an earlier step never again.
        assert!(
            !store.spend_totp_step("f-1", 100, 20).await.unwrap(),
            "{backend}: enrolment's step"
        );
        assert!(
            store.spend_totp_step("f-1", 101, 20).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.spend_totp_step("f-1", 101, 21).await.unwrap(),
            "{backend}: replay"
        );
        assert!(
            !store.spend_totp_step("f-1", 99, 21).await.unwrap(),
            "{backend}: older"
        );
        let f1 = &store.factors("u-1").await.unwrap()[0];
        assert_eq!(
            (f1.last_step, f1.last_used_at),
            (101, Some(20)),
            "{backend}"
        );

        // Someone else's factor is not removed or renamed by id alone.
        let remove = AuditEvent::new(12, "u-2", "mfa.factor.remove");
        let err = store
            .remove_factor("u-2", "f-1", &remove)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{backend}: {err}");
        let codes: Vec<Vec<u8>> = (0u8..10).map(|i| vec![i; 32]).collect();
        let generate = AuditEvent::new(12, "u-1", "mfa.recovery.generate");
        store
            .replace_recovery_codes("u-1", &codes, &generate)
            .await
            .unwrap();
        store.remove_factor("u-1", "f-2", &remove).await.unwrap();
        assert_eq!(store.factors("u-1").await.unwrap().len(), 1);
        assert_eq!(
            store.recovery_codes_left("u-1").await.unwrap(),
            10,
            "{backend}: a factor is left, so are the codes"
        );
        // The last factor takes the recovery codes with it: they stand in
        // for a factor, not for a password.
        store.remove_factor("u-1", "f-1", &remove).await.unwrap();
        assert_eq!(
            store.recovery_codes_left("u-1").await.unwrap(),
            0,
            "{backend}"
        );
    }
    stores.cleanup().await;
}

#[tokio::test]
async fn recovery_codes_are_single_use_and_replaced_together() {
    let stores = Stores::new().await;
    for (backend, store) in &stores.all {
        let user = NewUser {
            id: "u-1".into(),
            username: "dave".into(),
            ..NewUser::default()
        };
        store
            .create_user(&user, &AuditEvent::new(1, "test", "user.create"))
            .await
            .unwrap();
        let digests: Vec<Vec<u8>> = (0u8..10).map(|i| vec![i; 32]).collect();
        let generate = AuditEvent::new(5, "u-1", "mfa.recovery.generate");
        store
            .replace_recovery_codes("u-1", &digests, &generate)
            .await
            .unwrap();
        assert_eq!(store.recovery_codes_left("u-1").await.unwrap(), 10);
        let used = AuditEvent::new(6, "u-1", "mfa.recovery.use");
        assert!(
            store
                .spend_recovery_code("u-1", &digests[3], &used)
                .await
                .unwrap()
        );
        assert!(
            !store
                .spend_recovery_code("u-1", &digests[3], &used)
                .await
                .unwrap(),
            "{backend}: a code works once"
        );
        assert!(
            !store
                .spend_recovery_code("u-2", &digests[4], &used)
                .await
                .unwrap()
        );
        assert_eq!(store.recovery_codes_left("u-1").await.unwrap(), 9);
        // Each use is audited with the spend; a refused one writes nothing.
        let uses = store
            .audit_events(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "mfa.recovery.use")
            .count();
        assert_eq!(uses, 1, "{backend}");
        // New codes: the old ones die.
        let fresh: Vec<Vec<u8>> = (10u8..20).map(|i| vec![i; 32]).collect();
        store
            .replace_recovery_codes("u-1", &fresh, &generate)
            .await
            .unwrap();
        assert!(
            !store
                .spend_recovery_code("u-1", &digests[5], &used)
                .await
                .unwrap()
        );
        assert_eq!(store.recovery_codes_left("u-1").await.unwrap(), 10);

        // An administrator's reset removes factors and codes at once.
        store
            .add_factor(
                &totp("f-9", "phone"),
                &AuditEvent::new(7, "u-1", "mfa.totp.enrol"),
            )
            .await
            .unwrap();
        let reset = AuditEvent::new(8, "admin", "mfa.reset");
        assert_eq!(store.reset_factors("u-1", &reset).await.unwrap(), 1);
        assert!(store.factors("u-1").await.unwrap().is_empty());
        assert_eq!(store.recovery_codes_left("u-1").await.unwrap(), 0);

        // The MFA policy is kept per user.
        let change = UserChange {
            mfa: Some(MfaPolicy::Required),
            ..UserChange::default()
        };
        store
            .update_user("u-1", &change, &[AuditEvent::new(9, "admin", "user.mfa")])
            .await
            .unwrap();
        let user = store.user_by_id("u-1").await.unwrap().unwrap();
        assert_eq!(
            (user.mfa, user.disabled),
            (MfaPolicy::Required, false),
            "{backend}"
        );
    }
    stores.cleanup().await;
}
