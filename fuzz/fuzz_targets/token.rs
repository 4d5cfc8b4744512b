//! The token verifier's rules before any key or signature: never a panic,
//! and what passes is a three-part compact JWS.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if tokens::pre_signature(token).is_ok() {
        assert_eq!(token.split('.').count(), 3, "{token:?}");
    }
});
