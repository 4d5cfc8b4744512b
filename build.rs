//! `PORTCULLIS_BUILD_ID`: a digest of every source the binaries are built
//! from. `portcullis up` runs a one-service binary (`portcullis-gateway`
//! and so on) only when it carries the same id as itself: `cargo run` builds
//! just the binary it runs, and a stale sibling would run old code.

use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};

/// The root package's inputs and the packages it is built from; their tests
/// and benches are not part of a binary.
const INPUTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "authserver",
    "bootstrap",
    "feed",
    "gateway",
    "sidecar",
    "tokens",
];
const SKIPPED: &[&str] = &["tests", "benches", "target"];

fn main() -> io::Result<()> {
    let mut files = Vec::new();
    for input in INPUTS {
        let path = Path::new(input);
        if path.is_dir() && *input != "src" {
            // A package: everything but its tests, so editing a test does
            // not relink every binary.
            for entry in std::fs::read_dir(path)? {
                let entry = entry?.path();
                if !skipped(&entry) {
                    println!("cargo:rerun-if-changed={}", entry.display());
                    collect(&entry, &mut files)?;
                }
            }
        } else {
            println!("cargo:rerun-if-changed={input}");
            collect(path, &mut files)?;
        }
    }
    files.sort();
    let mut digest = DefaultHasher::new();
    for file in &files {
        digest.write(file.as_os_str().as_encoded_bytes());
        digest.write(&std::fs::read(file)?);
    }
    println!(
        "cargo:rustc-env=PORTCULLIS_BUILD_ID={:016x}",
        digest.finish()
    );
    Ok(())
}

fn skipped(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || SKIPPED.contains(&n))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?.path();
            if !skipped(&entry) {
                collect(&entry, files)?;
            }
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    }
    Ok(())
}
