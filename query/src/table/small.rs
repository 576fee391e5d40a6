//! The scan of small files: the hours not compacted yet, where every recorder seals a file
//! every few minutes (a 50-node fleet: 600 files of ~700 rows an hour). DataFusion's Parquet
//! scan pays a fixed price per file that dwarfs such a file's rows: a footer request, the
//! file's schema converted twice over all its columns, a pruning predicate rebuilt, a reader
//! per column chunk range. Here each file costs one request and what its rows need:
//!
//! - the whole object is read at once (it is smaller than the requests DataFusion would
//!   make), and its footer decoded from those bytes, sharing the schema descriptor of the
//!   files before it ([`Expectation`]);
//! - the columns' Arrow layout (`FieldLevels`) is worked out once per schema and projection,
//!   not per file;
//! - a selective filter (`choices::worth_pushing_down`) is evaluated first over its own
//!   columns, and the other columns are decoded only for the rows that pass; a file without
//!   such rows is not decoded further;
//! - a file whose time range misses the query's is left out once its footer is read.
//!
//! The filters stay `Inexact`: DataFusion applies them again above this scan, which only ever
//! leaves out rows they reject. Damage is met and reported as the other scans do
//! ([`DamageLog`]), with the same reasons. Files of an older schema version are read in their
//! own types and conformed to the table's (missing columns are NULL).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch,
};
use datafusion::arrow::compute::{cast, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Fields, SchemaRef};
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, RowGroups, RowSelection};
use parquet::arrow::ProjectionMask;
use parquet::arrow::{parquet_to_arrow_field_levels, parquet_to_arrow_schema, FieldLevels};
use parquet::column::page::{PageIterator, PageReader};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::SchemaDescriptor;

use flow_schema::guard::quietly;

use super::bounds::Bounds;
use super::damage::{Damage, DamageLog};
use super::footers::{self, Expectation};

/// Files a partition has in flight at once: their requests overlap while one is decoded.
const IN_FLIGHT: usize = 4;

/// Schemas whose layouts are remembered: files of one writer version share one; more than a
/// few means foreign footers, each its own, and remembering them would only grow.
const REMEMBERED_LAYOUTS: usize = 32;

/// What every partition of a small-file scan shares.
pub struct SmallScan {
    pub store: Arc<dyn ObjectStore>,
    pub expect: Arc<Expectation>,
    pub damage: DamageLog,
    /// How an object's URL is written in a message.
    pub url_prefix: String,
    /// The table as DataFusion reads it (every column, read types).
    pub table: SchemaRef,
    /// The table's columns this scan returns, in this order.
    pub projection: Vec<usize>,
    /// Their schema.
    output: SchemaRef,
    /// Rows that cannot pass the query are left out with it (see the module comment).
    pub filter: Option<Filter>,
    /// The query's time bounds: a file entirely outside them is left out.
    pub bounds: Bounds,
    pub limit: Option<usize>,
    /// Column layouts, by schema descriptor and the file's columns read.
    layouts: Mutex<HashMap<(usize, Vec<usize>), Layout>>,
}

/// A filter evaluated inside the scan, over its own columns only.
pub struct Filter {
    /// Bound to a schema of `columns` alone, in that order.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The table's columns it reads, ascending.
    pub columns: Vec<usize>,
}

struct Layout {
    /// Kept so that the descriptor's address, the key, is not reused while remembered.
    _schema: Arc<SchemaDescriptor>,
    levels: Arc<FieldLevels>,
}

