//! The one SHA-256 key helper. Values that are looked up by but must not be
//! held as they are — bearer tokens in verification caches, codes, refresh
//! tokens and session ids in the ephemeral store — are keyed by their
//! digest, so a dump of a cache or a store yields nothing to present.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// `base64url(SHA-256(value))`, for keys that are text.
pub fn sha256_text(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_match_the_standard_vector() {
        // FIPS 180-2, "abc".
        let abc = super::sha256(b"abc");
        assert_eq!(abc[..4], [0xba, 0x78, 0x16, 0xbf]);
        // RFC 7636 appendix B: the S256 challenge of its verifier.
        assert_eq!(
            super::sha256_text("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
