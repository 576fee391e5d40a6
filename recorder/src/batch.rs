//! Batching: groups decoded rows into the files they will become, and streams the rows of a
//! large file into its Parquet encoder as they arrive (an import; the live sources stage
//! through the spool instead).
//!
//! A file holds one table's rows of one UTC hour, sorted by time. A file is sealed when it
//! holds `max_bytes` in memory (its encoded bytes and the rows waiting for the encoder), when it
//! has been open longer than the age limit, when rows two hours newer have arrived (sources
//! deliver roughly in time order, so its hour is over: this bounds the memory of importing a
//! month of history), or when the source is done. Rows of a new hour open a new file, so no
//! file spans two hours; late rows of a sealed hour open another file there.
//!
//! Streaming: a file's newest [`WINDOW_ROWS`] rows wait, so that rows arriving slightly out of
//! order (exports interleave CPUs and nodes) still land in order; the older ones go to the
//! file's encoder thread. Rows older than what the encoder already has cannot join the file:
//! they are kept apart and sealed as a file of their own (sorted then), so memory stays bounded
//! by the window, not by the file, whatever the input's order. A file that never outgrows
//! [`STREAM_AFTER_ROWS`] is handed over whole and encoded by the sink, knowing its size (small
//! files get the codec of small files).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::array::{Scalar, TimestampNanosecondArray};
use arrow::compute::{filter_record_batch, kernels::cmp};
use arrow::datatypes::TimestampNanosecondType;
use flow_schema::layout::hour_start;
use flow_schema::Table;

use crate::parquet_file::{self, EncodeError, EncodedFile, EncoderThread, Provenance};

/// Rows of a streamed file held back for rows that arrive out of order (chunks are handed over
/// in input order, so this is the input's own disorder: a node's export is out of order by
/// milliseconds). The encoder gets rows once twice this many wait. Every row waiting keeps its
/// decoded chunk in memory, but the chunks in flight weigh more: on 1M flows, halving the
/// window saved ~10 MiB, halving the chunks ~45 MiB.
pub const WINDOW_ROWS: usize = 8 * 1024;

/// Rows a file collects before it streams: files smaller than this are encoded whole, as
/// small files (`flow_schema::writer::SMALL_FILE_ROWS`).
const STREAM_AFTER_ROWS: usize = flow_schema::writer::SMALL_FILE_ROWS;

/// When to close a file.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// Memory one open file may hold: its rows waiting in Arrow plus its encoded bytes.
    pub max_bytes: usize,
    /// How long a file may stay open, so a quiet node still publishes its rows.
    pub max_age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("--max-file-bytes must be at least 1 MiB (got {0})")]
    TooSmall(usize),
    #[error("--max-file-age must be at least 1s (got {0:?})")]
    TooShort(Duration),
}

impl RotationPolicy {
    pub fn validate(self) -> Result<Self, RotationError> {
        if self.max_bytes < (1 << 20) {
            return Err(RotationError::TooSmall(self.max_bytes));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err(RotationError::TooShort(self.max_age));
        }
        Ok(self)
    }
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(300),
        }
    }
}

/// The rows of one future file, not encoded yet.
#[derive(Debug)]
pub struct SealedFile {
    pub table: Table,
    /// Start of the UTC hour every row belongs to (ns).
    pub hour: i64,
    pub batches: Vec<RecordBatch>,
}

impl SealedFile {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A closed file, as the sink receives it.
#[derive(Debug)]
pub enum Staged {
    /// Rows to sort and encode.
    Rows(SealedFile),
    /// A file its encoder thread finished (or the reason it could not).
    Encoded(Result<EncodedFile, EncodeError>),
}

/// Rows in Arrow, with what they cost.
#[derive(Default)]
struct Rows {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
}

impl Rows {
    fn push(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
    }

    fn take(&mut self) -> Vec<RecordBatch> {
        self.rows = 0;
        self.bytes = 0;
        std::mem::take(&mut self.batches)
    }
}

struct OpenFile {
    /// Rows not handed to the encoder yet.
    waiting: Rows,
    /// Once the file has outgrown the window.
    encoder: Option<EncoderThread>,
    /// Time of the newest row the encoder has: rows before it are late.
    encoded_until: i64,
    /// Rows that arrived after newer ones were encoded: a file of their own.
    late: Rows,
    opened: Instant,
}

impl OpenFile {
    fn new() -> OpenFile {
        OpenFile {
            waiting: Rows::default(),
            encoder: None,
            encoded_until: i64::MIN,
            late: Rows::default(),
            opened: Instant::now(),
        }
    }

