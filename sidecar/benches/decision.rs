//! In-process decisions on the demo model, beside the raw Cedar baseline
//! (a pre-built request evaluated by `Authorizer` alone) in the same run.
//!
//! cargo bench -p portcullis-sidecar --bench decision

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cedar_policy::{Authorizer, Context, EntityUid, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use decision::Metrics;
use decision::{CheckRequest, Claims, Engine, EngineOptions};

fn claims(v: serde_json::Value) -> Claims {
    Claims::from_json(v.as_object().unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    for (label, dir) in [
        ("demo", None),
        (
            "demo+100 entities, 20 policies",
            Some(support::grown_policies(100)),
        ),
    ] {
        let path = dir
            .as_ref()
            .map_or_else(support::demo_policies, |d| d.path().to_owned());
        let uncached = Engine::new(
            &path,
            &EngineOptions {
                cache_entries: 0,
                ..Default::default()
            },
            Metrics::new(),
        )
        .unwrap();
        let cached = Engine::new(&path, &EngineOptions::default(), Metrics::new()).unwrap();
        let mut group = c.benchmark_group(label);
        group.measurement_time(Duration::from_secs(4));

        // Baseline: Cedar alone, request pre-built, entities as stored.
        let snap = uncached.snapshot();
        let uid = |s: &str| s.parse::<EntityUid>().unwrap();
        let request = Request::new(
            uid(r#"App::User::"alice""#),
            uid(r#"App::Action::"ReadOrder""#),
            uid(r#"App::Order::"o-100""#),
            Context::from_json_value(
                serde_json::json!({"scopes": [], "amr": ["pwd"], "time": 0}),
                None,
            )
            .unwrap(),
            None,
        )
        .unwrap();
        let authorizer = Authorizer::new();
        group.bench_function("baseline: raw cedar is_authorized", |b| {
            b.iter(|| {
                authorizer.is_authorized(&request, &snap.bundle.policies, &snap.bundle.entities)
            })
        });

        let stored = claims(serde_json::json!({"sub": "alice", "amr": ["pwd"], "scope": "openid"}));
        let token_only = claims(
            serde_json::json!({"sub": "zoe", "groups": ["staff"], "amr": ["pwd"], "scope": "openid"}),
        );
        let check = |claims| CheckRequest {
            method: "GET",
            path: "/api/orders/o-100",
            claims: Some(claims),
            source: Some("10.1.2.3".parse().unwrap()),
            ..Default::default()
        };
        let (stored_req, token_req) = (check(&stored), check(&token_only));
        assert!(uncached.check(&stored_req).allowed());
        assert!(uncached.check(&token_req).allowed());
        group.bench_function("check uncached, stored user", |b| {
            b.iter(|| uncached.check(&stored_req))
        });
        group.bench_function("check uncached, token-only user with groups", |b| {
            b.iter(|| uncached.check(&token_req))
        });
        group.bench_function("check cached", |b| b.iter(|| cached.check(&token_req)));

        let direct = || decision::DirectRequest {
            principal: serde_json::json!({"type": "App::User", "id": "alice"}),
            action: serde_json::json!({"type": "App::Action", "id": "ReadOrder"}),
            resource: serde_json::json!({"type": "App::Order", "id": "o-100"}),
            context: serde_json::json!({"scopes": [], "amr": ["pwd"], "time": 0}),
            entities: None,
        };
        group.bench_function(
            "is_authorized uncached (parse + validate + evaluate)",
            |b| {
                b.iter_batched(
                    direct,
                    |r| uncached.is_authorized(r, None).unwrap(),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
        group.bench_function("is_authorized cached (same JSON as before)", |b| {
            b.iter_batched(
                direct,
                |r| cached.is_authorized(r, None).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
