//! `flowstore`: the store's maintenance, the only thing besides the recorders that writes to
//! it (flowsql stays read-only). One module per command, sharing a [`Maintainer`]:
//!
//! - `compact`: per settled hour, merge the visible files into few time-sorted files
//!   (`merge`), commit them, roll the hour up (`rollup`), and delete what earlier commits
//!   replaced once the grace period has passed (`gc`);
//! - `rollup`: the rollups compaction did not write (`--no-rollup` runs, failures);
//! - `expire`: retention watermarks, then deletion after the grace period;
//! - `verify`, `du`: read-only reports.
//!
//! Everything a run decides, it decides from the store (the catalog): a run killed at any
//! instant leaves the store readable, and the next run finishes or discards what it left.

pub mod allocator;
pub mod cli;
mod compact;
mod du;
mod expire;
mod files;
mod gc;
mod merge;
mod rollup;
mod runs;
mod verify;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use flow_schema::catalog::{Catalog, CatalogError};
use flow_schema::layout::{rfc3339, NANOS_PER_HOUR};
use flow_schema::store::{Patience, Store};
use indicatif::{ProgressBar, ProgressStyle};

use crate::session::{check_reachable, FlowSession, ReadOptions, SessionError};
use crate::table::footers::{self, Expectation, Footer};
use cli::{StoreCli, StoreCommand};
use flow_schema::timerange::TimeRange;

/// The newest schema of each recorded table, and its version: what compaction writes (older
/// files are rewritten as it) and what rollups read. The current build's by default; tests
/// give a hand-made later version.
#[derive(Debug, Clone)]
pub struct Schemas {
    pub flows: (datafusion::arrow::datatypes::SchemaRef, u32),
    pub lost_events: (datafusion::arrow::datatypes::SchemaRef, u32),
}

impl Schemas {
    pub fn current() -> Schemas {
        use flow_schema::{Table, SCHEMA_VERSION};
        Schemas {
            flows: (Table::Flows.schema(), SCHEMA_VERSION),
            lost_events: (Table::LostEvents.schema(), SCHEMA_VERSION),
        }
    }

    pub fn of(&self, table: flow_schema::Table) -> (datafusion::arrow::datatypes::SchemaRef, u32) {
        match table {
            flow_schema::Table::Flows => self.flows.clone(),
            flow_schema::Table::LostEvents => self.lost_events.clone(),
        }
    }
}

/// What every command works with.
pub struct Maintainer {
    /// Reads through the catalog with `--strict-store` semantics: a compaction must never
    /// lose a file's rows by skipping it.
    pub session: FlowSession,
    pub store: Store,
    pub catalog: Catalog,
    pub dry_run: bool,
    /// The instant the run started (ns): which hours are settled is decided from it.
    pub now: i64,
    pub schemas: Schemas,
    problems: Mutex<Vec<String>>,
    progress: Mutex<Option<ProgressBar>>,
}

