use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flowsql::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(flowsql::run(cli)),
        Err(error) => {
            eprintln!("flowsql: error: cannot start the async runtime: {error}");
            ExitCode::from(2)
        }
    }
}
