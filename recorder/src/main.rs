use std::process::ExitCode;

/// mimalloc, with freed memory returned to the kernel only after it stayed unused for a while
/// ([`purge_delay`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it, per command.
///
/// `import` keeps it for good: decoding allocates and frees large Arrow buffers for every
/// chunk, and returning them made the kernel zero fresh pages for the next chunk (a third of an
/// import's CPU in `clear_page`, perf on 200k flows). `run` is a DaemonSet beside the workloads,
/// where memory is what a platform team budgets: every thread (stream, decode, ship) keeping the
/// peak of what it once freed added up to 300-340 MiB at 130k flows/s; purging what stays unused
/// for 1 s brings the peak to ~160 MiB for ~5% more CPU (purging after 10 ms: 181 MiB, +40%).
/// `make bench-hubble` measures both.
fn purge_delay(command: &Command) {
    // `mi_option_purge_delay` in include/mimalloc.h (15 in both v2 and v3, the version
    // libmimalloc-sys builds by default); in ms, -1 = never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    let delay = match command {
        Command::Import(_) => -1,
        Command::Run(_) => 1000,
    };
    // SAFETY: sets a global option before any thread is started; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
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
    let cli = Cli::parse();
    purge_delay(&cli.command);
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
