//! TOTP codes from an independent implementation (PyPI `pyotp`, installed
//! by `scripts/install-deps.sh`), for tests of second factors.

/// The code of base32 `secret` at Unix time `at`.
pub fn totp_code(secret: &str, at: i64) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &at.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("python3 does not run: {e}"));
    assert!(
        out.status.success(),
        "pyotp failed (run scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
