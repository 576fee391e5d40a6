use std::process::ExitCode;

/// mimalloc, with freed memory returned to the kernel only after it stayed unused for a while
/// ([`purge_delay`]). The `system-allocator` feature builds with the C library's instead, for
/// heap profilers that see only `malloc` (valgrind's massif and dhat: README, "where the
/// memory goes").
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it, per command
/// ([`flowrec::allocator`] says why).
fn purge_delay(command: &Command) {
    flowrec::allocator::purge_delay(match command {
        Command::Import(_) => flowrec::allocator::Purge::Never,
        Command::Run(_) => flowrec::allocator::Purge::AfterMs(1000),
        Command::Kernel(_) => flowrec::allocator::Purge::Never,
    });
}

use clap::Parser;
use flowrec::cli::{Cli, Command};
use flowrec::{import, run};

/// Exit status: 0 clean, 1 done with reported problems, 2 failed.
fn main() -> ExitCode {
    flowrec::allocator::no_transparent_huge_pages();
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
        Command::Kernel(args) => {
            let plan = flowrec::source::ebpf::plan(
                args.kernel_btf.as_deref(),
                args.kernel_release.as_deref(),
                args.cgroup.as_deref(),
                args.tc_attach.into(),
            );
            match plan {
                Ok(plan) => {
                    print!("{}", plan.report());
                    ExitCode::from(if plan.complete() { 0 } else { 1 })
                }
                Err(error) => usage_error(&error),
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