    fn bytes(&self) -> usize {
        self.waiting.bytes + self.late.bytes + self.encoder.as_ref().map_or(0, |e| e.bytes())
    }

    fn add(&mut self, rows: RecordBatch, start_encoder: impl FnOnce() -> EncoderThread) {
        let times = time_column(&rows);
        if times.values().iter().any(|&t| t < self.encoded_until) {
            let on_time = cmp::gt_eq(times, &scalar(self.encoded_until, times)).expect("same type");
            let late = arrow::compute::not(&on_time).expect("a boolean array");
            self.late.push(filter(&rows, &late));
            let rows = filter(&rows, &on_time);
            if rows.num_rows() > 0 {
                self.waiting.push(rows);
            }
        } else {
            self.waiting.push(rows);
        }
        // A file starts streaming once it is too large for the small files' codec (whose
        // encoder must know the file's size), then whenever a window's worth has arrived.
        let due = match self.encoder {
            None => STREAM_AFTER_ROWS,
            Some(_) => 2 * WINDOW_ROWS,
        };
        if self.waiting.rows >= due {
            let encoder = self.encoder.get_or_insert_with(start_encoder);
            self.encoded_until = stream(&mut self.waiting, encoder, WINDOW_ROWS);
        }
    }

    /// The file's rows as the sink takes them: a finished file or rows to encode, and the late
    /// rows apart.
    fn seal(mut self, table: Table, hour: i64) -> Vec<Staged> {
        let mut files = Vec::new();
        match self.encoder.take() {
            Some(mut encoder) => {
                stream(&mut self.waiting, &mut encoder, 0);
                files.push(Staged::Encoded(encoder.finish()));
            }
            None if self.waiting.rows > 0 => files.push(Staged::Rows(SealedFile {
                table,
                hour,
                batches: self.waiting.take(),
            })),
            None => {}
        }
        if self.late.rows > 0 {
            files.push(Staged::Rows(SealedFile {
                table,
                hour,
                batches: self.late.take(),
            }));
        }
        files
    }
}

/// Hands `waiting`'s rows, in time order, to `encoder` except the newest `keep`; returns the
/// time of the last row handed over. Batches go as they are: joining short ones here (so that
/// the encoder thread, the one serial stage, skips that copy) measured no faster and held
/// ~25 MiB more.
fn stream(waiting: &mut Rows, encoder: &mut EncoderThread, keep: usize) -> i64 {
    let sorted = match parquet_file::in_time_order(waiting.take()) {
        Ok(sorted) => sorted,
        // Only an internal fault fails a concat and sort of rows of one schema; the file fails
        // with the reason.
        Err(error) => {
            encoder.fail(error);
            return i64::MIN;
        }
    };
    let total: usize = sorted.iter().map(RecordBatch::num_rows).sum();
    let mut send = total.saturating_sub(keep);
    let mut last = i64::MIN;
    for batch in sorted {
        let n = batch.num_rows();
        if send >= n {
            last = time_column(&batch).value(n - 1);
            encoder.write(batch);
            send -= n;
        } else {
            if send > 0 {
                last = time_column(&batch).value(send - 1);
                encoder.write(batch.slice(0, send));
            }
            waiting.push(batch.slice(send, n - send));
            send = 0;
        }
    }
    last
}

/// Buffers rows per (table, hour) and hands out the files they close.
pub struct Batcher {
    policy: RotationPolicy,
    provenance: Provenance,
    open: BTreeMap<(Table, i64), OpenFile>,
    /// Newest hour that received rows, per table.
    newest_hour: BTreeMap<Table, i64>,
}

const HOUR_NS: i64 = 3_600_000_000_000;

impl Batcher {
    pub fn new(policy: RotationPolicy, provenance: Provenance) -> Self {
        Batcher {
            policy,
            provenance,
            open: BTreeMap::new(),
            newest_hour: BTreeMap::new(),
        }
    }

    /// Adds rows of `table` (column 0 is `time`); returns the files that are now closed.
    pub fn push(&mut self, table: Table, batch: RecordBatch) -> Vec<Staged> {
        let mut sealed = Vec::new();
        for (hour, rows) in split_by_hour(&batch) {
            let (max_bytes, provenance) = (self.policy.max_bytes, &self.provenance);
            let file = self.open.entry((table, hour)).or_insert_with(OpenFile::new);
            file.add(rows, || EncoderThread::spawn(table, max_bytes, provenance));
            if file.bytes() >= max_bytes {
                sealed.extend(self.seal(table, hour));
            }
            let newest = self.newest_hour.entry(table).or_insert(hour);
            *newest = (*newest).max(hour);
        }
        sealed.extend(self.past(table));
        sealed.extend(self.expired(Instant::now()));
        sealed
    }

