//! The one session setup every flowsql (and flowstore) command shares: the store opened and
//! checked, its tables (`flows`, `lost_events`, `flows_hourly`) registered, the forensics
//! functions, and the damaged-store policy (`table::damage`).
//!
//! Time pruning: `--since/--until` become a `time` filter over each recorded table, and every
//! `time` predicate (those and the SQL's) reaches the tables (`table`), which list only the
//! `date=…/hour=…` prefixes they allow; a file of another hour is never listed nor opened.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{col, lit, DataFrame, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use flow_schema::layout::Dataset;
use flow_schema::store::{Location, Patience, Store, StoreError};
use flow_schema::Table;

use crate::table::damage::DamageLog;
use crate::table::{sorts_by_time, StoreReader, StoreTable, StringColumns};
use crate::udf;
use flow_schema::timerange::TimeRange;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unreachable(flow_schema::store::ProbeError),
    #[error("store {0} does not exist (nothing was recorded there; `flowrec import` creates it)")]
    Missing(String),
    #[error("cannot set up the tables: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("a DATAFUSION_* environment variable is invalid: {0}")]
    Config(DataFusionError),
    #[error("environment variable {var} is invalid: {cause}")]
    RuntimeEnv { var: String, cause: DataFusionError },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

const COLLECT_STATISTICS_VAR: &str = "DATAFUSION_EXECUTION_COLLECT_STATISTICS";
const RUNTIME_VAR_PREFIX: &str = "DATAFUSION_RUNTIME_";
const METADATA_CACHE_VAR: &str = "DATAFUSION_RUNTIME_METADATA_CACHE_LIMIT";
/// Set, it overrides [`ReadOptions::whole_flows`].
const BATCH_SIZE_VAR: &str = "DATAFUSION_EXECUTION_BATCH_SIZE";
/// Rows per batch when every column of the flows is streamed out (replay, serve): a flow is
/// ~100 columns with label lists, so DataFusion's 8,192 rows make ~15-20 MB batches, several of
/// which are alive at once along the pipeline. Measured on `--all` over 1M flows: server peak
/// 387-408 MiB at 8,192, ~300 MiB at 2,048, the same speed.
const WHOLE_FLOW_BATCH_ROWS: usize = 2048;

/// A query session over one store.
pub struct FlowSession {
    pub ctx: SessionContext,
    pub store: Store,
    pub range: TimeRange,
    /// What every table reads through (the catalog, the damage log).
    pub reader: Arc<StoreReader>,
    /// The cluster its statements run on, if any.
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

/// How a session treats the store.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// The tool named in warnings (`flowsql`, `flowstore`).
    pub tool: &'static str,
    /// `--strict-store`: a damaged object fails the query instead of being left out.
    pub strict_store: bool,
    /// The statements stream every column of many flows (replay, serve): smaller batches
    /// (see [`WHOLE_FLOW_BATCH_ROWS`]), unless the environment sets the batch size.
    pub whole_flows: bool,
    /// `--cluster df://HOST:PORT`: statements are planned and run there (`crate::cluster`).
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

impl ReadOptions {
    pub const FLOWSQL: ReadOptions = ReadOptions {
        tool: "flowsql",
        strict_store: false,
        whole_flows: false,
        cluster: None,
    };

    /// The same, for statements that stream whole flows.
    pub fn streaming_whole_flows(self) -> ReadOptions {
        ReadOptions {
            whole_flows: true,
            ..self
        }
    }
}

impl FlowSession {
    pub async fn open(
        store_url: &str,
        range: TimeRange,
        options: ReadOptions,
    ) -> Result<FlowSession, SessionError> {
        let store = Store::open(store_url, &Patience::INTERACTIVE)?;
        check_reachable(&store).await?;
        Self::with_store(store, range, options).await
    }

