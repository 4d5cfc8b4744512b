//! `gateway`: the Portcullis edge proxy (and its demo upstream); the commands are in [`gateway::cli`].

/// glibc's allocator cost a tenth of the proxy's CPU under load (perf);
/// mimalloc's thread-local free lists avoid most of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main(std::env::args_os())
}
