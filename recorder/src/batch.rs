//! Batching: groups decoded rows into the files they will become.
//!
//! A file holds one table's rows of one UTC hour. A file is sealed when its buffered rows reach
//! the size limit, when it has been open longer than the age limit, when rows two hours newer
//! have arrived (sources deliver roughly in time order, so its hour is over: this bounds the
//! memory of importing a month of history), or when the source is done. Rows of a new hour open
//! a new file, so no file spans two hours; late rows of a sealed hour open another file there. Sealing sorts nothing and
//! writes nothing: the stage that encodes Parquet does that.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::array::{Scalar, TimestampNanosecondArray};
use arrow::compute::{filter_record_batch, kernels::cmp};
use arrow::datatypes::TimestampNanosecondType;
use flow_schema::layout::hour_start;
use flow_schema::Table;

/// When to close a file.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// In-memory (Arrow) bytes buffered for one file; the Parquet file is several times smaller.
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

/// The rows of one future file.
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

struct OpenFile {
    batches: Vec<RecordBatch>,
    bytes: usize,
    opened: Instant,
}

/// Buffers rows per (table, hour) and hands out files to seal.
pub struct Batcher {
    policy: RotationPolicy,
    open: BTreeMap<(Table, i64), OpenFile>,
    /// Newest hour that received rows, per table.
    newest_hour: BTreeMap<Table, i64>,
}

const HOUR_NS: i64 = 3_600_000_000_000;

impl Batcher {
    pub fn new(policy: RotationPolicy) -> Self {
        Batcher {
            policy,
            open: BTreeMap::new(),
            newest_hour: BTreeMap::new(),
        }
    }

    /// Adds rows of `table` (column 0 is `time`); returns the files that are now full.
    pub fn push(&mut self, table: Table, batch: RecordBatch) -> Vec<SealedFile> {
        let mut sealed = Vec::new();
        for (hour, rows) in split_by_hour(&batch) {
            let file = self.open.entry((table, hour)).or_insert_with(|| OpenFile {
                batches: Vec::new(),
                bytes: 0,
                opened: Instant::now(),
            });
            file.bytes += rows.get_array_memory_size();
            file.batches.push(rows);
            if file.bytes >= self.policy.max_bytes {
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
    fn past(&mut self, table: Table) -> Vec<SealedFile> {
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
            .filter_map(|hour| self.seal(table, hour))
            .collect()
    }

    /// Files open longer than the age limit at `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<SealedFile> {
        let old: Vec<(Table, i64)> = self
            .open
            .iter()
            .filter(|(_, f)| now.duration_since(f.opened) >= self.policy.max_age)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|(table, hour)| self.seal(table, hour))
            .collect()
    }

    /// Every open file (end of input, shutdown).
    pub fn flush(&mut self) -> Vec<SealedFile> {
        let keys: Vec<(Table, i64)> = self.open.keys().copied().collect();
        keys.into_iter()
            .filter_map(|(table, hour)| self.seal(table, hour))
            .collect()
    }

    fn seal(&mut self, table: Table, hour: i64) -> Option<SealedFile> {
        let file = self.open.remove(&(table, hour))?;
        Some(SealedFile {
            table,
            hour,
            batches: file.batches,
        })
    }
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

    #[test]
    fn no_file_spans_two_hours() {
        let mut batcher = Batcher::new(RotationPolicy::default());
        let mut files = batcher.push(Table::LostEvents, times(&[H + 5, 2 * H + 1, H + 7, 3 * H]));
        files.extend(batcher.flush());
        files.sort_by_key(|f| f.hour);
        let hours: Vec<(i64, usize)> = files.iter().map(|f| (f.hour, f.rows())).collect();
        assert_eq!(hours, vec![(H, 2), (2 * H, 1), (3 * H, 1)]);
    }

    #[test]
    fn size_and_age_seal_files() {
        let policy = RotationPolicy {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        };
        let mut batcher = Batcher::new(policy);
        let big: Vec<i64> = (0..200_000).map(|i| H + i).collect();
        let sealed = batcher.push(Table::LostEvents, times(&big));
        assert_eq!(sealed.len(), 1, "over the size limit");
        assert!(batcher.push(Table::LostEvents, times(&[H])).is_empty());
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(batcher.expired(later).len(), 1, "over the age limit");
        assert!(batcher.flush().is_empty());
    }

    #[test]
    fn hours_two_behind_the_newest_rows_are_sealed() {
        let mut batcher = Batcher::new(RotationPolicy::default());
        assert!(batcher
            .push(Table::LostEvents, times(&[H, H + 1]))
            .is_empty());
        assert!(
            batcher.push(Table::LostEvents, times(&[2 * H])).is_empty(),
            "H is still open"
        );
        let sealed = batcher.push(Table::LostEvents, times(&[3 * H]));
        let hours: Vec<(i64, usize)> = sealed.iter().map(|f| (f.hour, f.rows())).collect();
        assert_eq!(hours, vec![(H, 2)]);
        // A late row of a sealed hour opens another file there.
        assert!(batcher.push(Table::LostEvents, times(&[H + 5])).len() == 1);
        let mut rest: Vec<i64> = batcher.flush().iter().map(|f| f.hour).collect();
        rest.sort();
        assert_eq!(rest, vec![2 * H, 3 * H]);
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
