use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

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
