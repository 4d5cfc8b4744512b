//! `sidecar`: the Portcullis Cedar decision point; the commands are in [`sidecar::cli`].

fn main() -> std::process::ExitCode {
    sidecar::cli::main(std::env::args_os())
}
