//! Staging: turns a sealed file's rows into Parquet bytes laid out for investigation queries.
//!
//! - rows sorted by `time`, declared in `sorting_columns` so engines can skip sorts and prune;
//! - zstd; dictionary encoding (Parquet's default) for the repetitive enum/label columns;
//! - page-level statistics and the page index on `time`, so a time window reads only its pages
//!   (chunk statistics on numbers; none on strings and lists, where they would prune nothing);
//! - bloom filters on IP and pod-name columns, sized to the file's real distinct count;
//! - key-value metadata from `flow_schema::layout::metadata`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};
use chrono::DateTime;
use flow_schema::layout::metadata;
use flow_schema::schema::BLOOM_FILTER_COLUMNS;
use flow_schema::{Table, SCHEMA_VERSION};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::SealedFile;

/// Rows per row group: small enough that a 5-minute window skips most of a file's row groups by
/// their statistics, large enough to keep per-group overhead low.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot prepare rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// A file ready to upload.
#[derive(Debug)]
pub struct EncodedFile {
    pub table: Table,
    pub first_time_ns: i64,
    pub rows: usize,
    pub bytes: Vec<u8>,
}

/// Who wrote the file, recorded in its metadata.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub node: String,
    pub source: &'static str,
}

/// Sorts and encodes `file` as Parquet.
pub fn encode(file: SealedFile, provenance: &Provenance) -> Result<EncodedFile, EncodeError> {
    let schema = file.table.schema();
    // Sources mostly deliver rows in time order, in batches that a parallel decoder may hand
    // over out of order: then the batches are put back in order and written as they are,
    // without copying every column through a concat and a sort.
    let mut batches = file.batches;
    batches.sort_by_key(|batch| time_column(batch).values().first().copied());
    let batches = if in_time_order(&batches) {
        batches
    } else {
        let rows = concat_batches(&schema, &batches)?;
        let order = sort_to_indices(rows.column(0), None, None)?;
        vec![take_record_batch(&rows, &order)?]
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let first = time_column(&batches[0]).value(0);
    let last_batch = batches.last().expect("a sealed file has rows");
    let last = time_column(last_batch).value(last_batch.num_rows() - 1);

    let time = ColumnPath::from("time");
    let mut properties = WriterProperties::builder()
        // Level 1, not 3: on 1M generated flows 47.5 instead of 47.1 bytes/flow, and the import
        // 0.5 s (12%) faster; dictionaries and sorting already did most of the work.
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
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
        .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED)
        // Unique per row: a dictionary only adds a lookup per value.
        .set_column_dictionary_enabled(ColumnPath::from("uuid"), false)
        .set_key_value_metadata(Some(vec![
            kv(metadata::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            kv(metadata::NODE, provenance.node.clone()),
            kv(metadata::SOURCE, provenance.source.to_string()),
            kv(metadata::MIN_TIME, rfc3339(first)),
            kv(metadata::MAX_TIME, rfc3339(last)),
            kv(metadata::ROWS, rows.to_string()),
        ]));
    for field in schema.fields() {
        let numeric = field.data_type().is_primitive() || *field.data_type() == DataType::Boolean;
        if numeric && field.name() != "time" {
            let path = ColumnPath::from(field.name().as_str());
            properties = properties.set_column_statistics_enabled(path, EnabledStatistics::Chunk);
        }
    }
    for name in BLOOM_FILTER_COLUMNS {
        if let Ok(index) = schema.index_of(name) {
            let distinct = distinct_count(&batches, index).max(1) as u64;
            let path = ColumnPath::from(*name);
            properties = properties
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.01)
                .set_column_bloom_filter_max_ndv(path, distinct);
        }
    }
    let memory: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let mut bytes = Vec::with_capacity(memory / 8);
    let mut writer =
        ArrowWriter::try_new(&mut bytes, Arc::clone(&schema), Some(properties.build()))?;
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(EncodedFile {
        table: file.table,
        first_time_ns: first,
        rows,
        bytes,
    })
}

fn time_column(batch: &RecordBatch) -> &arrow::array::TimestampNanosecondArray {
    batch.column(0).as_primitive::<TimestampNanosecondType>()
}

/// Every batch sorted by time, and each starting at or after the previous one's end.
fn in_time_order(batches: &[RecordBatch]) -> bool {
    let mut previous = i64::MIN;
    for batch in batches {
        for &t in time_column(batch).values().iter() {
            if t < previous {
                return false;
            }
            previous = t;
        }
    }
    true
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue::new(key.to_string(), value)
}

fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Distinct non-null values of a string (or dictionary-of-string) column over all batches.
fn distinct_count(batches: &[RecordBatch], index: usize) -> usize {
    // foldhash: these are short strings, hashed once per row of four columns.
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    for batch in batches {
        let column = batch.column(index);
        match column.data_type() {
            DataType::Utf8 => seen.extend(column.as_string::<i32>().iter().flatten()),
            DataType::Dictionary(_, _) => {
                let dictionary = column.as_dictionary::<Int32Type>();
                let values = dictionary.values().as_string::<i32>();
                seen.extend(
                    dictionary
                        .keys()
                        .iter()
                        .flatten()
                        .map(|k| values.value(k as usize)),
                );
            }
            _ => return batches.iter().map(RecordBatch::num_rows).sum(),
        }
    }
    seen.len()
}
