//! Sealed values for cookies, in the one sealing format
//! (`bootstrap::seal`: version ‖ nonce ‖ AES-256-GCM ciphertext ‖ tag) and
//! base64url for the cookie, under a key derived from the configured secret
//! per purpose, the cookie's name as associated data so a value cannot be
//! moved to another cookie; and `Mac`, tags (HMAC-SHA256) that only a holder
//! of the secret can make, for anti-forgery tokens.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Keys derived from the configured secret are salted with the service.
const SALT: &[u8] = b"portcullis-gateway";

pub struct Sealer(bootstrap::seal::Sealer);

/// Tags of values under a key derived for one purpose.
pub struct Mac {
    key: hmac::Key,
}

impl Mac {
    pub fn new(secret: &[u8], purpose: &str) -> Self {
        let key = bootstrap::seal::derive(secret, SALT, purpose);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        }
    }

    /// `base64url(HMAC-SHA256(key, value))`.
    pub fn tag(&self, value: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, value.as_bytes()))
    }

    /// `tag` is `value`'s tag (compared in constant time).
    pub fn verify(&self, value: &str, tag: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|t| hmac::verify(&self.key, value.as_bytes(), &t).is_ok())
    }
}

impl Sealer {
    /// `purpose` separates keys derived from the same secret.
    pub fn new(secret: &[u8], purpose: &str) -> Self {
        Self(bootstrap::seal::Sealer::new(&bootstrap::seal::derive(
            secret, SALT, purpose,
        )))
    }

    /// The sealed value, base64url for a cookie.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.0.seal(name, plaintext))
    }

    /// The plaintext, or `None` for anything forged, truncated or sealed
    /// for another cookie or key.
    pub fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        self.0.open_owned(name, URL_SAFE_NO_PAD.decode(value).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_cookie_and_key() {
        let a = Sealer::new(b"0123456789abcdef0123456789abcdef", "session");
        let sealed = a.seal("pc", b"hello");
        assert_eq!(a.open("pc", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.open("other", &sealed), None, "bound to the cookie name");
        let b = Sealer::new(b"0123456789abcdef0123456789abcdef", "login");
        assert_eq!(b.open("pc", &sealed), None, "bound to the purpose");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open("pc", std::str::from_utf8(&tampered).unwrap()), None);
        assert_eq!(a.open("pc", "!!"), None);
        assert_eq!(a.open("pc", ""), None);
    }

    #[test]
    fn tags_verify_only_for_their_value_and_key() {
        let m = Mac::new(b"0123456789abcdef0123456789abcdef", "logout");
        let tag = m.tag("sid-1");
        assert!(m.verify("sid-1", &tag));
        assert!(!m.verify("sid-2", &tag));
        assert!(!m.verify("sid-1", ""));
        assert!(!m.verify("sid-1", "not base64!"));
        let other = Mac::new(b"0123456789abcdef0123456789abcdef", "other");
        assert!(!other.verify("sid-1", &tag));
    }
}
