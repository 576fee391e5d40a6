use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// mimalloc: a query over many small files opens a reader per column chunk, each a burst of
/// small allocations that glibc's malloc served at a fifth of the query's CPU (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc, told to commit arena memory as it is used and to return freed memory at once:
/// with its defaults the bench's all-columns queries peaked at 1.1 GiB (glibc: ~160 MiB); with
/// these at ~610 MiB, at the same speed (README, "Queries").
fn return_freed_memory() {
    // `mi_option_arena_eager_commit` and `mi_option_purge_delay` in include/mimalloc.h (4 and
    // 15 in v2 and v3, the version libmimalloc-sys builds by default).
    const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets global options before any thread is started; no pointers involved.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    return_freed_memory();
    let matches = flowsql::cli::Cli::command().get_matches();
    let cli = match flowsql::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(flowsql::run(cli, &matches)),
        Err(error) => {
            eprintln!("flowsql: error: cannot start the async runtime: {error}");
            ExitCode::from(2)
        }
    }
}
