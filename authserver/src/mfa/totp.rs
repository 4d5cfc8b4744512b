//! RFC 6238 time-based one-time passwords as every authenticator app
//! implements them: HMAC-SHA1 (RFC 4226 dynamic truncation), 30-second
//! steps, 6 digits, a 160-bit secret shown as base32. A code is accepted
//! for the current step and one step either side (clock drift); which
//! step matched is returned so the caller can spend it once.

use aws_lc_rs::{constant_time, hmac};
use data_encoding::BASE32_NOPAD;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: usize = 6;
/// RFC 4226 §4 asks for at least 128 bits; 160 is what apps expect.
pub const SECRET_BYTES: usize = 20;

/// The time step `now` (Unix seconds) falls in.
pub fn step_at(now: i64) -> i64 {
    now.div_euclid(STEP_SECONDS)
}

/// The code of `step` (RFC 4226 §5.3), zero-padded.
pub fn code(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let counter = u64::try_from(step).unwrap_or(0).to_be_bytes();
    let mac = hmac::sign(&key, &counter);
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:0width$}", bin % 1_000_000, width = DIGITS)
}

/// The step whose code `given` is, within one step of `now`; the latest
/// such step if several match. Spaces in `given` are ignored.
pub fn matching_step(secret: &[u8], given: &str, now: i64) -> Option<i64> {
    let given: String = given.chars().filter(|c| !c.is_whitespace()).collect();
    if given.len() != DIGITS || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    // All three are computed, so the time taken does not say which matched.
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        if constant_time::verify_slices_are_equal(code(secret, step).as_bytes(), given.as_bytes())
            .is_ok()
        {
            found = Some(step);
        }
    }
    found
}

/// The secret as apps take it for manual entry: base32 without padding.
pub fn base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI of Google Authenticator's key-URI format, which
/// every app scans from the QR code.
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{issuer}:{account}");
    let label: String = form_urlencoded::byte_serialize(label.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", &base32(secret))
        .append_pair("issuer", issuer)
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", "6")
        .append_pair("period", "30")
        .finish();
    format!("otpauth://totp/{label}?{query}")
}

/// `text` as an inline SVG QR code (no XML prolog: it sits in HTML).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    svg.find("<svg").map(|at| svg[at..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8 digits there; the last 6 here).
    #[test]
    fn codes_match_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code(secret, step_at(time)), eight[2..], "t={time}");
        }
    }

    #[test]
    fn one_step_either_side_and_no_further() {
        let secret = [7u8; SECRET_BYTES];
        let now = 1_800_000_015;
        let current = step_at(now);
        for delta in [-1, 0, 1] {
            let given = code(&secret, current + delta);
            assert_eq!(matching_step(&secret, &given, now), Some(current + delta));
        }
        for delta in [-2, 2] {
            let given = code(&secret, current + delta);
            assert_eq!(matching_step(&secret, &given, now), None, "{delta}");
        }
        let spaced = code(&secret, current);
        let spaced = format!("{} {}", &spaced[..3], &spaced[3..]);
        assert_eq!(matching_step(&secret, &spaced, now), Some(current));
        for junk in ["", "12345", "1234567", "abcdef", "12345６"] {
            assert_eq!(matching_step(&secret, junk, now), None, "{junk}");
        }
    }

    #[test]
    fn key_uris_and_qr_codes() {
        let uri = uri("Portcullis", "alice@example.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Portcullis%3Aalice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Portcullis&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&uri).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("script"));
    }
}
