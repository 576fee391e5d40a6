//! The store's tables, as DataFusion sees them. Each scan asks the catalog
//! (`flow_schema::catalog`) which files are visible in the hours the query's time predicates
//! reach, loads their footers (in parallel, cached for the read that follows), leaves out the
//! files whose time range misses the query, and hands DataFusion exactly those files with
//! their row counts and time ranges. Nothing is listed twice and nothing outside the
//! visibility rule is ever read, so a compaction running meanwhile cannot show a row twice.
//! Small files (the hours not compacted yet) skip the footer loading and DataFusion's Parquet
//! scan: [`small`] reads each whole, its footer with it, and leaves it out then if its time
//! range misses the query.
//!
//! A [`StoreTable`] reads one of:
//! - `flows` and `lost_events`, over the raw hours;
//! - `flows_hourly`, the newest rollup of each hour;
//! - exactly the files it was given (a compaction's inputs and outputs, the rollups the hourly
//!   summary found exact).
//!
//! Every filter is reported `Inexact`, so DataFusion still applies it: the partitions and time
//! ranges only ever narrow what is read.

pub mod bounds;
pub mod choices;
pub mod damage;
pub mod footers;
pub mod reader;
pub mod small;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ColumnStatistics, DFSchema, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::create_ordering;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, Expr};
use datafusion::scalar::ScalarValue;
use flow_schema::catalog::{Catalog, CONCURRENCY};
use flow_schema::layout::Dataset;
use flow_schema::rollup::{rollup_schema, ROLLUP_SCHEMA_VERSION};
use flow_schema::store::Store;
use flow_schema::{Table, SCHEMA_VERSION};
use object_store::ObjectMeta;

pub use bounds::{time_bounds, Bounds};
use choices::nothing_to_prune;
pub use choices::{sorts_by_time, worth_pushing_down};
use damage::{Damage, DamageLog};
use flow_schema::layout::NANOS_PER_HOUR;
use footers::{Expectation, Footer};
use reader::CheckedReaderFactory;

/// Up to this many files, footers are loaded while planning whatever the query.
const PREFETCH_FILES: usize = 1024;

/// Files smaller than this are read by flowsql's own scan ([`small`]); through DataFusion's,
/// files smaller than this on average are read without their page index.
const SMALL_FILE: u64 = 1 << 20;

/// Above this many time-ordered file groups, a sort by time reads the files unordered and
/// sorts (each group is a stream the merge keeps open).
const MAX_ORDERED_GROUPS: usize = 128;

/// What every table of a session shares: the store, its catalog and the damage log.
#[derive(Debug)]
pub struct StoreReader {
    pub store: Store,
    pub catalog: Catalog,
    pub damage: DamageLog,
    /// How the tables' string columns reach DataFusion.
    pub strings: StringColumns,
}

/// How string columns reach DataFusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringColumns {
    /// Plain strings as views, dictionaries kept: the Parquet reader makes views without a
    /// copy, and grouping and comparing them is cheaper. Every local session.
    Views,
    /// Every string column plain (`Utf8`), dictionaries decoded: a cluster's. Arrow Flight,
    /// which carries Ballista's shuffles and results, turns dictionaries into plain strings
    /// on the way (the next stage then meets other types than it was planned with: "RowConverter
    /// column schema mismatch"), and Ballista turns view types off.
    Plain,
}

impl StoreReader {
    pub fn new(store: Store, damage: DamageLog, strings: StringColumns) -> StoreReader {
        StoreReader {
            catalog: Catalog::new(store.clone()),
            store,
            damage,
            strings,
        }
    }

