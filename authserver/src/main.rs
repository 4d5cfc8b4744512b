//! `authserver`: the Portcullis OpenID provider; the commands are in [`authserver::cli`].

fn main() -> std::process::ExitCode {
    authserver::cli::main(std::env::args_os())
}