    /// A session over an opened store (flowstore opens it with its own patience).
    pub async fn with_store(
        store: Store,
        range: TimeRange,
        options: ReadOptions,
    ) -> Result<FlowSession, SessionError> {
        let mut config = SessionConfig::from_env()
            .map_err(SessionError::Config)?
            .with_information_schema(true);
        // File statistics are collected per statement, when it sorts by time
        // ([`FlowSession::frame`]); the environment variable (or SET) turns them on everywhere.
        if std::env::var_os(COLLECT_STATISTICS_VAR).is_none() {
            config.options_mut().execution.collect_statistics = false;
        }
        // Set before the context exists: set on a running session, the same batch size
        // measured ~50 MiB more at peak on `replay --all` (not explained yet).
        if options.whole_flows && std::env::var_os(BATCH_SIZE_VAR).is_none() {
            config = config.with_batch_size(WHOLE_FLOW_BATCH_ROWS);
        }
        // Filter pushdown into the Parquet reader is decided per scan by the tables
        // (`table::worth_pushing_down`); DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true (or
        // SET) forces it everywhere.
        let ctx = match options.cluster {
            None => SessionContext::new_with_config(config),
            Some(cluster) => crate::cluster::context(config, cluster.url).await?,
        };
        // Footers are kept for the read that follows planning: 50 MB (DataFusion's default)
        // holds ~1,000 of a flows file's; an hour of a 50-node fleet is 600.
        if std::env::var_os(METADATA_CACHE_VAR).is_none() {
            ctx.sql("SET datafusion.runtime.metadata_cache_limit = '256M'")
                .await
                .map_err(SessionError::Config)?;
        }
        apply_runtime_env(&ctx).await?;
        if let Location::S3 { .. } = store.location {
            let url = url::Url::parse(&store.object_store_url()).expect("s3://bucket is a URL");
            ctx.register_object_store(&url, Arc::clone(&store.object_store));
        }
        for function in udf::all() {
            ctx.register_udf(function);
        }
        let damage = DamageLog::new(options.tool, options.strict_store);
        let strings = match options.cluster {
            None => StringColumns::Views,
            Some(_) => StringColumns::Plain,
        };
        let reader = Arc::new(StoreReader::new(store.clone(), damage, strings));
        let session = FlowSession {
            ctx,
            store,
            range,
            reader,
            cluster: options.cluster,
        };
        for table in Table::ALL {
            let provider = Arc::new(StoreTable::recorded(Arc::clone(&session.reader), table));
            session.register(table.name(), provider)?;
        }
        let rollups = Arc::new(StoreTable::rollups(Arc::clone(&session.reader)));
        session.register(Dataset::FlowsHourly.name(), rollups)?;
        Ok(session)
    }

    /// Makes `table` read exactly `files` (still limited to the session's range): what a
    /// reader that tracks the store file by file (`serve`'s follow) asks for.
    pub fn pin(
        &self,
        table: Table,
        files: Vec<object_store::ObjectMeta>,
    ) -> Result<(), DataFusionError> {
        let provider = StoreTable::pinned(
            Arc::clone(&self.reader),
            table.schema(),
            flow_schema::schema::SCHEMA_VERSION,
            files,
        );
        self.ctx.deregister_table(table.name())?;
        self.register(table.name(), Arc::new(provider))
    }

    /// Objects the session had to leave out of its answers (a partial answer: exit 1).
    pub fn damaged(&self) -> bool {
        !self.reader.damage.is_empty()
    }

    /// `plan` ready to run, with DataFusion's per-file statistics collected only if it sorts by
    /// time (see [`crate::table::sorts_by_time`]). Every query flowsql runs is planned here.
    pub fn frame(&self, plan: LogicalPlan) -> DataFrame {
        let mut state = self.ctx.state();
        if sorts_by_time(&plan) {
            state
                .config_mut()
                .options_mut()
                .execution
                .collect_statistics = true;
        }
        DataFrame::new(state, plan)
    }

    /// Registers `provider` as `name`, limited to the session's `--since/--until` (on `time`:
    /// a flow's instant, a rollup's hour).
    fn register(
        &self,
        name: &str,
        provider: Arc<dyn datafusion::datasource::TableProvider>,
    ) -> Result<(), DataFusionError> {
        if self.range.is_unbounded() {
            self.ctx.register_table(name, provider)?;
            return Ok(());
        }
        let mut frame = self.ctx.read_table(provider)?;
        if let Some(since) = self.range.since {
            frame = frame.filter(col("time").gt_eq(timestamp(since)))?;
        }
        if let Some(until) = self.range.until {
            frame = frame.filter(col("time").lt(timestamp(until)))?;
        }
        self.ctx.register_table(name, frame.into_view())?;
        Ok(())
    }
}

/// `DATAFUSION_RUNTIME_*` variables, applied as `SET datafusion.runtime.…` would be
/// (`DATAFUSION_RUNTIME_MEMORY_LIMIT=4G`: sorts spill to disk beyond it). DataFusion reads the
/// environment for session options only; without this the runtime ones were silently ignored.
async fn apply_runtime_env(ctx: &SessionContext) -> Result<(), SessionError> {
    // Collected first: the environment iterator must not be held across an await (the
    // session is opened inside spawned tasks by `serve`).
    let vars: Vec<_> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .collect();
    for (var, value) in vars {
        let Some(name) = var.strip_prefix(RUNTIME_VAR_PREFIX) else {
            continue;
        };
        let value = value.to_string_lossy().replace('\'', "''");
        let sql = format!("SET datafusion.runtime.{} = '{value}'", name.to_lowercase());
        if let Err(cause) = ctx.sql(&sql).await {
            return Err(SessionError::RuntimeEnv { var, cause });
        }
    }
    Ok(())
}

fn timestamp(ns: i64) -> datafusion::prelude::Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// Fails early, naming the store, when it cannot be read: a typo'd folder, an S3 endpoint that
/// refuses connections, a missing bucket or bad credentials.
pub async fn check_reachable(store: &Store) -> Result<(), SessionError> {
    match &store.location {
        Location::Local(path) => {
            if path.is_dir() {
                Ok(())
            } else {
                Err(SessionError::Missing(path.display().to_string()))
            }
        }
        Location::S3 { .. } => store.probe().await.map_err(SessionError::Unreachable),
    }
}