    fn report(&self, meta: &ObjectMeta, reason: String) -> Result<()> {
        self.damage
            .report(Damage {
                url: self.store.url_of(&meta.location),
                reason,
            })
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// Plans a scan of `files` (rows of `shape`), leaving out the damaged ones (reported) and
    /// those whose time range misses `bounds`: the small files through [`small`], the others
    /// through DataFusion's Parquet scan.
    async fn scan_files(
        &self,
        shape: &Shape,
        files: Vec<ObjectMeta>,
        request: Request<'_>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Not for a merge or a statement sorted by time (they need each file's time range
        // before reading, to read in order), nor on a cluster (Ballista ships DataFusion's
        // scans to its executors, not ours).
        let small_files = self.strings == StringColumns::Views
            && !shape.merge
            && !request.state.config().collect_statistics();
        let (small, others): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|meta| small_files && meta.size < SMALL_FILE);
        let mut plans = Vec::with_capacity(2);
        if !small.is_empty() {
            plans.push(self.scan_small(shape, small, request)?);
        }
        if !others.is_empty() || plans.is_empty() {
            plans.push(self.scan_parquet(shape, others, request).await?);
        }
        UnionExec::try_new(plans)
    }

    /// Plans a scan of small files: no footer read while planning (each is read with its
    /// file, in one request).
    fn scan_small(
        &self,
        shape: &Shape,
        files: Vec<ObjectMeta>,
        request: Request<'_>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = match request.projection {
            Some(projection) => projection.clone(),
            None => (0..shape.schema.fields().len()).collect(),
        };
        let filter = match worth_pushing_down(request.filters) {
            true => small_filter(request.state, &shape.schema, request.filters)?,
            false => None,
        };
        let scan = small::SmallScan::new(
            Arc::clone(&self.store.object_store),
            Arc::clone(&shape.expect),
            self.damage.clone(),
            self.store.url_of(&object_store::path::Path::from("")),
            Arc::clone(&shape.schema),
            projection,
            filter,
            request.bounds,
            request.limit,
        )?;
        let partitions = request.state.config().target_partitions().max(1);
        Ok(Arc::new(small::SmallFilesExec::new(
            scan, files, partitions,
        )))
    }

    /// Plans a scan of `files` through DataFusion's Parquet scan.
    async fn scan_parquet(
        &self,
        shape: &Shape,
        files: Vec<ObjectMeta>,
        request: Request<'_>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Request {
            state,
            bounds,
            projection,
            filters,
            limit,
        } = request;
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        // Footers are loaded while planning when they pay: few files, a window that cuts into
        // an hour (files outside it are left out), a statement sorted by time (ordered groups
        // need each file's range), a merge. Otherwise (a whole day of a fleet's small files)
        // each footer is read once, when DataFusion opens the file, and checked then.
        let cuts = |t: Option<i64>| t.is_some_and(|t| t.rem_euclid(NANOS_PER_HOUR) != 0);
        let prefetch = files.len() <= PREFETCH_FILES
            || shape.merge
            || state.config().collect_statistics()
            || cuts(bounds.since)
            || cuts(bounds.until);
        let mut planned = Vec::with_capacity(files.len());
        if prefetch {
            let footers = footers::load(
                Arc::clone(&self.store.object_store),
                Arc::clone(&cache),
                files,
                Arc::clone(&shape.expect),
                CONCURRENCY,
            )
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            for footer in footers {
                match footer {
                    Ok(footer) if bounds.meets(footer.min_time, footer.max_time) => {
                        planned.push(Planned::from(footer))
                    }
                    Ok(_) => {}
                    Err((meta, reason)) => self.report(&meta, reason)?,
                }
            }
        } else {
            for meta in files {
                // DataFusion skips an empty object without opening it: say so here.
                if meta.size < footers::MIN_PARQUET_SIZE {
                    let reason =
                        footers::fetch(self.store.object_store.as_ref(), &meta, &shape.expect)
                            .await
                            .map_err(|e| DataFusionError::External(Box::new(e)))?
                            .err()
                            .unwrap_or_default();
                    self.report(&meta, reason)?;
                } else {
                    planned.push(Planned::unknown(meta));
                }
            }
        }
        if planned.is_empty() {
            let schema = datafusion::physical_plan::project_schema(&shape.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        planned.sort_by_key(|f| (f.min_time, f.meta.location.clone()));
        let factory = CheckedReaderFactory {
            store: Arc::clone(&self.store.object_store),
            cache,
            expect: Arc::clone(&shape.expect),
            damage: self.damage.clone(),
            url_prefix: self.store.url_of(&object_store::path::Path::from("")),
            empty: shape.empty_footer()?,
            cache_footers: prefetch,
        };
        let config = shape.scan_config(
            state,
            &self.store,
            planned,
            bounds,
            projection,
            filters,
            limit,
            Arc::new(factory),
        )?;
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// What one scan of a table asks: DataFusion's arguments, and the time bounds taken from
/// its filters.
#[derive(Clone, Copy)]
struct Request<'a> {
    state: &'a dyn Session,
    bounds: Bounds,
    projection: Option<&'a Vec<usize>>,
    filters: &'a [Expr],
    limit: Option<usize>,
}

/// A file as the scan plans it: its row count and time range when its footer was loaded.
#[derive(Debug, Clone)]
struct Planned {
    meta: ObjectMeta,
    exact_schema: bool,
    rows: Option<u64>,
    min_time: Option<i64>,
    max_time: Option<i64>,
}

impl Planned {
    fn unknown(meta: ObjectMeta) -> Planned {
        Planned {
            meta,
            exact_schema: false,
            rows: None,
            min_time: None,
            max_time: None,
        }
    }
}

impl From<Footer> for Planned {
    fn from(footer: Footer) -> Planned {
        Planned {
            meta: footer.meta,
            exact_schema: footer.exact_schema,
            rows: Some(footer.rows),
            min_time: footer.min_time,
            max_time: footer.max_time,
        }
    }
}

/// What a table's rows look like to the scan: its schema, its sort column, what its files
/// must be.
#[derive(Debug)]
struct Shape {
    /// As DataFusion reads it (strings as views, unless `merge`).
    schema: SchemaRef,
    /// The first column: every file is sorted by it.
    sort_column: String,
    expect: Arc<Expectation>,
    /// A compaction's input: rows in the stored types, files always in time-ordered groups
    /// (however many), so that DataFusion merges them and never sorts.
    merge: bool,
    /// What a damaged file reads as (made once).
    empty: std::sync::OnceLock<Arc<parquet::file::metadata::ParquetMetaData>>,
}

impl Shape {
    fn new(stored: SchemaRef, version: u32, strings: StringColumns) -> Shape {
        Shape {
            schema: read_types(&stored, strings),
            sort_column: stored.field(0).name().clone(),
            expect: Arc::new(Expectation::new(stored, version)),
            merge: false,
            empty: std::sync::OnceLock::new(),
        }
    }

    fn empty_footer(&self) -> Result<Arc<parquet::file::metadata::ParquetMetaData>> {
        if let Some(empty) = self.empty.get() {
            return Ok(Arc::clone(empty));
        }
        let empty = reader::empty_footer(&self.expect.schema)?;
        Ok(Arc::clone(self.empty.get_or_init(|| empty)))
    }

    fn for_merge(stored: SchemaRef, version: u32) -> Shape {
        Shape {
            schema: Arc::clone(&stored),
            merge: true,
            ..Shape::new(stored, version, StringColumns::Views)
        }
    }

    /// The session's Parquet options (SET datafusion.execution.parquet.… still applies), with
    /// filter pushdown decided for this scan, and no page index for small files (a page is
    /// the whole column there: the index only costs a read).
    fn parquet_options(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        files: &[Planned],
        bounds: Bounds,
    ) -> TableParquetOptions {
        let mut parquet = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        parquet.global.pushdown_filters |= worth_pushing_down(filters);
        let bytes: u64 = files.iter().map(|f| f.meta.size).sum();
        if bytes / (files.len().max(1) as u64) < SMALL_FILE {
            parquet.global.enable_page_index = false;
        }
        let within = files
            .iter()
            .all(|f| bounds.contains(f.min_time, f.max_time));
        if nothing_to_prune(filters, &self.sort_column, within) {
            parquet.global.pruning = false;
            parquet.global.bloom_filter_on_read = false;
        }
        parquet
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_config(
        &self,
        state: &dyn Session,
        store: &Store,
        files: Vec<Planned>,
        bounds: Bounds,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        factory: Arc<CheckedReaderFactory>,
    ) -> Result<FileScanConfig> {
        let sort_index = 0;
        let total_rows: Option<u64> = files.iter().map(|f| f.rows).sum();
        let total_bytes: u64 = files.iter().map(|f| f.meta.size).sum();
        let (min, max) = (
            files.iter().filter_map(|f| f.min_time).min(),
            files.iter().filter_map(|f| f.max_time).max(),
        );
        let time_type = self.schema.field(sort_index).data_type().clone();
        let statistics = |rows: Option<u64>, bytes: u64, min: Option<i64>, max: Option<i64>| {
            let mut stats = Statistics::new_unknown(&self.schema);
            let Some(rows) = rows else {
                return stats;
            };
            stats.num_rows = Precision::Exact(rows as usize);
            stats.total_byte_size = Precision::Inexact(bytes as usize);
            stats.column_statistics[sort_index] = ColumnStatistics {
                min_value: timestamp(min, &time_type),
                max_value: timestamp(max, &time_type),
                null_count: Precision::Exact(0),
                ..ColumnStatistics::new_unknown()
            };
            stats
        };
        let options = self.parquet_options(state, filters, &files, bounds);
        // Each file's statistics serve only the time-ordered groups below; made for every one
        // of a newest hour's 600 files without them, they were a tenth of its query (131
        // columns of unknown statistics each).
        let ordered = self.merge || state.config().collect_statistics();
        let partitioned: Vec<PartitionedFile> = files
            .iter()
            .map(|file| {
                let partitioned = PartitionedFile::new_from_meta(file.meta.clone());
                let partitioned = if ordered {
                    partitioned.with_statistics(Arc::new(statistics(
                        file.rows,
                        file.meta.size,
                        file.min_time,
                        file.max_time,
                    )))
                } else {
                    partitioned
                };
                // A file of the current schema is read as it, without decoding the Arrow
                // schema it embeds (a measurable part of opening a small file).
                if file.exact_schema {
                    partitioned.with_arrow_schema(Arc::clone(&self.expect.schema))
                } else {
                    partitioned
                }
            })
            .collect();
        let ordering = create_ordering(
            &self.schema,
            &[vec![col(self.sort_column.as_str()).sort(true, false)]],
        )?;
        let target = state.config().target_partitions().max(1);
        let all = FileGroup::new(partitioned);
        // A statement sorted by time (it asked for statistics, `FlowSession::frame`): groups
        // of non-overlapping files in time order, which DataFusion merges without sorting.
        // One group per core only under a filter: then each group is decoded and filtered by
        // a task of its own (DataFusion's repartition), and the merge copies only what passed.
        // Unfiltered, the merge would poll its inputs in turn on one thread and copy every row
        // (a sixth of `flowsql serve`'s CPU streaming a day of one node): as few groups as
        // the files allow, and `replay::history` decodes in a task of its own.
        let filtered = filters
            .iter()
            .any(|f| f.column_refs().iter().any(|c| c.name != self.sort_column));
        let ordered = ordered
            .then(|| {
                FileScanConfig::split_groups_by_statistics_with_target_partitions(
                    &self.schema,
                    std::slice::from_ref(&all),
                    ordering.first()?,
                    if filtered { target } else { 1 },
                )
                .ok()
            })
            .flatten()
            .filter(|groups| self.merge || groups.len() <= MAX_ORDERED_GROUPS.max(target));
        let groups = match ordered {
            Some(groups) => groups,
            // Files in time order, cut into contiguous groups: still ordered when they do not
            // overlap (compacted hours), and DataFusion checks that before relying on it.
            None => all.split_files(target),
        };
        let url = ObjectStoreUrl::parse(store.object_store_url())?;
        let source = ParquetSource::new(TableSchema::from(Arc::clone(&self.schema)))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(factory);
        Ok(FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics(total_rows, total_bytes, min, max))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_output_ordering(ordering)
            .build())
    }
}

fn timestamp(ns: Option<i64>, data_type: &DataType) -> Precision<ScalarValue> {
    match (ns, data_type) {
        (Some(ns), DataType::Timestamp(_, tz)) => {
            Precision::Exact(ScalarValue::TimestampNanosecond(Some(ns), tz.clone()))
        }
        _ => Precision::Absent,
    }
}

/// Which files a table reads.
#[derive(Debug)]
enum Files {
    /// `flows` or `lost_events`: the visible files of the hours the query reaches.
    Recorded(Table),
    /// `flows_hourly`: the newest rollup of each hour the query reaches.
    Rollups,
    /// Exactly these (a compaction's inputs or outputs, the rollups found exact).
    Pinned(Vec<ObjectMeta>),
}

/// What a table reads, stated so that another process can build the same table over the same
/// store: a cluster's scheduler plans the scans (`crate::cluster::codec`).
#[derive(Debug, Clone, PartialEq)]
pub enum Reads {
    /// `flows` or `lost_events`, in this build's schema.
    Recorded(Table),
    /// `flows_hourly`.
    Rollups,
    /// Exactly these files of a dataset, in this build's schema for it.
    Pinned(Dataset, Vec<ObjectMeta>),
}

/// A table of the store.
#[derive(Debug)]
pub struct StoreTable {
    reader: Arc<StoreReader>,
    shape: Shape,
    files: Files,
}

impl StoreTable {
    /// `flows` or `lost_events`, as this build's schema.
    pub fn recorded(reader: Arc<StoreReader>, table: Table) -> Self {
        Self::recorded_as(reader, table, table.schema(), SCHEMA_VERSION)
    }

    /// A recorded table whose newest schema is `schema` (version `version`): how a build that
    /// knows a later schema version reads every older file (tested with a hand-made version 2).
    pub fn recorded_as(
        reader: Arc<StoreReader>,
        table: Table,
        schema: SchemaRef,
        version: u32,
    ) -> Self {
        StoreTable {
            shape: Shape::new(schema, version, reader.strings),
            reader,
            files: Files::Recorded(table),
        }
    }

    /// `flows_hourly`.
    pub fn rollups(reader: Arc<StoreReader>) -> Self {
        StoreTable {
            shape: Shape::new(rollup_schema(), ROLLUP_SCHEMA_VERSION, reader.strings),
            reader,
            files: Files::Rollups,
        }
    }

    /// Rows of `schema` (version `version`) from exactly `files`.
    pub fn pinned(
        reader: Arc<StoreReader>,
        schema: SchemaRef,
        version: u32,
        files: Vec<ObjectMeta>,
    ) -> Self {
        StoreTable {
            shape: Shape::new(schema, version, reader.strings),
            reader,
            files: Files::Pinned(files),
        }
    }

    /// The inputs of a compaction: rows in the stored types of `schema` (older files conformed
    /// to it), read as time-ordered streams for DataFusion to merge.
    pub fn merge_inputs(
        reader: Arc<StoreReader>,
        schema: SchemaRef,
        version: u32,
        files: Vec<ObjectMeta>,
    ) -> Self {
        StoreTable {
            reader,
            shape: Shape::for_merge(schema, version),
            files: Files::Pinned(files),
        }
    }

    /// What this table reads, or `None` when another process could not build the same table
    /// from that alone: a compaction's inputs (read in their stored types), or a schema this
    /// build does not name (a test's hand-made version 2).
    pub fn reads(&self) -> Option<Reads> {
        let stored = &self.shape.expect.schema;
        let this_build = |dataset: Dataset| match dataset.table() {
            Some(table) => self.shape.expect.version == SCHEMA_VERSION && *stored == table.schema(),
            None => {
                self.shape.expect.version == ROLLUP_SCHEMA_VERSION && *stored == rollup_schema()
            }
        };
        if self.shape.merge {
            return None;
        }
        match &self.files {
            Files::Recorded(table) => {
                this_build(Dataset::from(*table)).then_some(Reads::Recorded(*table))
            }
            Files::Rollups => this_build(Dataset::FlowsHourly).then_some(Reads::Rollups),
            Files::Pinned(files) => Dataset::ALL
                .into_iter()
                .find(|d| this_build(*d))
                .map(|d| Reads::Pinned(d, files.clone())),
        }
    }

    /// The table that reads `reads` through `reader`.
    pub fn from_reads(reader: Arc<StoreReader>, reads: Reads) -> Self {
        match reads {
            Reads::Recorded(table) => Self::recorded(reader, table),
            Reads::Rollups => Self::rollups(reader),
            Reads::Pinned(dataset, files) => match dataset.table() {
                Some(table) => Self::pinned(reader, table.schema(), SCHEMA_VERSION, files),
                None => Self::pinned(reader, rollup_schema(), ROLLUP_SCHEMA_VERSION, files),
            },
        }
    }

    /// The store and damage policy it reads through.
    pub fn reader(&self) -> &Arc<StoreReader> {
        &self.reader
    }

    /// The files of the hours in `bounds` (foreign objects met on the way are reported).
    async fn files(&self, bounds: Bounds) -> Result<Vec<ObjectMeta>> {
        if bounds.is_empty() {
            return Ok(Vec::new());
        }
        let reader = &self.reader;
        let catalog = &reader.catalog;
        let mut files = Vec::new();
        let mut foreign = Vec::new();
        match &self.files {
            Files::Pinned(pinned) => files.clone_from(pinned),
            Files::Recorded(table) => {
                let retention = catalog.retention().await.map_err(external)?;
                let dataset = Dataset::from(*table);
                let views = catalog
                    .views(dataset, bounds.since, bounds.until, &retention)
                    .await
                    .map_err(external)?;
                for view in views {
                    foreign.extend(view.foreign);
                    files.extend(view.live);
                }
            }
            Files::Rollups => {
                let retention = catalog.retention().await.map_err(external)?;
                let views = catalog
                    .rollup_views(bounds.since, bounds.until, &retention)
                    .await
                    .map_err(external)?;
                for view in views {
                    files.extend(view.latest().map(|(_, meta)| meta.clone()));
                    foreign.extend(view.foreign);
                }
            }
        }
        for meta in &foreign {
            reader.report(meta, "not a name flowrec or flowstore writes".into())?;
        }
        Ok(files)
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.shape.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = time_bounds(filters, &self.shape.sort_column);
        let files = self.files(bounds).await?;
        let request = Request {
            state,
            bounds,
            projection,
            filters,
            limit,
        };
        self.reader.scan_files(&self.shape, files, request).await
    }
}

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The query's filters that a small-file scan evaluates itself (`small::Filter`): all but
/// the volatile ones, over a schema of the columns they read.
fn small_filter(
    state: &dyn Session,
    table: &SchemaRef,
    filters: &[Expr],
) -> Result<Option<small::Filter>> {
    let unqualified = |expr: &Expr| {
        expr.clone()
            .transform(|e| match e {
                Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::from_name(c.name)))),
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
    };
    let usable = filters
        .iter()
        .filter(|f| !f.is_volatile())
        .map(unqualified)
        .collect::<Result<Vec<_>>>()?;
    let Some(expr) = conjunction(usable) else {
        return Ok(None);
    };
    let mut columns = expr
        .column_refs()
        .iter()
        .map(|c| table.index_of(&c.name))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    columns.sort_unstable();
    columns.dedup();
    let schema = DFSchema::try_from(table.project(&columns)?)?;
    let expr = state.create_physical_expr(expr, &schema)?;
    Ok(Some(small::Filter { expr, columns }))
}

/// The table schema as DataFusion reads it. With [`StringColumns::Views`] its string columns
/// are `Utf8View`: the Parquet reader produces views directly (no copy into contiguous buffers,
/// then no cast back), and grouping and comparing views is cheaper; lists and dictionaries keep
/// their types. With [`StringColumns::Plain`] dictionaries of strings are read as `Utf8`.
fn read_types(schema: &SchemaRef, strings: StringColumns) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match (f.data_type(), strings) {
            (DataType::Utf8, StringColumns::Views) => {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            }
            (DataType::Dictionary(_, value), StringColumns::Plain)
                if value.as_ref() == &DataType::Utf8 =>
            {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
