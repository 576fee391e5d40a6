//! Staging: turns a sealed file's rows into Parquet bytes laid out for investigation queries.
//!
//! - rows sorted by `time`, declared in `sorting_columns` so engines can skip sorts and prune;
//! - zstd; dictionary encoding (Parquet's default) for the repetitive enum/label columns;
//! - page-level statistics and the page index, so a time window reads only its pages;
//! - bloom filters on IP and pod-name columns, sized to the file's real distinct count;
//! - key-value metadata from `flow_schema::layout::metadata`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};
use chrono::DateTime;
use flow_schema::layout::metadata;
use flow_schema::schema::BLOOM_FILTER_COLUMNS;
use flow_schema::{Table, SCHEMA_VERSION};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
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
    let rows = concat_batches(&schema, &file.batches)?;
    drop(file.batches);
    let order = sort_to_indices(rows.column(0), None, None)?;
    let rows = take_record_batch(&rows, &order)?;
    let time = rows.column(0).as_primitive::<TimestampNanosecondType>();
    let (first, last) = (time.value(0), time.value(rows.num_rows() - 1));

    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![
            kv(metadata::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            kv(metadata::NODE, provenance.node.clone()),
            kv(metadata::SOURCE, provenance.source.to_string()),
            kv(metadata::MIN_TIME, rfc3339(first)),
            kv(metadata::MAX_TIME, rfc3339(last)),
            kv(metadata::ROWS, rows.num_rows().to_string()),
        ]));
    for name in BLOOM_FILTER_COLUMNS {
        if let Some(column) = rows.column_by_name(name) {
            let distinct = distinct_count(column.as_ref()).max(1) as u64;
            let path = ColumnPath::from(*name);
            properties = properties
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.01)
                .set_column_bloom_filter_max_ndv(path, distinct);
        }
    }
    let mut bytes = Vec::with_capacity(rows.get_array_memory_size() / 4);
    let mut writer =
        ArrowWriter::try_new(&mut bytes, Arc::clone(&schema), Some(properties.build()))?;
    writer.write(&rows)?;
    writer.close()?;
    Ok(EncodedFile {
        table: file.table,
        first_time_ns: first,
        rows: rows.num_rows(),
        bytes,
    })
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue::new(key.to_string(), value)
}

fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Distinct non-null values of a string (or dictionary-of-string) column.
fn distinct_count(column: &dyn Array) -> usize {
    match column.data_type() {
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<HashSet<_>>()
            .len(),
        DataType::Dictionary(_, _) => {
            let keys = column.as_dictionary::<Int32Type>().keys();
            keys.iter().flatten().collect::<HashSet<_>>().len()
        }
        _ => column.len(),
    }
}
