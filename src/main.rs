//! `portcullis`: one binary for the whole platform. `portcullis up` starts
//! the stack on embedded defaults; `portcullis gateway|sidecar|authserver
//! ARGS` runs one service exactly as its own binary would, which is how `up`
//! starts each of them as a child process.

mod build_id;
mod up;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The gateway is in this binary too; see `gateway/src/main.rs` for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about = "Portcullis edge auth platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the authserver, the sidecar, the gateway and the demo upstream
    /// on 127.0.0.1; print how to use them; Ctrl-C stops them all.
    Up(up::Options),
    /// Run the gateway (`portcullis gateway --help`).
    #[command(disable_help_flag = true)]
    Gateway(Passthrough),
    /// Run the sidecar (`portcullis sidecar --help`).
    #[command(disable_help_flag = true)]
    Sidecar(Passthrough),
    /// Run the authserver (`portcullis authserver --help`).
    #[command(disable_help_flag = true)]
    Authserver(Passthrough),
}

#[derive(Debug, clap::Args)]
struct Passthrough {
    /// The service's own arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn main() -> ExitCode {
    build_id::run(|args| run(Cli::parse_from(args)))
}

fn run(cli: Cli) -> ExitCode {
    let with_name =
        |name: &str, rest: Passthrough| std::iter::once(OsString::from(name)).chain(rest.args);
    match cli.command {
        Command::Up(options) => up::run(options),
        Command::Gateway(rest) => gateway::cli::main(with_name("gateway", rest)),
        Command::Sidecar(rest) => sidecar::cli::main(with_name("sidecar", rest)),
        Command::Authserver(rest) => authserver::cli::main(with_name("authserver", rest)),
    }
}
