//! Writing store files: the one definition of how a data file is laid out, so that a file
//! written by a recorder, by an import or by `flowstore compact` is the same kind of file.
//!
//! - rows sorted by the first column (`time`; a rollup's `hour`), declared in `sorting_columns` so engines can skip sorts and prune
//!   (checked here while writing: a file that would break the promise is refused);
//! - zstd level 1, or LZ4_RAW for a small file (see [`SMALL_FILE_ROWS`]); dictionary encoding
//!   (Parquet's default) for the repetitive columns;
//! - page-level statistics and the page index on `time`, so a time window reads only its pages
//!   (chunk statistics on numbers; none on strings and lists, where they would prune nothing);
//! - bloom filters on IP and pod-name columns, sized for the row group and folded down to the
//!   distinct values actually written (parquet's folding), at 1% false positives;
//! - footer key-value metadata from [`crate::layout::metadata`], appended at the end, when the
//!   time range and row count are known (a compaction streams its rows).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::layout::metadata;
use crate::schema::BLOOM_FILTER_COLUMNS;

/// Rows per row group: small enough that a 5-minute window skips most of a file's row groups by
/// their statistics, large enough to keep per-group overhead low (1M rows measured: no gain).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Files of fewer rows are compressed with LZ4_RAW, larger ones with zstd. A reader creates a
/// decompression context per column chunk, and a zstd context costs more than decompressing a
/// small chunk: over the 600 small files (~700 rows each) of a 50-node hour, opening zstd
/// contexts was half of a query's CPU (perf), and LZ4_RAW made a `select *` of the hour's drops
/// 2.4x faster for 20% more bytes. These small files are a recorder's 5-minute files, which
/// `flowstore compact` rewrites into large zstd files once the hour has settled.
pub const SMALL_FILE_ROWS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("rows out of time order: {0} after {1} (a store file is sorted by time)")]
    Unsorted(String, String),
    #[error("the first column (the sort key) must be a non-null timestamp; {0} is not")]
    NoTime(String),
}

/// Who wrote a file's rows, recorded in its footer.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Nodes of the rows (a recorder: its own; a compaction: those of its inputs).
    pub nodes: Vec<String>,
    /// `import`, `hubble`, `ebpf`.
    pub sources: Vec<String>,
    /// The generation that wrote a compacted file.
    pub compacted: Option<String>,
    /// The raw generation a rollup summarizes.
    pub rollup_of: Option<String>,
}

impl Provenance {
    pub fn recorder(node: &str, source: &str) -> Provenance {
        Provenance {
            nodes: vec![node.to_string()],
            sources: vec![source.to_string()],
            ..Provenance::default()
        }
    }
}

/// What a finished file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    /// Time of the first and last row (ns); `None` for a file without rows.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

/// Writes one store file, batch by batch, in time order.
pub struct StoreFileWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema_version: u32,
    rows: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
}

impl<W: Write + Send> StoreFileWriter<W> {
    /// A writer of rows of `schema` (version `schema_version`), whose first column is `time`.
    /// `expected_rows` bounds the bloom filters' initial size (they fold down at the end) and
    /// chooses the codec ([`SMALL_FILE_ROWS`]); unknown, the file is taken to be large.
    pub fn try_new(
        out: W,
        schema: SchemaRef,
        schema_version: u32,
        expected_rows: Option<usize>,
    ) -> Result<Self, WriteError> {
        let time = schema.field(0);
        if time.is_nullable() || !matches!(time.data_type(), DataType::Timestamp(_, _)) {
            return Err(WriteError::NoTime(time.name().clone()));
        }
        let rows_per_group = expected_rows
            .unwrap_or(ROW_GROUP_ROWS)
            .clamp(1, ROW_GROUP_ROWS);
        let compression = match expected_rows {
            Some(rows) if rows < SMALL_FILE_ROWS => Compression::LZ4_RAW,
            _ => Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a zstd level")),
        };
        let properties = properties(&schema, rows_per_group as u64, compression);
        let writer = ArrowWriter::try_new(out, schema, Some(properties))?;
        Ok(StoreFileWriter {
            writer,
            schema_version,
            rows: 0,
            min_time: None,
            max_time: None,
        })
    }

