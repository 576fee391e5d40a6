//! `flowsql report SPEC.yaml`: named compliance checks over a period ([`spec`]), each a query
//! whose rows are violations ([`checks`]), an overview of the period ([`charts`]), written as
//! HTML, Markdown or JSON ([`render`]) to files or S3. Exit status: 0 every check passed, 1 a
//! check failed, 2 no report (bad spec, bad SQL, unreachable store, unwritable output).

pub mod charts;
pub mod checks;
pub mod render;
/// The spec is parsed in its own crate (flow-spec) so it can be fuzzed without DataFusion.
pub use flow_spec::report as spec;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use flow_schema::store::{Location, Patience, Store};
use object_store::{ObjectStoreExt, PutPayload};

use crate::cli::Cli;
use crate::session::FlowSession;
use flow_schema::timerange::TimeRange;
use render::Report;
use spec::Spec;

const EXAMPLES: &str = "\
Examples:
  flowsql --since 24h report compliance.yaml --html report.html
  flowsql --store s3://flows/prod --since 24h report compliance.yaml \\
      --html 's3://flows/reports/{date}.html' --json 's3://flows/reports/{date}.json'
  flowsql --since 2026-11-01 --until 2026-12-01 report audit.yaml --markdown audit.md

A spec (YAML) names its checks; each is one of:
  sql: SELECT ...            with expect: empty (the default) or max: N rows
  no_flows_between: {from: NS, to: NS}           (both ways unless one_way: true; dropped
                                                  flows do not count unless include_dropped)
  egress_to_world: {namespace: NS, allow: [CIDR, '*.fqdn.glob', ...]}
  policy_drops: {max_per_namespace: N}
  recording_complete: {max_lost_events: 0}       (lost_events; recorder disconnections fail)
Optional top-level keys: title, since, until (--since/--until win).
Exit status: 0 all checks passed, 1 a check failed, 2 the report could not be produced.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ReportArgs {
    /// The spec: named checks (YAML)
    #[arg(value_name = "SPEC.yaml")]
    pub spec: PathBuf,
    /// Write the HTML report (self-contained) to FILE or s3://bucket/key; `{date}` in it (any
    /// of the outputs) becomes the run's UTC date, e.g. s3://flows/reports/{date}.html
    #[arg(long, value_name = "FILE|S3-URL")]
    pub html: Option<String>,
    /// Write the report as Markdown
    #[arg(long, value_name = "FILE|S3-URL")]
    pub markdown: Option<String>,
    /// Write the report as JSON
    #[arg(long, value_name = "FILE|S3-URL")]
    pub json: Option<String>,
    /// Rows shown behind each failed check
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_rows: usize,
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("cannot read the spec {path}: {source}")]
    ReadSpec {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("{file}: check {check:?}: {cause}")]
    Check {
        file: String,
        check: String,
        cause: String,
    },
    #[error(transparent)]
    Time(#[from] flow_schema::timerange::TimeRangeError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("cannot compute the overview: {0}")]
    Overview(crate::exec::ExecError),
    #[error("cannot write {target}: {cause}")]
    Write { target: String, cause: String },
}

pub async fn run(cli: &Cli, args: &ReportArgs, now: DateTime<Utc>) -> ExitCode {
    match report(cli, args, now).await {
        Ok(report) if report.passed && report.skipped_objects.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            crate::hints::print_failure(&error);
            ExitCode::from(2)
        }
    }
}

async fn report(cli: &Cli, args: &ReportArgs, now: DateTime<Utc>) -> Result<Report, ReportError> {
    let file = args.spec.display().to_string();
    let text = std::fs::read_to_string(&args.spec).map_err(|source| ReportError::ReadSpec {
        path: file.clone(),
        source,
    })?;
    let spec = Spec::parse(&file, &text)?;
    let since = cli.since.as_deref().or(spec.since.as_deref());
    let until = cli.until.as_deref().or(spec.until.as_deref());
    let range = TimeRange::parse(since, until, now)?;
    let session = FlowSession::open(&cli.store, range, cli.read_options()).await?;
    let check_error = |check: String, cause: String| ReportError::Check {
        file: file.clone(),
        check,
        cause,
    };
    let planned = checks::plan(&session, &spec.checks)
        .await
        .map_err(|(check, e)| check_error(check, e.to_string()))?;
    let total = planned.len();
    let mut results = Vec::with_capacity(total);
    for (i, check) in planned.into_iter().enumerate() {
        let name = check.name().to_owned();
        let result = check
            .run(&session, args.max_rows)
            .await
            .map_err(|e| check_error(name.clone(), e.to_string()))?;
        println!(
            "{} [{}/{total}] {}: {}",
            if result.passed { "PASS" } else { "FAIL" },
            i + 1,
            result.name,
            result.detail
        );
        results.push(result);
    }
    let overview = charts::overview(&session)
        .await
        .map_err(ReportError::Overview)?;
    let format = |ns: Option<i64>| {
        ns.map(|ns| {
            DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Secs, true)
        })
    };
    let period = match (format(range.since), format(range.until)) {
        (None, None) => "all recorded history".to_owned(),
        (Some(s), None) => format!("since {s}"),
        (None, Some(u)) => format!("until {u}"),
        (Some(s), Some(u)) => format!("{s} to {u}"),
    };
    let report = Report {
        title: spec.title.clone(),
        store: session.store.describe(),
        period,
        generated_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        passed: results.iter().all(|r| r.passed),
        checks: results,
        overview,
        skipped_objects: session
            .reader
            .damage
            .met()
            .into_iter()
            .map(|d| format!("{}: {}", d.url, d.reason))
            .collect(),
    };
    let outputs = [
        (&args.html, report.html()),
        (&args.markdown, report.markdown()),
        (&args.json, report.json()),
    ];
    // `{date}` in a target: the run's UTC date, so that a scheduled job keeps one report a
    // day without a shell to compute the name.
    let day = now.format("%Y-%m-%d").to_string();
    for (target, content) in outputs {
        if let Some(target) = target {
            let target = &target.replace("{date}", &day);
            write_output(target, content.into_bytes()).await?;
            eprintln!("flowsql: wrote {target}");
        }
    }
    if !report.skipped_objects.is_empty() {
        println!(
            "INCOMPLETE: {} store object(s) left out (see the warnings above)",
            report.skipped_objects.len()
        );
    }
    println!(
        "{}: {} of {} checks passed",
        if report.passed { "PASSED" } else { "FAILED" },
        report.checks.len() - report.failed(),
        report.checks.len()
    );
    Ok(report)
}

/// A local file, or an object on S3 (`s3://bucket/key`, configured from the environment as
/// the store is).
async fn write_output(target: &str, bytes: Vec<u8>) -> Result<(), ReportError> {
    let fail = |cause: String| ReportError::Write {
        target: target.to_owned(),
        cause,
    };
    if !target.starts_with("s3://") {
        return std::fs::write(target, bytes).map_err(|e| fail(e.to_string()));
    }
    let (folder, name) = target
        .rsplit_once('/')
        .filter(|(folder, name)| !name.is_empty() && folder.len() > "s3:/".len())
        .ok_or_else(|| fail("expected s3://bucket/key".into()))?;
    let store = Store::open(folder, &Patience::INTERACTIVE).map_err(|e| fail(e.to_string()))?;
    debug_assert!(matches!(store.location, Location::S3 { .. }));
    store
        .object_store
        .put(&store.path(name), PutPayload::from(bytes))
        .await
        .map_err(|e| fail(crate::error_chain(&e)))?;
    Ok(())
}
