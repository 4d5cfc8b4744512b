//! Which sources a binary was built from (`build.rs`). Every binary of this
//! package answers `--build-id`, so `up` can tell a one-service binary from
//! the same build apart from a stale one.

use std::ffi::OsString;
use std::process::ExitCode;

pub const BUILD_ID: &str = env!("PORTCULLIS_BUILD_ID");

/// The argument that asks a binary for its [`BUILD_ID`].
pub const FLAG: &str = "--build-id";

/// Prints the build id when asked; otherwise runs `main` on the arguments.
pub fn run(main: impl FnOnce(Vec<OsString>) -> ExitCode) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() == 2 && args[1] == FLAG {
        println!("{BUILD_ID}");
        return ExitCode::SUCCESS;
    }
    main(args)
}
