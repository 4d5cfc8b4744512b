//! Another workspace package's binary, next to the running test's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The workspace root (this crate lives in `testkit/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where cargo puts binaries for the running test: a test executable
/// lives in `<target>/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if deps.ends_with("deps") {
        deps.parent().map(Path::to_path_buf).unwrap_or(deps)
    } else {
        deps
    }
}

/// The binary `bin` of package `package`. `cargo test --workspace` (the
/// test command) builds every package's binaries with the same features;
/// when it is missing or older than the sources it is built from
/// (`crates`: its package's directory and the workspace crates it uses),
/// e.g. under `cargo test -p portcullis-gateway`, it is built first.
pub fn workspace_binary(package: &str, bin: &str, crates: &[&str]) -> PathBuf {
    let path = profile_dir().join(bin);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let newest = crates
        .iter()
        .filter_map(|c| newest_source(&root().join(c)))
        .max();
    if built.is_none_or(|b| newest > Some(b)) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", package, "--bin", bin])
            .current_dir(root())
            .status()
            .unwrap_or_else(|e| panic!("run cargo: {e}"));
        assert!(status.success(), "cargo build -p {package} failed");
    }
    path
}

/// The latest modification time of what a crate's binary is built from:
/// everything in the crate but its tests and benchmarks.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !["tests", "benches", "target", "node_modules"]
                    .iter()
                    .any(|skip| name == *skip)
                {
                    stack.push(path);
                }
            } else {
                newest = newest.max(entry.metadata().and_then(|m| m.modified()).ok());
            }
        }
    }
    newest
}
