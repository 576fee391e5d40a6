use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// mimalloc: a query over many small files opens a reader per column chunk, each a burst of
/// small allocations that glibc's malloc served at a fifth of the query's CPU (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc, told to commit arena memory as it is used (with its defaults the bench's
/// all-columns queries peaked at 1.1 GiB; glibc: ~160 MiB). Freed memory is returned after
/// mimalloc's default delay (1 s in the v3 it builds), not at once: returning it at once
/// (tried, 2026-12-03) held those peaks at 514-599 MiB (now 680-716 MiB), but every page freed and used again was then a
/// fresh page fault, which cost the newest hour's 600 small files a third of their
/// `select *` (1.05 s vs 0.71 s) and the 10M-flow scans 13-17% (README, "Queries").
/// mimalloc's own environment variable (`MIMALLOC_ARENA_EAGER_COMMIT`) still decides when set.
fn commit_on_use() {
    // `mi_option_arena_eager_commit` in include/mimalloc.h (4 in v2 and v3, the version
    // libmimalloc-sys builds by default).
    const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: sets a global option before any thread is started; no pointers involved.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
}

/// No transparent huge pages, as `MIMALLOC_ALLOW_THP=0` would do at start (that variable
/// still decides when set): mimalloc stops asking for them and the process is told to take
/// none. With them, every fresh arena page faulted in a zeroed 2 MiB page whenever the kernel
/// had huge pages free (after another big process exited: a third of the newest hour's
/// `select *` was the kernel zeroing). Measured with `fleet-bench --newest-hour` and
/// `query-bench` (2026-12-05): peak RSS 20-45% lower on every query, times equal or
/// lower (the newest hour's dropped rows 0.48 -> 0.39 s).
fn no_huge_pages() {
    // `mi_option_allow_thp` in include/mimalloc.h of v3, the version libmimalloc-sys builds
    // by default (37 in v2).
    const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: sets a global option and a process flag before any thread is started; no
        // pointers involved.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// `flowsql serve` gives freed memory back after 100 ms, not mimalloc's default 1 s
/// (`mi_option_purge_delay`; `MIMALLOC_PURGE_DELAY` still decides when set). A server streams
/// for hours beside other work, and with the default the batches it had already sent were
/// still resident when the next ones were decoded. `serve-bench --store <1M flows> --runs 2`,
/// `--all`, each delay twice (2026-12-05): 1 s 245-267 MiB peak, 100 ms 210-225 MiB at the
/// same flows/s, 10 ms 169-188 MiB but ~8% slower, 0 155-174 MiB and ~10% slower. The
/// one-shot commands keep the default: for them the page faults cost more than the memory
/// (see `commit_on_use`).
fn purge_sooner() {
    // `mi_option_purge_delay` in include/mimalloc.h (15 in v2 and v3).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a global option before any thread is started; no pointers involved.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    }
}

/// Threads for blocking work: a local store's reads (object_store runs each on one). Tokio's
/// default (512) let the newest hour's 600 small files start ~60 threads, each with its own
/// allocator pages to fault in: 230 MiB peak and 0.17 s, against 190 MiB and 0.14-0.15 s with
/// 4 on this 2-core VM (2026-12-04). Reads queue for a thread; none waits for another.
fn blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (2 * cores).max(4)
}

fn main() -> ExitCode {
    commit_on_use();
    no_huge_pages();
    let matches = flowsql::cli::Cli::command().get_matches();
    let cli = match flowsql::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if matches.subcommand_name() == Some("serve") {
        purge_sooner();
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads())
        .build()
    {
        Ok(runtime) => runtime.block_on(flowsql::run(cli, &matches)),
        Err(error) => {
            eprintln!("flowsql: error: cannot start the async runtime: {error}");
            ExitCode::from(2)
        }
    }
}
