//! Staging: turns a sealed file's rows into Parquet bytes laid out for investigation queries.
//!
//! How a store file is written (sorting declared, zstd, statistics, bloom filters, footer
//! metadata) is defined once, in `flow_schema::writer`, and shared with `flowstore compact`;
//! this stage puts the rows in time order and in the current schema first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

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
    #[error("the thread encoding a file panicked")]
    Thread,
}

/// A file ready to upload.
#[derive(Debug)]
pub struct EncodedFile {
    pub table: Table,
    pub first_time_ns: i64,
    pub rows: usize,
    /// The file's bytes; only those after the last part when parts were taken
    /// ([`FileEncoder::take_part`]).
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
    let batches = in_time_order(batches)?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let mut encoder = FileEncoder::new(file.table, rows, provenance)?;
    for batch in batches {
        encoder.write(batch)?;
    }
    encoder.finish()
}

/// `batches` as rows in time order: as they are when they already are (no copy), else
/// concatenated and sorted.
pub fn in_time_order(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, EncodeError> {
    if are_in_time_order(&batches) {
        return Ok(batches);
    }
    let rows = concat_batches(&batches[0].schema(), &batches)?;
    let order = sort_to_indices(rows.column(0), None, None)?;
    Ok(vec![take_record_batch(&rows, &order)?])
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
        let reserve = rows.saturating_mul(RESERVED_BYTES_PER_ROW) + (1 << 20);
        Self::with_output(table, Some(rows), reserve, provenance)
    }

    /// A file whose rows are not known yet (zstd, bloom filters sized per row group), of at
    /// most about `max_bytes`.
    pub fn streaming(
        table: Table,
        max_bytes: usize,
        provenance: &Provenance,
    ) -> Result<FileEncoder, EncodeError> {
        Self::with_output(table, None, max_bytes + (1 << 20), provenance)
    }

    fn with_output(
        table: Table,
        rows: Option<usize>,
        reserve: usize,
        provenance: &Provenance,
    ) -> Result<FileEncoder, EncodeError> {
        let schema = table.schema();
        // Reserved, not touched: a large allocation is mapped lazily, so only the bytes written
        // count in memory, and the buffer is not copied as it grows (growing by doubling held
        // the old and the new buffer at once).
        let out = Vec::with_capacity(reserve);
        let writer = writer::StoreFileWriter::try_new(out, schema.clone(), SCHEMA_VERSION, rows)?;
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

    /// Bytes of the file so far, including what is buffered for it.
    pub fn bytes(&self) -> usize {
        self.writer.bytes()
            + self
                .runs
                .iter()
                .map(|r| r.get_array_memory_size())
                .sum::<usize>()
    }

    /// The file's first bytes, once at least `at_least` of them are written out (whole row
    /// groups), with the time of its first row: the beginning of a file sent in parts while
    /// the rest is encoded. [`FileEncoder::finish`] then gives the bytes after the last part.
    pub fn take_part(&mut self, at_least: usize) -> Option<(i64, Vec<u8>)> {
        if self.writer.untaken() < at_least {
            return None;
        }
        let first_time_ns = self.writer.min_time()?;
        Some((first_time_ns, self.writer.take_written()))
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

/// A [`FileEncoder`] on a thread of its own, so that a file is encoded while its next rows
/// are decoded (an import streams every large file this way).
pub struct EncoderThread {
    rows: Option<SyncSender<RecordBatch>>,
    /// A failure of the side handing rows over, reported in place of the file.
    failed: Option<EncodeError>,
    /// Bytes of the file so far, as the thread last saw them.
    bytes: Arc<AtomicUsize>,
    thread: JoinHandle<Result<EncodedFile, EncodeError>>,
}

impl EncoderThread {
    /// Starts encoding a file of `table` of at most about `max_bytes`.
    pub fn spawn(table: Table, max_bytes: usize, provenance: &Provenance) -> EncoderThread {
        // Two batches in flight: the thread always has the next one, and rows wait in one place
        // only.
        let (sender, receiver) = sync_channel::<RecordBatch>(2);
        let bytes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&bytes);
        let provenance = provenance.clone();
        let thread = std::thread::Builder::new()
            .name("flowrec-encode".into())
            .spawn(move || {
                let mut encoder = FileEncoder::streaming(table, max_bytes, &provenance)?;
                let schema = table.schema();
                for rows in receiver {
                    encoder.write(conform(&rows, &schema)?)?;
                    seen.store(encoder.bytes(), Ordering::Relaxed);
                }
                encoder.finish()
            })
            .expect("the system can start a thread");
        EncoderThread {
            rows: Some(sender),
            failed: None,
            bytes,
            thread,
        }
    }

    /// Hands rows that continue the file's time order to the thread. A failure of the thread
    /// is returned by [`EncoderThread::finish`]; rows sent after it are dropped.
    pub fn write(&mut self, rows: RecordBatch) {
        if let Some(sender) = &self.rows {
            if sender.send(rows).is_err() {
                self.rows = None;
            }
        }
    }

    /// Fails the file: rows meant for it could not be prepared.
    pub fn fail(&mut self, error: EncodeError) {
        self.rows = None;
        self.failed.get_or_insert(error);
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Waits for the thread to write the file's end.
    pub fn finish(mut self) -> Result<EncodedFile, EncodeError> {
        self.rows = None;
        let encoded = self
            .thread
            .join()
            .unwrap_or_else(|_| Err(EncodeError::Thread));
        match self.failed {
            Some(error) => Err(error),
            None => encoded,
        }
    }
}

fn time_column(batch: &RecordBatch) -> &arrow::array::TimestampNanosecondArray {
    batch.column(0).as_primitive::<TimestampNanosecondType>()
}

/// Every batch sorted by time, and each starting at or after the previous one's end.
fn are_in_time_order(batches: &[RecordBatch]) -> bool {
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
