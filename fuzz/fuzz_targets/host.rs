//! The host rule (`decision::host`): never a panic; a normalised host is
//! normalised again, lower case, and its name carries no port.
#![no_main]

use decision::host::{name, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(host) = normalize(input) else {
        return;
    };
    assert_eq!(
        normalize(&host).as_deref(),
        Ok(&*host),
        "idempotent: {input:?}"
    );
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    assert!(!host.contains('@'), "{host:?}");
    let n = name(&host);
    assert!(n.starts_with('[') || !n.contains(':'), "{host:?} → {n:?}");
    assert!(!n.ends_with('.'), "{n:?}");
});