    /// Appends rows; they must continue the time order.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let mut previous = self.max_time.unwrap_or(i64::MIN);
        for &t in times.values().iter() {
            if t < previous {
                return Err(WriteError::Unsorted(rfc3339(t), rfc3339(previous)));
            }
            previous = t;
        }
        self.min_time.get_or_insert(times.value(0));
        self.max_time = Some(previous);
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Time of the first row written (ns).
    pub fn min_time(&self) -> Option<i64> {
        self.min_time
    }

    /// Bytes of the file so far, including the row group being buffered.
    pub fn bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Writes the footer (with the metadata of [`crate::layout::metadata`]) and returns the
    /// output.
    pub fn finish(mut self, provenance: &Provenance) -> Result<(W, Written), WriteError> {
        let mut kv = vec![
            (metadata::SCHEMA_VERSION, self.schema_version.to_string()),
            (metadata::NODE, provenance.nodes.join(",")),
            (metadata::SOURCE, provenance.sources.join(",")),
            (metadata::ROWS, self.rows.to_string()),
        ];
        if let (Some(min), Some(max)) = (self.min_time, self.max_time) {
            kv.push((metadata::MIN_TIME, rfc3339(min)));
            kv.push((metadata::MAX_TIME, rfc3339(max)));
        }
        if let Some(generation) = &provenance.compacted {
            kv.push((metadata::COMPACTED, generation.clone()));
        }
        if let Some(generation) = &provenance.rollup_of {
            kv.push((metadata::ROLLUP_OF, generation.clone()));
        }
        for (key, value) in kv {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let written = Written {
            rows: self.rows,
            min_time: self.min_time,
            max_time: self.max_time,
        };
        let out = self.writer.into_inner()?;
        Ok((out, written))
    }
}

impl StoreFileWriter<Vec<u8>> {
    /// The file's bytes written out so far (whole row groups), taken from the output: the
    /// beginning of the file, for a caller that sends a file away in parts while it is written.
    /// Offsets in the footer count every byte written, taken or not.
    pub fn take_written(&mut self) -> Vec<u8> {
        let out = self.writer.inner_mut();
        let capacity = out.capacity();
        std::mem::replace(out, Vec::with_capacity(capacity))
    }

    /// Bytes in the output not taken yet.
    pub fn untaken(&self) -> usize {
        self.writer.inner().len()
    }
}

/// zstd at level 1, not 3: on 1M generated flows 47.5 instead of 47.1 bytes/flow, and the
/// import 0.5 s (12%) faster; dictionaries and sorting already did most of the work.
fn properties(schema: &SchemaRef, bloom_ndv: u64, compression: Compression) -> WriterProperties {
    let sort_key = schema.field(0).name();
    let time = ColumnPath::from(sort_key.as_str());
    let mut properties = WriterProperties::builder()
        .set_compression(compression)
        // Statistics where they prune: page level (with the page index) on `time`, the sort
        // key, so a window reads only its pages; chunk level on numbers (ports, codes). Not on
        // strings and lists: in rows sorted by time their min/max span nearly every value and
        // prune nothing (bloom filters serve the point lookups), and computing them compared
        // every string (measured: 5% of an import's CPU).
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(time.clone(), EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        // Sorted nanosecond timestamps: deltas are tiny, a dictionary of unique values is not.
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED);
    if schema.index_of("uuid").is_ok() {
        // Unique per row: a dictionary only adds a lookup per value.
        properties = properties.set_column_dictionary_enabled(ColumnPath::from("uuid"), false);
    }
    for field in schema.fields() {
        let numeric = field.data_type().is_primitive() || *field.data_type() == DataType::Boolean;
        if numeric && field.name() != sort_key {
            let path = ColumnPath::from(field.name().as_str());
            properties = properties.set_column_statistics_enabled(path, EnabledStatistics::Chunk);
        }
    }
    for name in BLOOM_FILTER_COLUMNS {
        if schema.index_of(name).is_ok() {
            let path = ColumnPath::from(*name);
            properties = properties
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.01)
                .set_column_bloom_filter_max_ndv(path, bloom_ndv);
        }
    }
    properties.build()
}

fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A store file's footer metadata, as readers (flowsql, flowstore) check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterInfo {
    pub schema_version: u32,
    /// The nodes and sources of the rows (`flowsql.node`, `flowsql.source`, comma-separated).
    pub nodes: Vec<String>,
    pub sources: Vec<String>,
    pub rows: Option<u64>,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub compacted: Option<String>,
}