impl fmt::Debug for SmallScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmallScan")
            .field("projection", &self.projection)
            .field("filter", &self.filter.as_ref().map(|f| f.expr.to_string()))
            .field("bounds", &self.bounds)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl SmallScan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ObjectStore>,
        expect: Arc<Expectation>,
        damage: DamageLog,
        url_prefix: String,
        table: SchemaRef,
        projection: Vec<usize>,
        filter: Option<Filter>,
        bounds: Bounds,
        limit: Option<usize>,
    ) -> Result<SmallScan> {
        let output = Arc::new(table.project(&projection)?);
        Ok(SmallScan {
            output,
            store,
            expect,
            damage,
            url_prefix,
            table,
            projection,
            filter,
            bounds,
            limit,
            layouts: Mutex::default(),
        })
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The rows of one file this scan returns (none for a damaged file, reported).
    async fn read(&self, meta: ObjectMeta) -> Result<Vec<RecordBatch>> {
        let needs_rows = !self.projection.is_empty() || self.filter.is_some();
        let (bytes, metadata) = if needs_rows {
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(external)?
                .bytes()
                .await
                .map_err(external)?;
            match footers::decode_whole(&bytes, &self.expect) {
                Ok(metadata) => (bytes, metadata),
                Err(reason) => return self.damaged(&meta, reason),
            }
        } else {
            // Only a row count: the footer is enough.
            match footers::fetch(self.store.as_ref(), &meta, &self.expect)
                .await
                .map_err(external)?
            {
                Ok(metadata) => (Bytes::new(), metadata),
                Err(reason) => return self.damaged(&meta, reason),
            }
        };
        let exact = match footers::check(&metadata, &self.expect) {
            Ok((info, exact)) => {
                if !self.bounds.meets(info.min_time, info.max_time) {
                    return Ok(Vec::new());
                }
                exact
            }
            Err(reason) => return self.damaged(&meta, reason),
        };
        let file = File {
            bytes,
            metadata,
            exact,
        };
        match self.rows(&file) {
            Ok(batches) => Ok(batches),
            Err(ReadError::Store(error)) => Err(error),
            Err(ReadError::Damaged(reason)) => self.damaged(&meta, reason),
        }
    }

    /// Reports a damaged file: an error under `--strict-store`, else no rows.
    fn damaged(&self, meta: &ObjectMeta, reason: String) -> Result<Vec<RecordBatch>> {
        let damage = Damage {
            url: format!("{}{}", self.url_prefix, meta.location),
            reason,
        };
        self.damage.report(damage).map_err(external)?;
        Ok(Vec::new())
    }

    fn rows(&self, file: &File) -> Result<Vec<RecordBatch>, ReadError> {
        let rows = file.metadata.file_metadata().num_rows().max(0) as usize;
        let selection = match &self.filter {
            None => None,
            Some(filter) => {
                let columns = self.decode(file, &filter.columns, None)?;
                let mut passed = Vec::with_capacity(columns.len());
                for batch in columns {
                    let mask = filter
                        .expr
                        .evaluate(&batch)
                        .and_then(|v| v.into_array(batch.num_rows()))
                        .map_err(ReadError::Store)?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            ReadError::Store(DataFusionError::Internal(
                                "a scan filter that is not a predicate".into(),
                            ))
                        })?;
                    passed.push(match mask.null_count() {
                        0 => mask.clone(),
                        _ => prep_null_mask_filter(mask),
                    });
                }
                let passing: usize = passed.iter().map(|m| m.true_count()).sum();
                if passing == 0 {
                    return Ok(Vec::new());
                }
                if passing == rows {
                    None
                } else {
                    Some(RowSelection::from_filters(&passed))
                }
            }
        };
        if self.projection.is_empty() {
            let count = selection.as_ref().map_or(rows, RowSelection::row_count);
            let options = RecordBatchOptions::new().with_row_count(Some(count));
            let batch = RecordBatch::try_new_with_options(self.output_schema(), vec![], &options)
                .map_err(|e| ReadError::Store(e.into()))?;
            return Ok(vec![batch]);
        }
        self.decode(file, &self.projection, selection)
    }

    /// The table's `columns` (ascending or not) of `file`, in that order, in the table's read
    /// types; only the rows of `selection`.
    fn decode(
        &self,
        file: &File,
        columns: &[usize],
        selection: Option<RowSelection>,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        let descriptor = file.metadata.file_metadata().schema_descr_ptr();
        // The file's root column of each wanted table column (None: a column it predates).
        let roots: Vec<Option<usize>> = if file.exact {
            columns.iter().map(|&c| Some(c)).collect()
        } else {
            let names: HashMap<&str, usize> = descriptor
                .root_schema()
                .get_fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name(), i))
                .collect();
            columns
                .iter()
                .map(|&c| names.get(self.table.field(c).name().as_str()).copied())
                .collect()
        };
        let mut read: Vec<usize> = roots.iter().flatten().copied().collect();
        read.sort_unstable();
        read.dedup();
        let levels = self.layout(file, &descriptor, &read)?;
        let rows = file.metadata.file_metadata().num_rows().max(0) as usize;
        let selected = selection.as_ref().map_or(rows, RowSelection::row_count);
        // A few rows of a file hold on to its pages: string views point into them.
        let sparse = selected < rows;
        let whole = WholeFile {
            bytes: &file.bytes,
            metadata: &file.metadata,
        };
        // Parquet's decoder panics on some garbage pages: a damaged file, not a crash.
        let decoded = quietly(|| {
            ParquetRecordBatchReader::try_new_with_row_groups(
                &levels,
                &whole,
                selected.max(1),
                selection,
            )?
            .collect::<Result<Vec<_>, _>>()
            .map_err(parquet::errors::ParquetError::from)
        })
        .ok_or_else(|| ReadError::Damaged("unreadable data (the decoder failed on it)".into()))?
        .map_err(damaged)?;
        let schema = Arc::new(
            self.table
                .project(columns)
                .map_err(|e| ReadError::Store(e.into()))?,
        );
        let mut batches = Vec::with_capacity(decoded.len());
        for batch in decoded {
            let arrays = roots
                .iter()
                .zip(schema.fields())
                .map(|(root, field)| -> Result<ArrayRef, ReadError> {
                    let Some(root) = root else {
                        return Ok(new_null_array(field.data_type(), batch.num_rows()));
                    };
                    let position = read.binary_search(root).expect("a column read");
                    let array = batch.column(position);
                    if sparse && array.data_type() == &DataType::Utf8View {
                        Ok(Arc::new(array.as_string_view().gc()))
                    } else if array.data_type() == field.data_type() {
                        Ok(Arc::clone(array))
                    } else {
                        cast(array, field.data_type()).map_err(|e| {
                            ReadError::Damaged(format!("column {}: {e}", field.name()))
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            batches.push(
                RecordBatch::try_new_with_options(Arc::clone(&schema), arrays, &options)
                    .map_err(|e| ReadError::Store(e.into()))?,
            );
        }
        Ok(batches)
    }

    /// The Arrow layout of `roots` of files of `descriptor`: in the table's read types for a
    /// file of the current schema, else in the file's own (conformed after).
    fn layout(
        &self,
        file: &File,
        descriptor: &Arc<SchemaDescriptor>,
        roots: &[usize],
    ) -> Result<Arc<FieldLevels>, ReadError> {
        let key = (Arc::as_ptr(descriptor) as usize, roots.to_vec());
        if let Some(layout) = self.layouts.lock().expect("layouts lock").get(&key) {
            return Ok(Arc::clone(&layout.levels));
        }
        let own: Fields;
        let hint = if file.exact {
            self.table.fields()
        } else {
            own = parquet_to_arrow_schema(
                descriptor,
                file.metadata.file_metadata().key_value_metadata(),
            )
            .map_err(damaged)?
            .fields()
            .clone();
            &own
        };
        let mask = ProjectionMask::roots(descriptor, roots.iter().copied());
        let levels =
            Arc::new(parquet_to_arrow_field_levels(descriptor, mask, Some(hint)).map_err(damaged)?);
        let mut layouts = self.layouts.lock().expect("layouts lock");
        if layouts.len() < REMEMBERED_LAYOUTS {
            layouts.insert(
                key,
                Layout {
                    _schema: Arc::clone(descriptor),
                    levels: Arc::clone(&levels),
                },
            );
        }
        Ok(levels)
    }
}

/// Why a file's rows could not be read: the file (reported as damage) or the query.
enum ReadError {
    Damaged(String),
    Store(DataFusionError),
}

fn damaged(error: parquet::errors::ParquetError) -> ReadError {
    ReadError::Damaged(format!("unreadable data: {error}"))
}

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// One file, read whole.
struct File {
    bytes: Bytes,
    metadata: Arc<ParquetMetaData>,
    /// Its columns are the table's stored schema.
    exact: bool,
}

/// A file in memory, as Parquet's reader takes row groups.
struct WholeFile<'a> {
    bytes: &'a Bytes,
    metadata: &'a ParquetMetaData,
}

impl RowGroups for WholeFile<'_> {
    fn num_rows(&self) -> usize {
        self.metadata.file_metadata().num_rows().max(0) as usize
    }

    fn column_chunks(&self, i: usize) -> parquet::errors::Result<Box<dyn PageIterator>> {
        let pages = self
            .metadata
            .row_groups()
            .iter()
            .map(|group| {
                let reader = SerializedPageReader::new(
                    Arc::new(self.bytes.clone()),
                    group.column(i),
                    group.num_rows().max(0) as usize,
                    None,
                )?;
                Ok(Box::new(reader) as Box<dyn PageReader>)
            })
            .collect::<Vec<_>>();
        Ok(Box::new(ColumnChunks(pages.into_iter())))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.metadata.row_groups().iter())
    }

    fn metadata(&self) -> &ParquetMetaData {
        self.metadata
    }
}

