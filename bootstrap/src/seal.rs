//! One sealing format for every secret a service keeps at rest or hands
//! out to be read back (signing keys, second-factor secrets, session
//! cookies): AES-256-GCM with a random nonce, and the record or cookie it
//! belongs to as associated data, so a sealed value moved elsewhere does not
//! open.
//!
//! Sealed: `version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. The version
//! byte lets the scheme change later without guessing at old values.
//!
//! Keys are never the configured secret itself: [`derive`] gives one key per
//! purpose (HKDF-SHA256).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;

/// The format byte of values sealed today.
pub const VERSION: u8 = 1;

/// A 32-byte key for `purpose`, derived from `secret` under a per-service
/// `salt` (HKDF-SHA256).
pub fn derive(secret: &[u8], salt: &[u8], purpose: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // Expanding to 32 bytes cannot fail (HKDF's limit is 255 × 32), and
    // the output length is fixed by the algorithm named here.
    let _ = hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(secret)
        .expand(&[purpose.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out));
    out
}

/// Seals and opens values under one key.
pub struct Sealer(LessSafeKey);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is exactly what AES-256-GCM takes, so this holds.
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes a 32-byte key"));
        Self(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext`; `context` (e.g. `signing-key:<kid>`, a cookie's
    /// name) must be given again to open it.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = crate::random::bytes();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut out[1 + NONCE_LEN..],
            )
            .unwrap_or_else(|_| unreachable!("sealing fails only past 64 GiB"));
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plaintext, or `None` for anything forged, truncated, of another
    /// version, or sealed for another context or key.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.open_owned(context, sealed.to_vec())
    }

    /// [`Sealer::open`] in the caller's buffer (a cookie just decoded):
    /// decrypted in place, no copy.
    pub fn open_owned(&self, context: &str, mut sealed: Vec<u8>) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&rest[..NONCE_LEN]).ok()?;
        let plain_len = self
            .0
            .open_in_place(
                nonce,
                Aad::from(context.as_bytes()),
                &mut sealed[1 + NONCE_LEN..],
            )
            .ok()?
            .len();
        sealed.truncate(1 + NONCE_LEN + plain_len);
        sealed.drain(..1 + NONCE_LEN);
        Some(sealed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = derive(b"a secret of some length", b"salt", "seal v1");
        let sealer = Sealer::new(&key);
        let sealed = sealer.seal("signing-key:k1", b"private");
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + 12 + 7 + 16);
        assert_eq!(sealer.open("signing-key:k1", &sealed).unwrap(), b"private");
        assert_ne!(
            sealer.seal("signing-key:k1", b"private"),
            sealed,
            "fresh nonces"
        );
        assert_eq!(sealer.open("signing-key:k2", &sealed), None);
        let other = Sealer::new(&derive(b"a secret of some length", b"salt", "other"));
        assert_eq!(other.open("signing-key:k1", &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open("signing-key:k1", &tampered), None);
        let mut future = sealed.clone();
        future[0] = 2;
        assert_eq!(
            sealer.open("signing-key:k1", &future),
            None,
            "unknown version"
        );
        assert_eq!(sealer.open("signing-key:k1", &sealed[..10]), None);
        assert_eq!(sealer.open("signing-key:k1", &[]), None);
    }

    #[test]
    fn keys_differ_by_secret_salt_and_purpose() {
        let a = derive(b"secret", b"salt", "p");
        assert_eq!(a, derive(b"secret", b"salt", "p"));
        assert_ne!(a, derive(b"secret", b"salt", "q"));
        assert_ne!(a, derive(b"secret", b"other salt", "p"));
        assert_ne!(a, derive(b"secreT", b"salt", "p"));
    }
}