impl Maintainer {
    /// A line on stderr (above the progress bar, if one is shown).
    pub fn log(&self, message: impl AsRef<str>) {
        let line = format!("flowstore: {}", message.as_ref());
        match self.progress.lock().expect("progress lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Something that could not be done (the run goes on; the exit status becomes 1).
    pub fn problem(&self, message: impl AsRef<str>) {
        self.log(format!("error: {}", message.as_ref()));
        self.problems
            .lock()
            .expect("problems lock")
            .push(message.as_ref().to_string());
    }

    fn problems(&self) -> usize {
        self.problems.lock().expect("problems lock").len()
    }

    /// A progress bar over `total` steps, shown only on a terminal.
    pub fn start_progress(&self, total: u64, what: &str) {
        if total == 0 || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        *self.progress.lock().expect("progress lock") = Some(bar);
    }

    pub fn advance(&self) {
        if let Some(bar) = self.progress.lock().expect("progress lock").as_ref() {
            bar.inc(1);
        }
    }

    pub fn finish_progress(&self) {
        if let Some(bar) = self.progress.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }

    /// Whether hour `hour` ended at least `settle` ago.
    pub fn settled(&self, hour: i64, settle: Duration) -> bool {
        hour + NANOS_PER_HOUR + nanos(settle) <= self.now
    }

    /// Whether an object modified at `modified` is at least `age` old now (not at the start
    /// of the run: a long run may delete what its own first commits replaced).
    pub fn older_than(&self, modified: chrono::DateTime<Utc>, age: Duration) -> bool {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        modified.timestamp_nanos_opt().unwrap_or(i64::MIN) + nanos(age) <= now
    }

    /// The hours `--since/--until` select (unbounded when not given).
    pub fn range(
        &self,
        since: &Option<String>,
        until: &Option<String>,
    ) -> Result<TimeRange, String> {
        let now = chrono::DateTime::from_timestamp_nanos(self.now);
        TimeRange::parse(since.as_deref(), until.as_deref(), now).map_err(|e| e.to_string())
    }

    /// What `dataset`'s files must be, as this maintainer's schemas say.
    pub fn expectation(
        &self,
        dataset: flow_schema::layout::Dataset,
    ) -> std::sync::Arc<Expectation> {
        let (schema, version) = match dataset.table() {
            Some(table) => self.schemas.of(table),
            None => (
                flow_schema::rollup::rollup_schema(),
                flow_schema::rollup::ROLLUP_SCHEMA_VERSION,
            ),
        };
        std::sync::Arc::new(Expectation::new(schema, version))
    }

    /// The footers of `files` (through the session's metadata cache, so a merge that follows
    /// fetches none again), each checked against `expect`.
    pub async fn footers(
        &self,
        files: Vec<object_store::ObjectMeta>,
        expect: &std::sync::Arc<Expectation>,
    ) -> Result<Vec<Result<Footer, (object_store::ObjectMeta, String)>>, object_store::Error> {
        let cache = self
            .session
            .ctx
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache();
        footers::load(
            std::sync::Arc::clone(&self.store.object_store),
            cache,
            files,
            std::sync::Arc::clone(expect),
            flow_schema::catalog::CONCURRENCY,
        )
        .await
    }

    /// Drops the cached footers: an hour's are not read again once it is compacted and rolled
    /// up, and a run over a month of a fleet's hours would otherwise hold the cache's limit
    /// (256 MB by its own count, more on the heap) on top of the merge.
    pub fn forget_footers(&self) {
        self.session
            .ctx
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache()
            .clear();
        allocator::give_back();
    }

    /// `hour` of `dataset`, for messages.
    pub fn hour_name(dataset: flow_schema::layout::Dataset, hour: i64) -> String {
        format!("{} {}", dataset.name(), rfc3339(hour))
    }
}

pub fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Other(String),
}

impl Maintainer {
    /// Opens the store of `store_url` for maintenance.
    pub async fn open(
        store_url: &str,
        dry_run: bool,
        schemas: Schemas,
    ) -> Result<Maintainer, SessionError> {
        let store = Store::open(store_url, &Patience::MAINTENANCE)?;
        check_reachable(&store).await?;
        let options = ReadOptions {
            tool: "flowstore",
            strict_store: true,
            whole_flows: false,
            cluster: None,
        };
        let session = FlowSession::with_store(store.clone(), TimeRange::default(), options).await?;
        Ok(Maintainer {
            catalog: Catalog::new(store.clone()),
            session,
            store,
            dry_run,
            now: Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
            schemas,
            problems: Mutex::default(),
            progress: Mutex::default(),
        })
    }

    /// `flowstore compact` (for callers that build the arguments themselves).
    pub async fn compact(&self, args: &cli::CompactArgs) -> Result<(), MaintenanceError> {
        compact::run(self, args).await
    }

    /// How many things could not be done so far.
    pub fn problem_count(&self) -> usize {
        self.problems()
    }
}

/// Runs a `flowstore` command line: 0 done, 1 done in part, 2 nothing done.
pub async fn run(cli: StoreCli) -> ExitCode {
    let maintainer = match Maintainer::open(&cli.store, cli.dry_run, Schemas::current()).await {
        Ok(maintainer) => maintainer,
        Err(error) => return fail(&error),
    };
    let result = match &cli.command {
        StoreCommand::Compact(args) => compact::run(&maintainer, args).await,
        StoreCommand::Rollup(args) => rollup::run(&maintainer, args).await,
        StoreCommand::Expire(args) => expire::run(&maintainer, args).await,
        StoreCommand::Verify(args) => verify::run(&maintainer, args).await,
        StoreCommand::Du(args) => du::run(&maintainer, args).await,
        StoreCommand::Files(args) => files::run(&maintainer, args).await,
    };
    maintainer.finish_progress();
    match result {
        Ok(()) if maintainer.problems() == 0 => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(1),
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("flowstore: error: {}", crate::error_chain(error));
    ExitCode::from(2)
}
