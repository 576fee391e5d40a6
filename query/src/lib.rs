//! flowsql: SQL over the recorded flow history.
//!
//! One module per concern, after datafusion-cli: `session` (store + tables + functions, shared by
//! every command), `exec` (statements, read-only guard, `\d`), `print` (output formats), `repl`
//! (the shell), `udf` (forensics functions), and one module per
//! forensics command: `replay` (hubble observe over the history), `regressions` (connections a
//! policy change broke), `report` (compliance checks); `cluster` runs any of them on a Ballista
//! cluster (`--cluster`) and is its scheduler and executors.

pub mod cli;
pub mod cluster;
pub mod exec;
pub mod hints;
pub mod hourly;
pub mod maintenance;
pub mod policy;
pub mod print;
pub mod regressions;
pub mod repl;
pub mod replay;
pub mod report;
pub mod serve;
pub mod session;
pub mod table;
pub mod udf;

use std::process::ExitCode;

use clap::ArgMatches;
use cli::{Cli, Command};
use flow_schema::timerange::TimeRange;
use print::{OutputFormat, Printer};
use session::FlowSession;

pub use flow_schema::error_chain;

/// Runs the command line; the exit status is 0 on success, 1 when a query failed, 2 when the
/// session could not start (bad flags, unreachable store). `matches` are the parsed arguments
/// `cli` came from: `replay` needs the order of its flags.
pub async fn run(cli: Cli, matches: &ArgMatches) -> ExitCode {
    let now = chrono::Utc::now();
    // replay reads --until as hubble does (inclusive); SQL as the first instant left out.
    let parse = match cli.command {
        Some(Command::Replay(_)) => TimeRange::parse_inclusive,
        _ => TimeRange::parse,
    };
    let range = match parse(cli.since.as_deref(), cli.until.as_deref(), now) {
        Ok(range) => range,
        Err(error) => return fail(2, &error),
    };
    // On a cluster a command's whole run is bounded (the shell bounds each statement; a
    // server, a scheduler and an executor run until stopped).
    let shell = cli.command.is_none() && cli.sql.is_empty() && cli.file.is_none();
    let long_running = matches!(
        cli.command,
        Some(Command::Scheduler(_) | Command::Executor(_) | Command::Serve(_))
    );
    match cli.read_options().cluster {
        Some(cluster) if !shell && !long_running => cluster
            .within(command(&cli, matches, range, now))
            .await
            .unwrap_or_else(|timeout| fail(1, &timeout)),
        _ => command(&cli, matches, range, now).await,
    }
}

async fn command(
    cli: &Cli,
    matches: &ArgMatches,
    range: TimeRange,
    now: chrono::DateTime<chrono::Utc>,
) -> ExitCode {
    match &cli.command {
        Some(Command::Replay(args)) => {
            let matches = matches.subcommand_matches("replay").unwrap_or(matches);
            replay(cli, args, matches, range).await
        }
        Some(Command::Regressions(args)) => regressions(cli, args, now).await,
        Some(Command::Policy(args)) => match &args.command {
            policy::PolicyCommand::Whatif(whatif) => policy::run(cli, whatif, range, now).await,
            policy::PolicyCommand::Suggest(suggest) => {
                policy::run_suggest(cli, suggest, range, now).await
            }
        },
        Some(Command::Report(args)) => report::run(cli, args, now).await,
        Some(Command::Serve(_)) if !range.is_unbounded() => {
            eprintln!(
                "flowsql: error: serve takes no --since/--until: each request brings its own \
                 window (hubble observe --since/--until)"
            );
            ExitCode::from(2)
        }
        Some(Command::Scheduler(args)) => {
            node(cluster_flag(matches), cluster::node::run_scheduler(args)).await
        }
        Some(Command::Executor(args)) => {
            node(cluster_flag(matches), cluster::node::run_executor(args)).await
        }
        Some(Command::Serve(args)) => {
            let options = cli.read_options().streaming_whole_flows();
            match serve::run(&cli.store, options, args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(2, &error),
            }
        }
        None => sql(cli, range).await,
    }
}

/// Whether `--cluster` was typed (FLOWSQL_CLUSTER in a node's environment is not an error).
fn cluster_flag(matches: &ArgMatches) -> bool {
    matches.value_source("cluster") == Some(clap::parser::ValueSource::CommandLine)
}

