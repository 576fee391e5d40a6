//! Staging: turns a sealed file's rows into Parquet bytes laid out for investigation queries.
//!
//! How a store file is written (sorting declared, zstd, statistics, bloom filters, footer
//! metadata) is defined once, in `flow_schema::writer`, and shared with `flowstore compact`;
//! this stage puts the rows in time order and in the current schema first.

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::TimestampNanosecondType;
use flow_schema::schema::{conform, ConformError};
use flow_schema::writer::{self, WriteError};
use flow_schema::{Table, SCHEMA_VERSION};

use crate::batch::SealedFile;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot prepare rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("rows of an older recorder do not fit this version's schema: {0}")]
    Schema(#[from] ConformError),
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
    // A spool segment written by an older recorder holds rows of an older schema version:
    // they are written as rows of this one (columns added since are NULL).
    let mut batches = file
        .batches
        .iter()
        .map(|batch| conform(batch, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    // Sources mostly deliver rows in time order, in batches that a parallel decoder may hand
    // over out of order: then the batches are put back in order and written as they are,
    // without copying every column through a concat and a sort.
    batches.sort_by_key(|batch| time_column(batch).values().first().copied());
    let batches = if in_time_order(&batches) {
        batches
    } else {
        let rows = concat_batches(&schema, &batches)?;
        let order = sort_to_indices(rows.column(0), None, None)?;
        vec![take_record_batch(&rows, &order)?]
    };
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let mut encoder = FileEncoder::new(file.table, rows, provenance)?;
    for batch in batches {
        encoder.write(batch)?;
    }
    encoder.finish()
}

/// Writes one file from rows in time order, run by run (shipping merges a segment into it).
pub struct FileEncoder {
    table: Table,
    schema: arrow::datatypes::SchemaRef,
    writer: writer::StoreFileWriter<Vec<u8>>,
    footer: writer::Provenance,
    /// Short runs waiting to be written together: the Parquet writer's cost is per batch.
    runs: Vec<RecordBatch>,
    buffered: usize,
}

/// Parquet bytes reserved per row: stored flows take 40-60 (README, import benchmark); a file
/// that needs more grows its buffer.
const RESERVED_BYTES_PER_ROW: usize = 128;

/// Rows written to the Parquet writer at once when runs are short.
const WRITE_ROWS: usize = 8192;

impl FileEncoder {
    /// A file of `table` expected to hold `rows` rows (sizes its bloom filters, picks its
    /// codec).
    pub fn new(
        table: Table,
        rows: usize,
        provenance: &Provenance,
    ) -> Result<FileEncoder, EncodeError> {
        let schema = table.schema();
        // Reserved, not touched: a large allocation is mapped lazily, so only the bytes written
        // count in memory, and the buffer is not copied as it grows (growing by doubling held
        // the old and the new buffer at once).
        let out = Vec::with_capacity(rows.saturating_mul(RESERVED_BYTES_PER_ROW) + (1 << 20));
        let writer =
            writer::StoreFileWriter::try_new(out, schema.clone(), SCHEMA_VERSION, Some(rows))?;
        Ok(FileEncoder {
            table,
            schema,
            writer,
            footer: writer::Provenance::recorder(&provenance.node, provenance.source),
            runs: Vec::new(),
            buffered: 0,
        })
    }

    /// Appends rows of the current schema that continue the file's time order.
    pub fn write(&mut self, run: RecordBatch) -> Result<(), EncodeError> {
        if run.num_rows() >= WRITE_ROWS && self.runs.is_empty() {
            return Ok(self.writer.write(&run)?);
        }
        self.buffered += run.num_rows();
        self.runs.push(run);
        if self.buffered >= WRITE_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EncodeError> {
        if self.runs.is_empty() {
            return Ok(());
        }
        let rows = concat_batches(&self.schema, &self.runs)?;
        self.runs.clear();
        self.buffered = 0;
        Ok(self.writer.write(&rows)?)
    }

    pub fn finish(mut self) -> Result<EncodedFile, EncodeError> {
        self.flush()?;
        let (bytes, written) = self.writer.finish(&self.footer)?;
        Ok(EncodedFile {
            table: self.table,
            first_time_ns: written.min_time.unwrap_or_default(),
            rows: written.rows as usize,
            bytes,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, RecordBatch};
    use arrow::datatypes::Schema;
    use flow_schema::hubble::HubbleDecoder;
    use flow_schema::CaptureSource;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    /// Rows an older recorder spooled (its schema lacked the newest column) ship after an
    /// upgrade as rows of the current schema.
    #[test]
    fn rows_of_an_older_schema_ship_as_the_current_one() {
        let line = r#"{"flow":{"time":"2026-11-24T09:00:00Z","uuid":"u1","verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"}},"node_name":"n"}"#;
        let rows = HubbleDecoder::new(CaptureSource::Import, None)
            .decode(format!("{line}\n").as_bytes(), 1)
            .flows;
        let current = Table::Flows.schema();
        let older_fields = current.fields()[..current.fields().len() - 1].to_vec();
        let older = Arc::new(Schema::new(older_fields));
        let older_rows =
            RecordBatch::try_new(older, rows.columns()[..rows.num_columns() - 1].to_vec()).unwrap();
        let file = SealedFile {
            table: Table::Flows,
            hour: 0,
            batches: vec![older_rows],
        };
        let provenance = Provenance {
            node: "n".into(),
            source: "hubble",
        };
        let encoded = encode(file, &provenance).unwrap();
        let read: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(encoded.bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(read[0].schema().fields(), current.fields());
        assert_eq!(read[0].num_rows(), 1);
        assert_eq!(read[0].column(read[0].num_columns() - 1).null_count(), 1);
    }
}
