//! `portcullis-authserver`: the authserver alone, as `portcullis authserver` runs it; `up`
//! starts this binary when it is from the same build (see `src/up/stack.rs`).

#[path = "../build_id.rs"]
mod build_id;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    build_id::run(authserver::cli::main)
}
