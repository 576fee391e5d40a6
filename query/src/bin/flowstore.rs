use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flowsql::maintenance::cli::StoreCli::parse();
    flowsql::maintenance::allocator::bound_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(flowsql::maintenance::run(cli)),
        Err(error) => {
            eprintln!("flowstore: error: cannot start the async runtime: {error}");
            ExitCode::from(2)
        }
    }
}
