//! flowsql: SQL over the recorded flow history.
//!
//! One module per concern, after datafusion-cli: `session` (store + tables + functions, shared by
//! every command), `exec` (statements, read-only guard, `\d`), `print` (output formats), `repl`
//! (the shell), `udf` (forensics functions), `timerange` (`--since/--until`).

pub mod cli;
pub mod exec;
pub mod print;
pub mod repl;
pub mod session;
pub mod timerange;
pub mod udf;

use std::process::ExitCode;

use cli::Cli;
use print::Printer;
use session::FlowSession;
use timerange::TimeRange;

pub use flow_schema::error_chain;

/// Runs the command line; the exit status is 0 on success, 1 when a query failed, 2 when the
/// session could not start (bad flags, unreachable store).
pub async fn run(cli: Cli) -> ExitCode {
    let range = match TimeRange::parse(
        cli.since.as_deref(),
        cli.until.as_deref(),
        chrono::Utc::now(),
    ) {
        Ok(range) => range,
        Err(error) => return fail(2, &error),
    };
    let sql = match (&cli.file, cli.sql.is_empty()) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(sql) => Some(sql),
            Err(error) => {
                eprintln!("flowsql: error: cannot read {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, false) => Some(cli.sql.join(" ")),
        (None, true) => None,
    };
    let session = match FlowSession::open(&cli.store, range).await {
        Ok(session) => session,
        Err(error) => return fail(2, &error),
    };
    let result = match sql {
        Some(sql) => match Printer::new(cli.format, cli.output.clone()) {
            Ok(mut printer) => exec::run_sql(&session, &sql, &mut printer).await,
            Err(error) => Err(error.into()),
        },
        None => repl::run(&session, cli.format).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(1, &error),
    }
}

fn fail(code: u8, error: &dyn std::error::Error) -> ExitCode {
    eprintln!("flowsql: error: {}", error_chain(error));
    ExitCode::from(code)
}
