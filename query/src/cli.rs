//! Command line of `flowsql`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::print::OutputFormat;
use crate::regressions::RegressionArgs;
use crate::replay::ReplayArgs;
use crate::report::ReportArgs;

const EXAMPLES: &str = "\
Examples:
  flowsql \"select * from flows where verdict='DROPPED'\"
  flowsql --since 2h \"select source_pod_name, destination_pod_name, destination_port,
      drop_reason_desc, count(*) from flows where verdict='DROPPED' group by 1,2,3,4 order by 5 desc\"
  flowsql --since 2026-11-24T09:00Z --until 2026-11-24T09:15Z --format csv --output window.csv \\
      \"select * from flows order by time\"
  flowsql --store s3://flows/prod \"select count(*) from flows where cidr_contains('10.0.0.0/8', ip_destination)\"
  flowsql            # interactive shell: \\d flows lists the columns, \\q quits
  flowsql --since 2026-11-24T09:00Z --until 2026-11-24T09:15Z replay -n prod --verdict DROPPED
  flowsql regressions --baseline 7d --window 1h      # allowed before, denied by policy now
  flowsql --since 24h report compliance.yaml --html report.html
  flowsql --since 7d policy whatif new-policy.yaml --fail-on newly-denied
  flowsql serve --listen 127.0.0.1:4245      # hubble observe --server localhost:4245 --since 1d
  flowsql --cluster df://flowsql-scheduler:50050 regressions --baseline 30d --window 1h

Commands: replay (hubble observe over the history: same filters, same output formats),
regressions (connections a policy change broke), policy (whatif: what a proposed policy would
deny among the recorded connections; suggest: least-privilege policies from them), report
(compliance checks, HTML/Markdown/JSON), serve (the Hubble Observer API over the history),
scheduler and executor (a cluster for --cluster: every command then runs there).

Tables: flows (one row per flow, Hubble field names flattened with _: verdict, drop_reason_desc,
source_pod_name, destination_port, egress_denied_by, ...), lost_events (visibility gaps) and
flows_hourly (per hour and connection: flows, packets, bytes; kept by flowstore for as long as
raw flows are too costly). \\d TABLE describes one.
Exit status: 0 done, 1 a query failed or a store object had to be left out (named on stderr;
--strict-store fails instead), 2 bad flags or an unreachable store.
Functions: cidr_contains(cidr, ip), has_label(labels, 'k8s:app=frontend'), label_value(labels, 'app').
flowsql is read-only: CREATE, INSERT, COPY and the like are refused.
DataFusion options: `SET datafusion.execution.target_partitions = 4;` before a query, or the
matching environment variable (DATAFUSION_EXECUTION_TARGET_PARTITIONS=4). Memory is unbounded by
default; DATAFUSION_RUNTIME_MEMORY_LIMIT=4G bounds it: groupings and sorts then spill to
DATAFUSION_RUNTIME_TEMP_DIRECTORY (default: TMPDIR). Out of memory or spill disk, the error says
which and what to change.

S3 stores are configured from the environment: AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint.";

#[derive(Debug, Parser)]
#[command(
    name = "flowsql",
    version = env!("FLOW_VERSION"),
    about = "SQL over recorded Kubernetes network flows (Parquet on S3 or a local folder)",
    after_help = EXAMPLES,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// SQL to run (several statements separated by ';'); none opens the interactive shell
    #[arg(value_name = "SQL")]
    pub sql: Vec<String>,

    /// Run the SQL in FILE
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "sql"
    )]
    pub file: Option<PathBuf>,

    /// Store URL: s3://bucket/prefix, file:///path or a local path
    #[arg(long, global = true, env = flow_schema::store::STORE_ENV, default_value = flow_schema::store::DEFAULT_STORE, value_name = "URL")]
    pub store: String,

    /// Only flows at or after T: RFC 3339 (2026-11-24T09:00Z) or a duration back from now (2h, 7d)
    #[arg(long, global = true, value_name = "T")]
    pub since: Option<String>,

    /// Only flows before T (same forms as --since; replay: at or before T, as hubble)
    #[arg(long, global = true, value_name = "T")]
    pub until: Option<String>,

    /// Output format [default: table]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,

    /// Write results to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Fail when a store object cannot be read (damaged, truncated, foreign, newer schema);
    /// by default it is named on stderr, left out, and the exit status is 1
    #[arg(long, global = true)]
    pub strict_store: bool,

    /// Plan and run the statements on a cluster (`flowsql scheduler` + executors), given as
    /// df://HOST:PORT; before the command (replay's own --cluster is hubble's filter)
    #[arg(long, env = crate::cluster::CLUSTER_ENV, value_name = "URL")]
    pub cluster: Option<String>,

    /// With --cluster: how long a command (a statement, in the shell) may take before flowsql
    /// gives up on the cluster's answer
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = positive_duration)]
    pub cluster_timeout: std::time::Duration,
}

/// A duration above zero (a zero timeout would fail every command at once).
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match flow_schema::units::parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0s".into()),
        d => Ok(d),
    }
}

impl Cli {
    /// How the session treats the store.
    pub fn read_options(&self) -> crate::session::ReadOptions {
        crate::session::ReadOptions {
            strict_store: self.strict_store,
            // One string for the whole process: the options are copied into every session.
            cluster: self
                .cluster
                .as_deref()
                .map(|url| crate::cluster::ClusterOptions {
                    url: Box::leak(url.to_owned().into_boxed_str()),
                    timeout: self.cluster_timeout,
                }),
            ..crate::session::ReadOptions::FLOWSQL
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print recorded flows like `hubble observe`: same filters, same output formats
    Replay(Box<ReplayArgs>),
    /// Connections allowed in a baseline period and denied by policy in a window (or the reverse)
    Regressions(RegressionArgs),
    /// Network policies against the recorded connections (whatif: before they are applied)
    Policy(crate::policy::PolicyArgs),
    /// Run a spec of compliance checks; write HTML, Markdown or JSON; exit 1 if a check failed
    Report(ReportArgs),
    /// Serve the history on the Hubble Observer API (hubble observe --server, Hubble UI)
    Serve(crate::serve::ServeArgs),
    /// Run a cluster scheduler (Apache Ballista) for `flowsql --cluster df://HOST:PORT`
    Scheduler(crate::cluster::SchedulerArgs),
    /// Run a cluster executor: it registers with a scheduler and reads the store for it
    Executor(crate::cluster::ExecutorArgs),
}