/// A scheduler or executor, run until stopped: 2 when it cannot start.
async fn node<E: std::error::Error>(
    cluster_given: bool,
    run: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    if cluster_given {
        eprintln!("flowsql: error: --cluster is for clients; a scheduler or executor is given its own addresses");
        return ExitCode::from(2);
    }
    match cluster::logging::level_from_env() {
        Ok(level) => cluster::logging::init(level),
        Err(message) => {
            eprintln!("flowsql: error: {message}");
            return ExitCode::from(2);
        }
    }
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(2, &error),
    }
}

async fn sql(cli: &Cli, range: TimeRange) -> ExitCode {
    let format = cli.format.unwrap_or(OutputFormat::Table);
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
    let session = match FlowSession::open(&cli.store, range, cli.read_options()).await {
        Ok(session) => session,
        Err(error) => return fail(2, &error),
    };
    let result = match sql {
        Some(sql) => match Printer::new(format, cli.output.clone()) {
            Ok(mut printer) => exec::run_sql(&session, &sql, &mut printer).await,
            Err(error) => Err(error.into()),
        },
        None => repl::run(&session, format).await,
    };
    match result {
        Ok(()) => answered(&session),
        Err(error) => fail(1, &error),
    }
}

/// The exit status of a command that answered: 1 when store objects had to be left out (a
/// partial answer, each named on stderr as it was met).
fn answered(session: &FlowSession) -> ExitCode {
    if session.damaged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn replay(
    cli: &Cli,
    args: &replay::ReplayArgs,
    matches: &ArgMatches,
    range: TimeRange,
) -> ExitCode {
    if cli.format.is_some() {
        eprintln!("flowsql: error: replay takes its format as -o/--output (compact, dict, table, json, jsonpb), not --format");
        return ExitCode::from(2);
    }
    let lists = match args.filters(matches) {
        Ok(lists) => lists,
        Err(error) => return fail(2, &error),
    };
    if args.print_raw_filters {
        return match replay::print_raw_filters(&lists, std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(1, &error),
        };
    }
    let predicate = match replay::predicate::predicate(&lists) {
        Ok(predicate) => predicate,
        Err(error) => return fail(2, &error),
    };
    let out: Box<dyn std::io::Write + Send> = match &cli.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(error) => {
                eprintln!("flowsql: error: cannot write {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let options = cli.read_options().streaming_whole_flows();
    let session = match FlowSession::open(&cli.store, range, options).await {
        Ok(session) => session,
        Err(error) => return fail(2, &error),
    };
    match args.run(&session, predicate, out).await {
        Ok(_) => answered(&session),
        // `| head`: the reader has seen enough.
        Err(replay::ReplayError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => fail(1, &error),
    }
}

async fn regressions(
    cli: &Cli,
    args: &regressions::RegressionArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> ExitCode {
    if cli.since.is_some() || cli.until.is_some() {
        eprintln!("flowsql: error: regressions reads the periods of --baseline and --window; --since/--until do not apply");
        return ExitCode::from(2);
    }
    let periods = match regressions::Periods::parse(args, now) {
        Ok(periods) => periods,
        Err(error) => return fail(2, &error),
    };
    let session = match FlowSession::open(&cli.store, periods.span(), cli.read_options()).await {
        Ok(session) => session,
        Err(error) => return fail(2, &error),
    };
    let format = args.format.or(cli.format).unwrap_or(OutputFormat::Table);
    let output = args.output.clone().or_else(|| cli.output.clone());
    let mut printer = match Printer::new(format, output) {
        Ok(printer) => printer,
        Err(error) => return fail(2, &error),
    };
    let (b0, b1) = periods.baseline;
    let baseline = match hourly::relation(&session, "baseline", b0, b1).await {
        Ok(baseline) => baseline,
        Err(error) => return fail(1, &error),
    };
    let sql = regressions::sql(&periods, args.also_newly_allowed, &baseline);
    match exec::run_sql(&session, &sql, &mut printer).await {
        Ok(()) => answered(&session),
        Err(error) => fail(1, &error),
    }
}

pub(crate) fn fail(code: u8, error: &dyn std::error::Error) -> ExitCode {
    hints::print_failure(error);
    ExitCode::from(code)
}
