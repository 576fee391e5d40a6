use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// mimalloc: a query over many small files opens a reader per column chunk, each a burst of
/// small allocations that glibc's malloc served at a fifth of the query's CPU (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