struct ColumnChunks(std::vec::IntoIter<parquet::errors::Result<Box<dyn PageReader>>>);

impl Iterator for ColumnChunks {
    type Item = parquet::errors::Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl PageIterator for ColumnChunks {}

/// The plan node: [`SmallScan`] over files spread across partitions.
#[derive(Debug)]
pub struct SmallFilesExec {
    scan: Arc<SmallScan>,
    partitions: Vec<Vec<ObjectMeta>>,
    properties: Arc<PlanProperties>,
}

impl SmallFilesExec {
    /// `files` spread over at most `partitions` partitions, each a contiguous run (the
    /// listing's order keeps one node's files together).
    pub fn new(scan: SmallScan, files: Vec<ObjectMeta>, partitions: usize) -> SmallFilesExec {
        let per = files.len().div_ceil(partitions.max(1)).max(1);
        let mut spread: Vec<Vec<ObjectMeta>> = Vec::new();
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            spread.push(files.by_ref().take(per).collect());
        }
        if spread.is_empty() {
            spread.push(Vec::new());
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(scan.output_schema()),
            Partitioning::UnknownPartitioning(spread.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        SmallFilesExec {
            scan: Arc::new(scan),
            partitions: spread,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for SmallFilesExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: usize = self.partitions.iter().map(Vec::len).sum();
        write!(
            f,
            "SmallFilesExec: files={files}, partitions={}",
            self.partitions.len()
        )?;
        let names: Vec<&str> = self
            .scan
            .projection
            .iter()
            .map(|&c| self.scan.table.field(c).name().as_str())
            .collect();
        write!(f, ", projection=[{}]", names.join(", "))?;
        if let Some(filter) = &self.scan.filter {
            write!(f, ", filter={}", filter.expr)?;
        }
        if let Some(limit) = self.scan.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SmallFilesExec {
    fn name(&self) -> &'static str {
        "SmallFilesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "SmallFilesExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = self
            .partitions
            .get(partition)
            .ok_or_else(|| {
                DataFusionError::Internal(format!("SmallFilesExec has no partition {partition}"))
            })?
            .clone();
        let scan = Arc::clone(&self.scan);
        let schema = scan.output_schema();
        let limit = scan.limit;
        let read = futures::stream::iter(files)
            .map(move |meta| {
                let scan = Arc::clone(&scan);
                async move { scan.read(meta).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        let stream = limited(read, limit);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// `input` stopped after `limit` rows.
fn limited(
    input: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    limit: Option<usize>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
    input.scan(limit.unwrap_or(usize::MAX), |left, item| {
        if *left == 0 {
            return futures::future::ready(None);
        }
        let item = item.map(|batch| {
            let batch = batch.slice(0, batch.num_rows().min(*left));
            *left -= batch.num_rows();
            batch
        });
        futures::future::ready(Some(item))
    })
}
