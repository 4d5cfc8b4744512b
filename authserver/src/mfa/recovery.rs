//! Recovery codes: ten single-use codes, shown once, kept only as keyed
//! digests (HMAC under the master key: they are random, so a slow hash
//! adds nothing, and a database dump alone cannot test guesses).

use crate::crypto::{SecretDigester, random_bytes};

pub const COUNT: usize = 10;
/// No 0/o, 1/l/i: codes are read off paper.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const LENGTH: usize = 10;

/// Ten new codes, as the user is shown them (`xxxxx-xxxxx`: about 50 bits
/// each, enough behind a password and the lockout windows).
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let mut code = String::with_capacity(LENGTH + 1);
            let mut made = 0;
            while made < LENGTH {
                // Rejection sampling keeps every letter equally likely.
                let [byte] = random_bytes::<1>();
                let index = usize::from(byte & 0x1f);
                if index >= ALPHABET.len() {
                    continue;
                }
                if made == LENGTH / 2 {
                    code.push('-');
                }
                code.push(char::from(ALPHABET[index]));
                made += 1;
            }
            code
        })
        .collect()
}

/// What is digested: case, spaces and dashes do not matter.
pub fn normalize(given: &str) -> String {
    given
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `given` has the shape of a recovery code (before any lookup).
pub fn well_formed(given: &str) -> bool {
    let code = normalize(given);
    code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))
}

pub fn digest(digester: &SecretDigester, given: &str) -> Vec<u8> {
    digester.digest(&format!("recovery:{}", normalize(given)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn codes_are_ten_distinct_well_formed_and_forgiving_to_type() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11);
            assert_eq!(code.as_bytes()[5], b'-');
            assert!(well_formed(code), "{code}");
        }
        let (master, _) = MasterKey::generate().unwrap();
        let d = master.secret_digester();
        let shouted = format!(" {} ", codes[0].to_uppercase().replace('-', " "));
        assert_eq!(digest(&d, &codes[0]), digest(&d, &shouted));
        assert_ne!(digest(&d, &codes[0]), digest(&d, &codes[1]));
        for bad in ["", "abc", "0000000000", "abcdefghjk1", "abcde-fghj."] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
