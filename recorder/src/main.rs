use std::process::ExitCode;

/// mimalloc, told to keep freed memory: decoding allocates and frees large Arrow buffers for
/// every chunk, and returning them to the kernel made it zero fresh (huge) pages for the next
/// chunk: a third of an import's CPU in `clear_page` before this (perf, 200k flows).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn keep_freed_memory() {
    // `mi_option_purge_delay` in include/mimalloc.h (15 in both v2 and v3, the version
    // libmimalloc-sys builds by default); -1 = never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a global option before any thread is started; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// No transparent huge pages for this process. mimalloc asks for them (MADV_HUGEPAGE), and then
/// every first touch of a fresh 2 MiB region zeroes all of it, used or not: measured on 1M flows,
/// 4.3 s of system time with them, 1.2 s without, the same user time (perf: `clear_page_erms`
/// under `do_huge_pmd_anonymous_page`). A process flag, so no environment variable is needed.
fn no_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only; failure (an old kernel) just keeps the default.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

use clap::Parser;
use flowrec::cli::{Cli, Command};
use flowrec::{import, run};

/// Exit status: 0 clean, 1 done with reported problems, 2 failed.
fn main() -> ExitCode {
    no_transparent_huge_pages();
    keep_freed_memory();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flowrec: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Import(args) => {
            let config = match args.into_config() {
                Ok(config) => config,
                Err(error) => return usage_error(&error),
            };
            let store = config.store_url.clone();
            match runtime.block_on(import::run(config)) {
                Ok(summary) => {
                    eprintln!("flowrec: {}", summary.describe(&store));
                    ExitCode::from(if summary.is_clean() { 0 } else { 1 })
                }
                Err(error) => failed(&error),
            }
        }
        Command::Run(args) => {
            flowrec::log::set_format(args.log_format);
            flowrec::panics::exit_on_panic();
            let config = match args.into_config() {
                Ok(config) => config,
                Err(error) => return usage_error(&error),
            };
            let store = config.store_url.clone();
            match runtime.block_on(run::run(config)) {
                Ok(summary) => {
                    flowrec::info!("{}", summary.describe(&store));
                    ExitCode::from(if summary.is_complete() { 0 } else { 1 })
                }
                Err(error) => failed(&error),
            }
        }
    }
}

/// (In the format `--log-format` chose; text for `import`.)
fn usage_error(error: &dyn std::error::Error) -> ExitCode {
    flowrec::error!("{error}");
    ExitCode::from(2)
}

fn failed(error: &dyn std::error::Error) -> ExitCode {
    flowrec::error!("error: {}", flow_schema::error_chain(error));
    ExitCode::from(2)
}