impl FooterInfo {
    /// Reads our keys from a footer's key-value metadata; `None` when the file does not say
    /// which schema version it holds (not a store file).
    pub fn from_key_values(kv: Option<&Vec<KeyValue>>) -> Option<FooterInfo> {
        let kv = kv?;
        let get = |key: &str| {
            kv.iter()
                .find(|entry| entry.key == key)
                .and_then(|entry| entry.value.as_deref())
        };
        let time = |key: &str| {
            get(key)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .and_then(|t| t.timestamp_nanos_opt())
        };
        let list = |key: &str| -> Vec<String> {
            get(key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(FooterInfo {
            schema_version: get(metadata::SCHEMA_VERSION)?.parse().ok()?,
            nodes: list(metadata::NODE),
            sources: list(metadata::SOURCE),
            rows: get(metadata::ROWS).and_then(|r| r.parse().ok()),
            min_time: time(metadata::MIN_TIME),
            max_time: time(metadata::MAX_TIME),
            compacted: get(metadata::COMPACTED).map(str::to_string),
        })
    }
}

/// An in-memory Parquet file (for uploads of a whole file at once).
pub fn encode_batches(
    batches: &[RecordBatch],
    schema: SchemaRef,
    schema_version: u32,
    provenance: &Provenance,
) -> Result<(Vec<u8>, Written), WriteError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let memory: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let out = Vec::with_capacity(memory / 8);
    let mut writer =
        StoreFileWriter::try_new(out, Arc::clone(&schema), schema_version, Some(rows))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish(provenance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("n", DataType::Int32, true),
        ]))
    }

    fn batch(times: Vec<i64>) -> RecordBatch {
        let n = Int32Array::from_iter_values(0..times.len() as i32);
        let t = TimestampNanosecondArray::from(times).with_timezone("UTC");
        RecordBatch::try_new(schema(), vec![Arc::new(t), Arc::new(n)]).unwrap()
    }

    #[test]
    fn footer_says_what_the_file_holds() {
        let provenance = Provenance {
            nodes: vec!["a".into(), "b".into()],
            sources: vec!["ebpf".into()],
            compacted: Some("00000002.abcdef".into()),
            rollup_of: None,
        };
        let (bytes, written) = encode_batches(
            &[batch(vec![1, 2]), batch(vec![2, 5])],
            schema(),
            1,
            &provenance,
        )
        .unwrap();
        assert_eq!(
            written,
            Written {
                rows: 4,
                min_time: Some(1),
                max_time: Some(5)
            }
        );
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = reader.metadata().file_metadata();
        let info = FooterInfo::from_key_values(metadata.key_value_metadata()).unwrap();
        assert_eq!(
            info,
            FooterInfo {
                schema_version: 1,
                nodes: vec!["a".into(), "b".into()],
                sources: vec!["ebpf".into()],
                rows: Some(4),
                min_time: Some(1),
                max_time: Some(5),
                compacted: Some("00000002.abcdef".into()),
            }
        );
        assert_eq!(metadata.num_rows(), 4);
    }

    #[test]
    fn small_files_are_lz4_and_large_ones_zstd() {
        let codec = |rows: usize| {
            let times: Vec<i64> = (0..rows as i64).collect();
            let (bytes, _) =
                encode_batches(&[batch(times)], schema(), 1, &Provenance::default()).unwrap();
            let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
            let group = reader.metadata().row_group(0);
            (0..group.num_columns())
                .map(|c| group.column(c).compression())
                .collect::<Vec<_>>()
        };
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).unwrap());
        assert_eq!(codec(SMALL_FILE_ROWS - 1), vec![Compression::LZ4_RAW; 2]);
        assert_eq!(codec(SMALL_FILE_ROWS), vec![zstd; 2]);
    }

    #[test]
    fn rows_out_of_order_are_refused() {
        let error = encode_batches(
            &[batch(vec![5]), batch(vec![4])],
            schema(),
            1,
            &Provenance::default(),
        )
        .unwrap_err();
        assert!(matches!(error, WriteError::Unsorted(..)), "{error}");
        assert!(encode_batches(&[batch(vec![2, 1])], schema(), 1, &Provenance::default()).is_err());
    }
}
