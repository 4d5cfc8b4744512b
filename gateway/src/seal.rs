//! Sealed values for cookies: AES-256-GCM under a key derived (HKDF-SHA256)
//! from the configured secret, one key per purpose, the cookie's name as
//! associated data so a value cannot be moved to another cookie; and
//! `Mac`, tags (HMAC-SHA256) that only a holder of the secret can make,
//! for anti-forgery tokens.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub struct Sealer {
    key: LessSafeKey,
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// A 32-byte key for `purpose`, derived from the configured secret.
fn derive(secret: &[u8], purpose: &str) -> Result<[u8; 32], String> {
    let prk = Salt::new(HKDF_SHA256, b"portcullis-gateway").extract(secret);
    let info = [purpose.as_bytes()];
    let okm = prk
        .expand(&info, Len(32))
        .map_err(|_| "key derivation failed".to_owned())?;
    let mut bytes = [0u8; 32];
    okm.fill(&mut bytes)
        .map_err(|_| "key derivation failed".to_owned())?;
    Ok(bytes)
}

/// Tags of values under a key derived for one purpose.
pub struct Mac {
    key: hmac::Key,
}

impl Mac {
    pub fn new(secret: &[u8], purpose: &str) -> Result<Self, String> {
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &derive(secret, purpose)?),
        })
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
    pub fn new(secret: &[u8], purpose: &str) -> Result<Self, String> {
        let bytes = derive(secret, purpose)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "bad key".to_owned())?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `base64url(nonce || ciphertext || tag)`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<String, String> {
        let nonce: [u8; NONCE_LEN] = bootstrap::random::bytes();
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext, or `None` for anything forged, truncated or sealed
    /// for another cookie or key.
    pub fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        let mut raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut raw[NONCE_LEN..])
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_cookie_and_key() {
        let a = Sealer::new(b"0123456789abcdef0123456789abcdef", "session").unwrap();
        let sealed = a.seal("pc", b"hello").unwrap();
        assert_eq!(a.open("pc", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.open("other", &sealed), None, "bound to the cookie name");
        let b = Sealer::new(b"0123456789abcdef0123456789abcdef", "login").unwrap();
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
        let m = Mac::new(b"0123456789abcdef0123456789abcdef", "logout").unwrap();
        let tag = m.tag("sid-1");
        assert!(m.verify("sid-1", &tag));
        assert!(!m.verify("sid-2", &tag));
        assert!(!m.verify("sid-1", ""));
        assert!(!m.verify("sid-1", "not base64!"));
        let other = Mac::new(b"0123456789abcdef0123456789abcdef", "other").unwrap();
        assert!(!other.verify("sid-1", &tag));
    }
}
