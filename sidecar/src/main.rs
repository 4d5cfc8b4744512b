//! `sidecar`: the Portcullis Cedar decision point; the commands are in [`sidecar::cli`].

/// glibc's allocator was a tenth of the sidecar's CPU per uncached
/// decision (perf, `benches/load.rs`): Cedar's evaluation and the JSON on
/// either side allocate freely. mimalloc's thread-local free lists avoid
/// most of it, as in the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sidecar::cli::main(std::env::args_os())
}
