//! Secrets at rest and the random values the protocol hands out.
//!
//! One master key (32 bytes, from the environment or a file) is never used
//! directly: HKDF derives one key per purpose. Private signing keys and
//! second-factor secrets are sealed with AES-256-GCM, bound by associated
//! data to the record they belong to, so a sealed value copied into another
//! row does not open. Client secrets are high-entropy random strings, so a
//! keyed digest (HMAC-SHA256) is the right store for them: slow password
//! hashes are for human passwords.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The one sealing format (`bootstrap::seal`): version ‖ nonce ‖ ciphertext
/// ‖ tag, bound to its record by associated data.
pub use bootstrap::seal::Sealer;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes, base64-encoded (got {0})")]
    MasterKey(String),
    #[error(
        "sealed value does not open with this master key (wrong key, or moved between records)"
    )]
    Open,
}

/// The root of every key the authserver keeps at rest.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses base64 (standard or URL-safe) of exactly 32 bytes; surrounding
    /// whitespace, as in a key file, is ignored.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| CryptoError::MasterKey("text that is not base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| CryptoError::MasterKey(format!("{} bytes", b.len())))?;
        Ok(Self(key))
    }

    /// A new random key, base64-encoded (for `--dev` and `authserver keys
    /// master`).
    pub fn generate() -> Result<(Self, String), CryptoError> {
        let key: [u8; 32] = random_bytes();
        Ok((Self(key), STANDARD.encode(key)))
    }

    fn derive(&self, purpose: &'static str) -> [u8; 32] {
        bootstrap::seal::derive(&self.0, b"portcullis-authserver", purpose)
    }

    pub fn sealer(&self) -> Sealer {
        Sealer::new(&self.derive("seal v1"))
    }

    pub fn secret_digester(&self) -> SecretDigester {
        SecretDigester(hmac::Key::new(
            hmac::HMAC_SHA256,
            &self.derive("client secret digest v1"),
        ))
    }

    /// The key for values the server hands out and reads back itself
    /// (CSRF tokens, cookie MACs).
    pub fn mac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.derive("mac v1"))
    }
}

/// Keyed digests of client secrets: constant-time to check, cheap enough that
/// the token endpoint is not bound by hashing, useless without the master key.
pub struct SecretDigester(hmac::Key);

impl SecretDigester {
    pub fn digest(&self, secret: &str) -> Vec<u8> {
        hmac::sign(&self.0, secret.as_bytes()).as_ref().to_vec()
    }

    pub fn matches(&self, secret: &str, digest: &[u8]) -> bool {
        hmac::verify(&self.0, secret.as_bytes(), digest).is_ok()
    }
}

/// `base64url(SHA-256(value))` (`bootstrap::digest`): ephemeral-store
/// keys of values that must not be stored as they are, and PKCE S256.
pub use bootstrap::digest::sha256_text as digest;

/// `N` bytes from the system generator (`bootstrap::random`: a failing
/// generator stops the process, it never yields zeros).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    bootstrap::random::bytes()
}

/// A URL-safe random string of `N` bytes of entropy: client secrets (32),
/// authorization codes, refresh tokens, session ids, CSRF tokens.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_master_key_they_were_sealed_with() {
        let (master, text) = MasterKey::generate().unwrap();
        let sealed = master.sealer().seal("signing-key:k1", b"private");
        let (other, _) = MasterKey::generate().unwrap();
        assert!(other.sealer().open("signing-key:k1", &sealed).is_none());
        // The encoded key reads back as the same key.
        let again = MasterKey::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(
            again.sealer().open("signing-key:k1", &sealed).unwrap(),
            b"private"
        );
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        for bad in ["", "not base64!", &STANDARD.encode([0u8; 16])] {
            let err = MasterKey::from_base64(bad).unwrap_err().to_string();
            assert!(err.contains("32 bytes"), "{err}");
        }
        assert!(MasterKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
    }

    #[test]
    fn secret_digests_are_keyed() {
        let (a, _) = MasterKey::generate().unwrap();
        let (b, _) = MasterKey::generate().unwrap();
        let secret = random_token::<32>();
        assert_eq!(secret.len(), 43);
        let digest = a.secret_digester().digest(&secret);
        assert!(a.secret_digester().matches(&secret, &digest));
        assert!(!a.secret_digester().matches("guess", &digest));
        assert!(!b.secret_digester().matches(&secret, &digest));
    }
}