    /// Files of `table` two or more hours older than its newest rows.
    fn past(&mut self, table: Table) -> Vec<Staged> {
        let Some(&newest) = self.newest_hour.get(&table) else {
            return Vec::new();
        };
        let old: Vec<i64> = self
            .open
            .keys()
            .filter(|(t, hour)| *t == table && *hour <= newest - 2 * HOUR_NS)
            .map(|(_, hour)| *hour)
            .collect();
        old.into_iter()
            .flat_map(|hour| self.seal(table, hour))
            .collect()
    }

    /// Files open longer than the age limit at `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<Staged> {
        let old: Vec<(Table, i64)> = self
            .open
            .iter()
            .filter(|(_, f)| now.duration_since(f.opened) >= self.policy.max_age)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .flat_map(|(table, hour)| self.seal(table, hour))
            .collect()
    }

    /// Every open file (end of input, shutdown).
    pub fn flush(&mut self) -> Vec<Staged> {
        let keys: Vec<(Table, i64)> = self.open.keys().copied().collect();
        keys.into_iter()
            .flat_map(|(table, hour)| self.seal(table, hour))
            .collect()
    }

    fn seal(&mut self, table: Table, hour: i64) -> Vec<Staged> {
        match self.open.remove(&(table, hour)) {
            Some(file) => file.seal(table, hour),
            None => Vec::new(),
        }
    }
}

fn time_column(batch: &RecordBatch) -> &TimestampNanosecondArray {
    batch.column(0).as_primitive::<TimestampNanosecondType>()
}

fn filter(batch: &RecordBatch, keep: &BooleanArray) -> RecordBatch {
    filter_record_batch(batch, keep).expect("a mask of the batch's length")
}

/// Splits a batch by the UTC hour of its `time` column (column 0).
fn split_by_hour(batch: &RecordBatch) -> Vec<(i64, RecordBatch)> {
    if batch.num_rows() == 0 {
        return Vec::new();
    }
    let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for t in time.values().iter() {
        min = min.min(*t);
        max = max.max(*t);
    }
    let (first, last) = (hour_start(min), hour_start(max));
    if first == last {
        return vec![(first, batch.clone())];
    }
    let mut parts = Vec::new();
    let mut hour = first;
    while hour <= last {
        let next = hour + HOUR_NS;
        let lower = cmp::gt_eq(time, &scalar(hour, time)).expect("same type");
        let upper = cmp::lt(time, &scalar(next, time)).expect("same type");
        let in_hour = arrow::compute::and(&lower, &upper).expect("same length");
        if in_hour.true_count() > 0 {
            parts.push((
                hour,
                filter_record_batch(batch, &in_hour).expect("same length"),
            ));
        }
        hour = next;
    }
    parts
}

