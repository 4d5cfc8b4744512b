//! The system random generator, handled one way everywhere: it cannot
//! fail quietly. Without randomness every session id, token, nonce and
//! key would be guessable, so a failure stops the process rather than
//! hand out zeros (getrandom fails only when the kernel has no entropy
//! source at all).

/// `N` random bytes from the system generator; aborts if it fails.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if aws_lc_rs::rand::fill(&mut out).is_err() {
        tracing::error!("the system random generator failed; stopping");
        eprintln!("fatal: the system random generator failed");
        std::process::abort();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_differ_from_call_to_call() {
        let (a, b) = (super::bytes::<32>(), super::bytes::<32>());
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
