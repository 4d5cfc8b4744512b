//! An issuer's signing keys, parsed once from its JWKS.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable verification key.
pub(crate) struct Key {
    pub kid: Option<String>,
    /// The `alg` the JWKS pins this key to, if any.
    pub alg: Option<Algorithm>,
    kind: Kind,
    pub key: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: the key type
    /// must fit the algorithm, and a pinned `alg` must be exactly it.
    pub fn allows(&self, alg: Algorithm) -> bool {
        let fits = matches!(
            (self.kind, alg),
            (
                Kind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (Kind::P256, Algorithm::ES256)
                | (Kind::P384, Algorithm::ES384)
                | (Kind::Ed25519, Algorithm::EdDSA)
        );
        fits && self.alg.is_none_or(|a| a == alg)
    }
}

/// The keys of one issuer. Keys this verifier cannot use (symmetric keys,
/// encryption keys, unknown curves) are skipped, not fatal: a JWKS may hold
/// keys for other consumers.
#[derive(Default)]
pub(crate) struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("JWKS: {e}"))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err("JWKS holds no usable signing key".into());
        }
        Ok(Self { keys })
    }

    /// The key for a token with this `kid` and `alg`. A token without `kid`
    /// is accepted only when exactly one key fits, so it can never be tried
    /// against several keys.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.allows(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.allows(alg));
                let first = fitting.next()?;
                fitting.next().is_none().then_some(first)
            }
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Kind::Ed25519
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::try_from(a).ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}
