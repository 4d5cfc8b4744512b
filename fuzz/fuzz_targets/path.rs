//! The path rule (`decision::path`): never a panic; a canonical path is
//! canonical again, stays canonical in lower case, and means to an upstream
//! that decodes once and resolves dot segments exactly what the input meant.
#![no_main]

use decision::path::{lower_case, normalize};
use libfuzzer_sys::fuzz_target;

/// How a plain upstream reads a path: percent-decoded once, split on `/`,
/// `.` and `..` resolved.
fn as_an_upstream_reads(path: &str) -> Vec<Vec<u8>> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s.to_vec()),
        }
    }
    segments
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = normalize(input) else {
        return;
    };
    assert_eq!(
        normalize(&canonical).as_deref(),
        Ok(&*canonical),
        "idempotent: {input:?}"
    );
    assert!(canonical.is_ascii(), "{canonical:?}");
    assert!(
        !canonical.contains(';') && !canonical.contains('\\'),
        "{canonical:?}"
    );
    assert_eq!(
        as_an_upstream_reads(input),
        as_an_upstream_reads(&canonical),
        "an upstream reads {input:?} and {canonical:?} differently"
    );
    let lower = lower_case(&canonical);
    assert_eq!(
        normalize(&lower).as_deref(),
        Ok(&*lower),
        "lower case stays canonical"
    );
});
