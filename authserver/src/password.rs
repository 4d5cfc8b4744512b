//! Human passwords: argon2id with parameters at or above OWASP's minimum.
//! Hashing is deliberately slow (tens of ms): callers run it on the blocking
//! pool, never on a request thread.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;

/// argon2id cost. OWASP's equivalent minimum configurations (memory in KiB,
/// iterations): 47104×1, 19456×2, 12288×3, 9216×4, 7168×5; parallelism 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

const OWASP_MINIMUMS: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

impl Argon2Config {
    /// `Err` names what falls short.
    pub fn validate(&self) -> Result<(), String> {
        let strong_enough = OWASP_MINIMUMS
            .iter()
            .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t);
        if !strong_enough {
            return Err(format!(
                "argon2id memory_kib={} iterations={} is below OWASP's minimum (e.g. 19456 KiB × 2)",
                self.memory_kib, self.iterations
            ));
        }
        if !(1..=16).contains(&self.parallelism) {
            return Err(format!(
                "argon2id parallelism={} must be 1..=16",
                self.parallelism
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes and checks passwords with one configured cost.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of nothing, checked when the user does not exist, so that a
    /// wrong username costs as much time as a wrong password.
    decoy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(config: &Argon2Config) -> Result<Self, PasswordError> {
        config.validate().map_err(PasswordError::Hash)?;
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let mut passwords = Self {
            params,
            decoy: String::new(),
        };
        passwords.decoy = passwords.hash("decoy")?;
        Ok(passwords)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Checks `password` against `phc`, or against the decoy when there is
    /// no stored hash; a malformed stored hash never matches.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let stored = phc.unwrap_or(&self.decoy);
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && phc.is_some()
    }

    /// Whether a stored hash was made with other parameters than today's
    /// (rehash after the next successful login).
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let current = self.params.to_string();
        parsed.algorithm.as_str() != "argon2id" || parsed.params.to_string() != current
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hashes_verify_and_carry_their_parameters() {
        let passwords = Passwords::new(&Argon2Config::default()).unwrap();
        let hash = passwords.hash("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(passwords.verify("correct horse", Some(&hash)));
        assert!(!passwords.verify("correct horsE", Some(&hash)));
        assert!(!passwords.verify("decoy", None), "the decoy never matches");
        assert!(!passwords.verify("x", Some("not a phc string")));
        assert!(!passwords.needs_rehash(&hash));
        let stronger = Passwords::new(&Argon2Config {
            memory_kib: 47_104,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert!(stronger.needs_rehash(&hash));
        assert!(
            stronger.verify("correct horse", Some(&hash)),
            "old hashes still verify"
        );
    }

    #[test]
    fn weak_parameters_are_refused() {
        for (m, t, p) in [
            (19_455, 2, 1),
            (7_168, 4, 1),
            (4_096, 10, 1),
            (19_456, 2, 0),
        ] {
            let config = Argon2Config {
                memory_kib: m,
                iterations: t,
                parallelism: p,
            };
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(
            Argon2Config {
                memory_kib: 9_216,
                iterations: 4,
                parallelism: 1
            }
            .validate()
            .is_ok()
        );
    }
}
