//! Command line of `flowstore`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flow_schema::units::{parse_duration, parse_size};

const EXAMPLES: &str = "\
Examples:
  flowstore compact                          # every hour older than 1h: merge, commit, roll up
  flowstore compact --dry-run                # what it would do
  flowstore rollup                           # rollups of compacted hours that lack one
  flowstore expire --keep 30d --keep-rollups 365d
  flowstore verify --deep                    # every footer and every page
  flowstore du --format csv                  # files, rows and bytes per table and day
  flowstore --store s3://flows/prod compact --settle 2h --target-size 256MiB

What readers see: a compaction writes its files first, then one commit object
(_commit.<seq>.json in the hour's folder) switches every flowsql reader from the small files
to the merged ones; the small files are deleted only --grace later, so queries that started
before the commit finish. Run one flowstore at a time (the CronJob's concurrencyPolicy:
Forbid); a second one cannot commit the same hour twice. DuckDB, Athena and Trino list
folders and see both for the grace period: `flowstore du` shows what is pending, and
ARCHITECTURE.md gives the exact reading.

S3 stores are configured from the environment: AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint.
Exit status: 0 done, 1 done in part (an hour was refused or a damaged object found; each is
named on stderr), 2 nothing done (bad flags, unreachable store).";

#[derive(Debug, Parser)]
#[command(
    name = "flowstore",
    version = env!("FLOW_VERSION"),
    about = "Maintains a flow store: compaction, rollups, retention, verification (flowsql stays read-only)",
    after_help = EXAMPLES
)]
pub struct StoreCli {
    #[command(subcommand)]
    pub command: StoreCommand,

    /// Store URL: s3://bucket/prefix, file:///path or a local path
    #[arg(long, global = true, env = flow_schema::store::STORE_ENV, default_value = flow_schema::store::DEFAULT_STORE, value_name = "URL")]
    pub store: String,

    /// Say what would be done; write and delete nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Merge each settled hour's files (any nodes, any sources) into few time-sorted files,
    /// commit them, roll the hour up, and delete what earlier runs replaced
    Compact(CompactArgs),
    /// Write the flows_hourly rollup of every compacted hour that lacks one
    Rollup(RollupArgs),
    /// Delete raw hours older than --keep (never an hour whose rollup is missing) and rollups
    /// older than --keep-rollups
    Expire(ExpireArgs),
    /// Read every footer (--deep: every page) and report damaged, foreign or unreadable objects
    Verify(VerifyArgs),
    /// What the store holds per table and day: hours, files, rows, bytes, bytes awaiting deletion
    Du(DuArgs),
    /// The files flowsql reads now, for engines that list folders (DuckDB, Athena, Trino): a
    /// list, a DuckDB view over exactly them, or an Athena/Trino view that leaves out the
    /// objects a listing shows but flowsql does not read
    Files(FilesArgs),
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)? as u64;
    if size < 1 << 20 {
        return Err(format!("{text:?} is below the minimum of 1MiB"));
    }
    Ok(size)
}

/// Which hours a command looks at, and which are settled.
#[derive(Debug, Args, Clone)]
pub struct HourArgs {
    /// Only hours whose end is at least this old (recorders seal a file every few minutes and
    /// a spool can drain late)
    #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
    pub settle: Duration,
    /// Only hours at or after T (RFC 3339 or a duration back from now)
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only hours before T
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

/// How long replaced objects stay readable.
#[derive(Debug, Args, Clone)]
pub struct GraceArgs {
    /// Replaced files, superseded commits and stale rollups are deleted this long after the
    /// commit that replaced them (longer than your longest query)
    #[arg(long, default_value = "30m", value_parser = duration, value_name = "DURATION")]
    pub grace: Duration,
    /// Compacted files no commit names (a compactor killed mid-way) are deleted once this old
    #[arg(long, default_value = "6h", value_parser = duration, value_name = "DURATION")]
    pub orphan_grace: Duration,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub hours: HourArgs,
    #[command(flatten)]
    pub grace: GraceArgs,
    /// Rows per output file, as their uncompressed size: an hour larger than this is written
    /// as several time-ordered files
    #[arg(long, default_value = "512MiB", value_parser = size, value_name = "SIZE")]
    pub target_size: u64,
    /// Inputs merged at once: an hour whose files form more overlapping sequences (one per
    /// node and source) is merged through sorted runs in a local temporary folder ($TMPDIR),
    /// each open input costing ~15 MB
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "N")]
    pub merge_width: u16,
    /// Do not write flows_hourly rollups (expire then cannot delete those hours)
    #[arg(long)]
    pub no_rollup: bool,
    /// Stop after compacting this many hours (a CronJob bounds each run; the rest waits)
    #[arg(long, value_name = "N")]
    pub max_hours: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RollupArgs {
    #[command(flatten)]
    pub hours: HourArgs,
    #[command(flatten)]
    pub grace: GraceArgs,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Keep raw flows and lost events this long (hours older are deleted once rolled up)
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub keep: Option<Duration>,
    /// Keep flows_hourly rollups this long
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub keep_rollups: Option<Duration>,
    /// Expired hours stay readable to queries already running this long before deletion
    #[arg(long, default_value = "30m", value_parser = duration, value_name = "DURATION")]
    pub grace: Duration,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Decode every page of every file, not only the footers
    #[arg(long)]
    pub deep: bool,
    /// Only hours at or after T
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only hours before T
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

/// How `flowstore files` writes what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilesFormat {
    /// One URL a line
    List,
    /// CREATE OR REPLACE VIEW <table> AS SELECT * FROM read_parquet([...])
    Duckdb,
    /// CREATE OR REPLACE VIEW <table>_exact over the Hive table <table>, without the objects
    /// flowsql does not read ("$path" NOT IN ...)
    Athena,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// flows, lost_events or flows_hourly
    #[arg(long, default_value = "flows", value_name = "TABLE")]
    pub table: String,
    /// Output
    #[arg(long, value_enum, default_value = "list")]
    pub format: FilesFormat,
    /// Only hours at or after T
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only hours before T
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    /// Output format [default: table]
    #[arg(long, value_enum)]
    pub format: Option<crate::print::OutputFormat>,
}