fn scalar(value: i64, like: &TimestampNanosecondArray) -> Scalar<TimestampNanosecondArray> {
    let array =
        TimestampNanosecondArray::from(vec![value]).with_data_type(like.data_type().clone());
    Scalar::new(array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn times(values: &[i64]) -> RecordBatch {
        let schema = flow_schema::lost_events_schema();
        let mut columns: Vec<Arc<dyn Array>> = vec![Arc::new(
            TimestampNanosecondArray::from(values.to_vec()).with_timezone("UTC"),
        )];
        for field in schema.fields().iter().skip(1) {
            columns.push(arrow::array::new_null_array(
                field.data_type(),
                values.len(),
            ));
        }
        RecordBatch::try_new(schema, columns).unwrap()
    }

    const H: i64 = 3_600_000_000_000;

    fn batcher(policy: RotationPolicy) -> Batcher {
        let provenance = Provenance {
            node: "n".into(),
            source: "import",
        };
        Batcher::new(policy, provenance)
    }

    /// (hour, rows, streamed) of a closed file.
    fn shape(file: &Staged) -> (i64, usize, bool) {
        match file {
            Staged::Rows(file) => (file.hour, file.rows(), false),
            Staged::Encoded(Ok(file)) => (hour_start(file.first_time_ns), file.rows, true),
            Staged::Encoded(Err(error)) => panic!("{error}"),
        }
    }

    fn shapes(files: &[Staged]) -> Vec<(i64, usize, bool)> {
        let mut shapes: Vec<_> = files.iter().map(shape).collect();
        shapes.sort();
        shapes
    }

    /// The times a closed file holds, in its order (a streamed file read back from Parquet).
    fn times_of(file: Staged) -> Vec<i64> {
        let batches = match file {
            Staged::Rows(file) => file.batches,
            Staged::Encoded(file) => {
                let bytes = bytes::Bytes::from(file.unwrap().bytes);
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        };
        batches
            .iter()
            .flat_map(|b| time_column(b).values().to_vec())
            .collect()
    }

    #[test]
    fn no_file_spans_two_hours() {
        let mut batcher = batcher(RotationPolicy::default());
        let mut files = batcher.push(Table::LostEvents, times(&[H + 5, 2 * H + 1, H + 7, 3 * H]));
        files.extend(batcher.flush());
        let expected = vec![(H, 2, false), (2 * H, 1, false), (3 * H, 1, false)];
        assert_eq!(shapes(&files), expected);
    }

    #[test]
    fn size_and_age_seal_files() {
        let policy = RotationPolicy {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        };
        let mut batcher = batcher(policy);
        let big: Vec<i64> = (0..200_000).map(|i| H + i).collect();
        let sealed = batcher.push(Table::LostEvents, times(&big));
        assert_eq!(
            shapes(&sealed),
            vec![(H, 200_000, true)],
            "over the size limit"
        );
        assert!(batcher.push(Table::LostEvents, times(&[H])).is_empty());
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(batcher.expired(later).len(), 1, "over the age limit");
        assert!(batcher.flush().is_empty());
    }

    #[test]
    fn hours_two_behind_the_newest_rows_are_sealed() {
        let mut batcher = batcher(RotationPolicy::default());
        assert!(batcher
            .push(Table::LostEvents, times(&[H, H + 1]))
            .is_empty());
        assert!(
            batcher.push(Table::LostEvents, times(&[2 * H])).is_empty(),
            "H is still open"
        );
        let sealed = batcher.push(Table::LostEvents, times(&[3 * H]));
        assert_eq!(shapes(&sealed), vec![(H, 2, false)]);
        // A late row of a sealed hour opens another file there.
        assert!(batcher.push(Table::LostEvents, times(&[H + 5])).len() == 1);
        let rest = batcher.flush();
        assert_eq!(shapes(&rest), vec![(2 * H, 1, false), (3 * H, 1, false)]);
    }

    /// Rows of a large file go to its encoder as they arrive; rows out of order by less than
    /// the window still come out as one sorted file.
    #[test]
    fn a_large_file_is_streamed_in_time_order() {
        let mut batcher = batcher(RotationPolicy::default());
        let rows = 100_000i64;
        // Batches of 1000 rows, each pair swapped, and rows reversed inside every third batch.
        let mut pushed: Vec<i64> = Vec::new();
        for pair in (0..rows / 1000).collect::<Vec<_>>().chunks(2) {
            for &b in pair.iter().rev() {
                let mut batch: Vec<i64> = (b * 1000..(b + 1) * 1000).map(|i| H + i).collect();
                if b % 3 == 0 {
                    batch.reverse();
                }
                pushed.extend(&batch);
                assert!(batcher.push(Table::LostEvents, times(&batch)).is_empty());
            }
        }
        let mut files = batcher.flush();
        assert_eq!(shapes(&files), vec![(H, rows as usize, true)]);
        let written = times_of(files.remove(0));
        pushed.sort();
        assert_eq!(written, pushed, "every row once, in time order");
    }

    /// Rows older than what the encoder already has make a file of their own, sorted when
    /// encoded; nothing waits for them.
    #[test]
    fn rows_older_than_the_encoded_ones_are_a_file_apart() {
        let mut batcher = batcher(RotationPolicy::default());
        let on_time: Vec<i64> = (1000..61_000).map(|i| H + i).collect();
        assert!(batcher.push(Table::LostEvents, times(&on_time)).is_empty());
        // 500..1500: before what was encoded (1000..) except those still in the window.
        let late: Vec<i64> = (500..1500).map(|i| H + i).collect();
        assert!(batcher.push(Table::LostEvents, times(&late)).is_empty());
        let files = batcher.flush();
        assert_eq!(shapes(&files), vec![(H, 1000, false), (H, 60_000, true)]);
        let mut all: Vec<i64> = files.into_iter().flat_map(times_of).collect();
        all.sort();
        let mut expected = [on_time, late].concat();
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    fn policy_is_validated() {
        let bad = RotationPolicy {
            max_bytes: 10,
            max_age: Duration::from_secs(5),
        };
        assert!(bad.validate().is_err());
        assert!(RotationPolicy::default().validate().is_ok());
    }
}
