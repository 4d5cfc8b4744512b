//! Cookie parsing (`gateway::cookie`) and stripping: never a panic, and a
//! cookie the session lookup would honour, or any spelling an app reads as
//! the same name, never survives the stripping of private cookies, in
//! however many `Cookie` headers it hides.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = RequestHeader::build("GET", b"/", None) else {
        return;
    };
    for value in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            let _ = req.append_header(http::header::COOKIE, v);
        }
    }
    let rules = gateway::rewrite::Rules {
        owned_prefix: "x-auth-".into(),
        private_cookies: vec!["sid".into()],
        forwarded: gateway::config::ForwardedHeaders::XForwarded,
    };
    let _ = gateway::cookie::find(&req.headers, "sid");
    if rules.strip_cookies(&mut req).is_err() {
        return;
    }
    assert_eq!(gateway::cookie::find(&req.headers, "sid"), None);
    assert!(
        gateway::cookie::crumbs(&req.headers)
            .all(|c| !gateway::cookie::same_name(gateway::cookie::name(c), b"sid"))
    );
});
