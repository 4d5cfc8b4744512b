//! The signing side of the same rules: a private key with its `kid`, `alg`
//! and public JWK. The authserver signs with it; the test issuer too.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};

/// Why a key could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("unsupported signing algorithm `{0:?}` (use ES256, RS256, PS256 or EdDSA)")]
    Unsupported(Algorithm),
    #[error("key generation failed")]
    Generate,
    #[error("private key is not valid PKCS#8 for {0:?}")]
    BadKey(Algorithm),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A private signing key.
pub struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new key for `alg`; returns it with its PKCS#8 encoding (to store).
    pub fn generate(alg: Algorithm, kid: &str) -> Result<(Self, Vec<u8>), SignerError> {
        let pkcs8 = match alg {
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|_| SignerError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .map_err(|_| SignerError::Generate)?
                .as_ref()
                .to_vec(),
            Algorithm::RS256 | Algorithm::PS256 => {
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| SignerError::Generate)?
                    .as_der()
                    .map_err(|_| SignerError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            other => return Err(SignerError::Unsupported(other)),
        };
        let signer = Self::from_pkcs8(alg, kid, &pkcs8)?;
        Ok((signer, pkcs8))
    }

    /// A key stored as PKCS#8 DER.
    pub fn from_pkcs8(alg: Algorithm, kid: &str, pkcs8: &[u8]) -> Result<Self, SignerError> {
        let key = match alg {
            Algorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| SignerError::BadKey(alg))?;
                EncodingKey::from_ec_der(pkcs8)
            }
            Algorithm::EdDSA => {
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|_| SignerError::BadKey(alg))?;
                EncodingKey::from_ed_der(pkcs8)
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| SignerError::BadKey(alg))?;
                EncodingKey::from_rsa_der(pkcs1_of(pkcs8).ok_or(SignerError::BadKey(alg))?)
            }
            other => return Err(SignerError::Unsupported(other)),
        };
        let jwk = Jwk::from_encoding_key(&key, alg)?;
        let mut jwk = serde_json::to_value(jwk).map_err(|_| SignerError::BadKey(alg))?;
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public key as published in a JWKS (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS with header `alg`, `kid` and `typ`.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, SignerError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// A compact JWS over exactly this header (which may lie about `alg`),
    /// signed with `alg` of this key's family. For hostile-token tests.
    pub fn sign_raw(
        &self,
        alg: Algorithm,
        header_b64: &str,
        claims_b64: &str,
    ) -> Result<String, SignerError> {
        let message = format!("{header_b64}.{claims_b64}");
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, alg)?;
        Ok(format!("{message}.{signature}"))
    }
}

/// The `RSAPrivateKey` (PKCS#1) inside a PKCS#8 `PrivateKeyInfo`: the
/// content of its third element, an OCTET STRING. jsonwebtoken wants PKCS#1.
fn pkcs1_of(pkcs8: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, content, rest).
    fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            let (bytes, after) = rest.split_at_checked(n)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (content, rest) = rest.split_at_checked(len)?;
        Some((tag, content, rest))
    }
    let (_, info, _) = element(pkcs8)?;
    let (_, _, rest) = element(info)?; // version
    let (_, _, rest) = element(rest)?; // algorithm
    let (tag, key, _) = element(rest)?;
    (tag == 0x04).then_some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stored_keys_sign_as_generated() {
        for alg in [
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
            Algorithm::PS256,
        ] {
            let (fresh, pkcs8) = Signer::generate(alg, "k").unwrap();
            let loaded = Signer::from_pkcs8(alg, "k", &pkcs8).unwrap();
            assert_eq!(fresh.jwk(), loaded.jwk(), "{alg:?}");
            assert_eq!(loaded.jwk()["kid"], "k");
            let token = loaded.sign("at+jwt", &json!({"sub": "x"})).unwrap();
            assert_eq!(token.split('.').count(), 3);
        }
    }

    #[test]
    fn refuses_symmetric_and_mismatched_keys() {
        assert!(matches!(
            Signer::generate(Algorithm::HS256, "k"),
            Err(SignerError::Unsupported(Algorithm::HS256))
        ));
        let (_, ec) = Signer::generate(Algorithm::ES256, "k").unwrap();
        assert!(matches!(
            Signer::from_pkcs8(Algorithm::RS256, "k", &ec),
            Err(SignerError::BadKey(_))
        ));
        assert!(Signer::from_pkcs8(Algorithm::EdDSA, "k", b"junk").is_err());
    }
}
