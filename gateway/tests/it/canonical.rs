//! The gateway and the sidecar canonicalise every path alike: whatever the
//! gateway lets through (its request rewritten to the canonical path, in
//! lower case too for `case_insensitive` routes) the sidecar's engine
//! decides as canonical, and whatever path the gateway refuses, the
//! engine refuses to decide. Generated paths, built from the characters
//! upstreams disagree about.

use std::net::IpAddr;
use std::sync::OnceLock;

use gateway::inbound::{self, Rules, Unreadable};
use pingora::http::RequestHeader;
use proptest::prelude::*;

fn engine() -> &'static decision::Engine {
    static ENGINE: OnceLock<decision::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        decision::Engine::new(
            &crate::support::demo_policies(),
            &decision::EngineOptions::default(),
            decision::metrics::Metrics::new(),
        )
        .unwrap()
    })
}

/// Why the engine would not decide about `path`, if it would not.
fn sidecar_refusal(path: &str) -> Option<String> {
    let claims = decision::Claims {
        sub: Some("bob".into()),
        ..Default::default()
    };
    let decision = engine().check(&decision::CheckRequest {
        method: "GET",
        path,
        host: None,
        source: Some(IpAddr::from([127, 0, 0, 1])),
        claims: Some(&claims),
        request_id: None,
        time: Some(0),
    });
    decision
        .outcome
        .reason
        .clone()
        .filter(|r| r == "non-canonical path" || r.starts_with("invalid path"))
}

fn paths() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "//", ".", "..", ";", "%", "%2e", "%2E", "%2f", "%5C", "%3b", "%25", "%20", "%41",
        "%C3%A9", "é", "\"", "a", "B", "~", "-", "_", "?", "#", "{", "admin", "API",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_gateway_and_the_sidecar_canonicalise_alike(target in paths(), case_insensitive in any::<bool>()) {
        // What Pingora's parser accepts becomes a request header.
        let Ok(mut req) = RequestHeader::build("GET", target.as_bytes(), None) else {
            return Ok(());
        };
        req.insert_header("host", "app.test").unwrap();
        let rules = Rules { trusted_proxies: Vec::new(), host_required: false };
        let read = inbound::read(&mut req, Some(IpAddr::from([127, 0, 0, 1])), false, &rules);
        let read = read.and_then(|_| match case_insensitive {
            true => inbound::lower_case_path(&mut req),
            false => Ok(()),
        });
        let sent = req.uri.path().to_owned();
        let original = target.split(['?', '#']).next().unwrap_or_default().to_owned();
        match read {
            Ok(()) => {
                prop_assert_eq!(sidecar_refusal(&sent), None, "the gateway sends {} for {}", sent, target);
                if sidecar_refusal(&original).is_none() && !case_insensitive {
                    prop_assert_eq!(&sent, &original, "a canonical path goes on as it is");
                }
            }
            Err(Unreadable::Path(_)) => {
                prop_assert!(sidecar_refusal(&original).is_some(), "the gateway refuses {} but the sidecar would decide it", target);
            }
            Err(other) => prop_assert!(false, "{}: {}", target, other),
        }
    }
}
