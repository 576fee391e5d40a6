//! A sealed segment's rows in time order, with memory bounded by what overlaps in time.
//!
//! Shipping writes each table's rows of an hour as one time-sorted file. Reading the whole
//! segment back, then concatenating and sorting it, held its rows two to three times over: the
//! recorder's peak memory was about three times `--max-file-bytes`. Instead:
//!
//! 1. [`plan`] reads the segment one record at a time and keeps, for every batch in it, only
//!    where it is (the frame's offset, its entry in the record), its first time and its rows
//!    per hour: only the `time` column is decompressed, and the records are forgotten.
//! 2. [`Merge`] walks one table's batches by first time. A batch is read again (and sorted if
//!    it needs to be) only when the output reaches its first time, and dropped once its last
//!    row is out. Output comes as *runs*: slices of one batch, each within one hour, in time
//!    order across runs.
//!
//! Sources deliver rows roughly in time order, so one or two batches are loaded at a time; a
//! batch out of order (a late drain) costs memory only for the batches it overlaps.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::buffer::ScalarBuffer;
use arrow::compute::{sort_to_indices, take_record_batch};
use flow_schema::layout::hour_start;
use flow_schema::Table;

use super::record::{self, RecordError};
use super::segment::{read_record, walk_file, SegmentError};

const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The record passed its first reading but not the second (damage in a column the first
    /// reading skipped): the merge goes on without it ([`Merge::skipped`]).
    #[error("spool segment {path}: record {} does not decode ({source})", record + 1)]
    Record {
        path: PathBuf,
        record: usize,
        #[source]
        source: RecordError,
    },
    #[error("spool segment {path}: cannot read record {} again: {source}", record + 1)]
    Reread {
        path: PathBuf,
        record: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot order rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// One table's rows in one record.
#[derive(Debug, Clone)]
struct Piece {
    /// Index of the record in the segment, and the offset of its frame.
    record: usize,
    offset: u64,
    /// Position of the batch among the record's entries.
    entry: usize,
    first: i64,
}

/// What the first reading learnt of a segment.
#[derive(Debug, Default)]
pub struct Plan {
    path: PathBuf,
    /// Per table, its batches by first time (record order among equals).
    pieces: BTreeMap<Table, Vec<Piece>>,
    /// Rows per table and hour (the hour's start, ns).
    rows: BTreeMap<(Table, i64), usize>,
    /// Why the reading stopped before the segment's end, for the caller to report.
    pub damage: Option<String>,
}

impl Plan {
    /// The tables with rows, in the order files are numbered.
    pub fn tables(&self) -> impl Iterator<Item = Table> + '_ {
        self.pieces.keys().copied()
    }

    /// Rows of `table` in the hour starting at `hour`.
    pub fn rows(&self, table: Table, hour: i64) -> usize {
        self.rows.get(&(table, hour)).copied().unwrap_or(0)
    }
}

/// The first reading: the segment's records before `limit` (all if None), stopping at damage
/// or at a record that does not decode, like every reading of a segment does.
pub fn plan(path: &Path, limit: Option<usize>) -> Result<Plan, SegmentError> {
    let mut plan = Plan {
        path: path.to_path_buf(),
        ..Plan::default()
    };
    let mut records = 0usize;
    let mut undecodable: Option<(usize, RecordError)> = None;
    let (_, damage) = walk_file(path, |offset, bytes| {
        if undecodable.is_some() || limit.is_some_and(|limit| records >= limit) {
            return;
        }
        match record::summaries(bytes) {
            Ok(batches) => {
                for (entry, (table, summary)) in batches.into_iter().enumerate() {
                    let Some(first) = summary.first else {
                        continue;
                    };
                    for (hour, rows) in summary.rows_per_hour {
                        *plan.rows.entry((table, hour)).or_default() += rows as usize;
                    }
                    plan.pieces.entry(table).or_default().push(Piece {
                        record: records,
                        offset,
                        entry,
                        first,
                    });
                }
                records += 1;
            }
            Err(error) => undecodable = Some((records, error)),
        }
    })?;
    for pieces in plan.pieces.values_mut() {
        // Stable: batches of the same first time keep their record order.
        pieces.sort_by_key(|piece| piece.first);
    }
    plan.damage = match (undecodable, damage) {
        (Some((index, error)), _) => Some(format!(
            "spool segment {}: record {} does not decode ({error}); the {index} records \
             before it are kept",
            path.display(),
            index + 1
        )),
        (None, Some((offset, damage))) => Some(format!(
            "spool segment {}: {damage} at byte {offset}; the {records} records before it \
             are kept",
            path.display()
        )),
        (None, None) => None,
    };
    Ok(plan)
}

/// A loaded batch, sorted by time, and how much of it is out.
struct Cursor {
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    at: usize,
}

impl Cursor {
    fn head(&self) -> i64 {
        self.times[self.at]
    }
}

/// One table's rows of a planned segment, as runs in time order.
pub struct Merge<'p> {
    plan: &'p Plan,
    file: File,
    pending: VecDeque<&'p Piece>,
    active: Vec<Cursor>,
    skipped: Vec<MergeError>,
}

impl<'p> Merge<'p> {
    pub fn new(plan: &'p Plan, table: Table) -> Result<Merge<'p>, MergeError> {
        let file = File::open(&plan.path).map_err(|source| SegmentError {
            path: plan.path.clone(),
            action: "read",
            source,
        })?;
        Ok(Merge {
            plan,
            file,
            pending: plan.pieces.get(&table).into_iter().flatten().collect(),
            active: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// Reads `piece` again, as rows of the current schema in time order.
    fn load(&self, piece: &Piece) -> Result<Cursor, MergeError> {
        let path = || self.plan.path.clone();
        let bytes = read_record(&self.file, piece.offset).map_err(|source| MergeError::Reread {
            path: path(),
            record: piece.record,
            source,
        })?;
        let (_, mut batch) =
            record::decode_batch(&bytes, piece.entry).map_err(|source| MergeError::Record {
                path: path(),
                record: piece.record,
                source,
            })?;
        if !record::times(&batch).windows(2).all(|w| w[0] <= w[1]) {
            let order = sort_to_indices(batch.column(0), None, None)?;
            batch = take_record_batch(&batch, &order)?;
        }
        let times = record::times(&batch).clone();
        Ok(Cursor {
            batch,
            times,
            at: 0,
        })
    }

    /// Records left out because they did not decode on their second reading (their rows are
    /// lost; the caller reports them).
    pub fn skipped(&self) -> &[MergeError] {
        &self.skipped
    }

    /// The next run: rows of one loaded batch, none later than any row still to come, all
    /// in one hour.
    fn next_run(&mut self) -> Result<Option<RecordBatch>, MergeError> {
        // Every batch whose first row may come next is loaded.
        loop {
            let head = self.active.iter().map(Cursor::head).min();
            match self.pending.front() {
                Some(&piece) if head.is_none_or(|head| piece.first <= head) => {
                    self.pending.pop_front();
                    // Skipped, not retried without what follows: the files already written
                    // would then differ from the retry's under the same keys. Deterministic,
                    // so shipping the segment again writes the same files.
                    match self.load(piece) {
                        Ok(cursor) => self.active.push(cursor),
                        Err(error @ MergeError::Record { .. }) => self.skipped.push(error),
                        Err(error) => return Err(error),
                    }
                }
                _ => break,
            }
        }
        let Some(first) = (0..self.active.len()).min_by_key(|&i| self.active[i].head()) else {
            return Ok(None);
        };
        let head = self.active[first].head();
        // The run ends at another batch's head, a pending batch's first row, or the hour's
        // end, whichever is first. Rows at that instant may come from either side, and this
        // batch's go first: a source's consecutive batches often share their boundary instant
        // (the eBPF source's times are clock ticks), and ending the run just before it cut
        // every batch into a run and a sliver that the encoder then had to concatenate.
        let mut limit = hour_start(head) + HOUR_NS - 1;
        for (i, cursor) in self.active.iter().enumerate() {
            if i != first {
                limit = limit.min(cursor.head());
            }
        }
        if let Some(piece) = self.pending.front() {
            limit = limit.min(piece.first);
        }
        let cursor = &mut self.active[first];
        let rest = &cursor.times[cursor.at..];
        let length = rest.partition_point(|&t| t <= limit).max(1);
        let run = cursor.batch.slice(cursor.at, length);
        cursor.at += length;
        if cursor.at == cursor.times.len() {
            self.active.swap_remove(first);
        }
        Ok(Some(run))
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<RecordBatch, MergeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_run().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{test_rows as rows, Spool};

    fn times(batch: &RecordBatch) -> Vec<i64> {
        record::times(batch).to_vec()
    }

    /// Batches out of order, overlapping and unsorted inside, across two hours: the runs
    /// come out in time order, none spans two hours, and every row comes out once.
    #[test]
    fn runs_come_in_time_order_within_hours() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let h = HOUR_NS;
        let batches: [&[i64]; 5] = [
            &[10, 20, 30],
            &[25, 5, 40, h + 1],
            &[h - 1, h, h + 3],
            &[1, 2],
            &[h + 2],
        ];
        for batch in batches {
            spool.append(Table::Flows, &rows(batch)).unwrap();
        }
        let sealed = spool.seal().unwrap().unwrap();
        let plan = plan(&sealed.path, None).unwrap();
        assert_eq!(plan.damage, None);
        assert_eq!(plan.rows(Table::Flows, 0), 9);
        assert_eq!(plan.rows(Table::Flows, h), 4);
        let mut out = Vec::new();
        for run in Merge::new(&plan, Table::Flows).unwrap() {
            let run = times(&run.unwrap());
            assert!(!run.is_empty());
            assert_eq!(
                hour_start(run[0]),
                hour_start(*run.last().unwrap()),
                "{run:?}"
            );
            out.extend(run);
        }
        let mut expected: Vec<i64> = batches.concat();
        expected.sort();
        assert_eq!(out, expected);
        // A limit plans only the records before it.
        let limited = super::plan(&sealed.path, Some(2)).unwrap();
        assert_eq!(
            limited.rows(Table::Flows, 0) + limited.rows(Table::Flows, h),
            7
        );
    }

    /// A record whose `time` column reads but whose other columns do not (here: a uuid that
    /// is not UTF-8) is left out and named; the records around it come out.
    #[test]
    fn a_record_that_fails_its_second_reading_is_skipped_and_named() {
        use crate::spool::segment::SegmentWriter;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.seg");
        let mut writer = SegmentWriter::create(&path).unwrap();
        writer
            .append(&record::encode(Table::Flows, &rows(&[1, 2])).unwrap())
            .unwrap();
        let schema = flow_schema::flow_schema();
        let mut table = flow_schema::table::TableBuilder::new(schema.clone());
        table.time(schema.index_of("time").unwrap(), 3);
        table.str(schema.index_of("uuid").unwrap(), "MARKERMARKER");
        table.commit();
        let batch = table.finish().unwrap();
        let mut damaged = vec![0u8];
        let mut ipc = arrow_ipc::writer::StreamWriter::try_new(&mut damaged, &schema).unwrap();
        ipc.write(&batch).unwrap();
        ipc.finish().unwrap();
        drop(ipc);
        let at = damaged
            .windows(12)
            .position(|w| w == b"MARKERMARKER")
            .unwrap();
        damaged[at..at + 12].fill(0xFF);
        writer.append(&damaged).unwrap();
        writer
            .append(&record::encode(Table::Flows, &rows(&[4])).unwrap())
            .unwrap();
        writer.sync().unwrap();
        let plan = plan(&path, None).unwrap();
        assert_eq!(plan.damage, None, "the first reading sees only times");
        let mut merge = Merge::new(&plan, Table::Flows).unwrap();
        let out: Vec<i64> = merge
            .by_ref()
            .flat_map(|run| times(&run.unwrap()))
            .collect();
        assert_eq!(out, [1, 2, 4]);
        assert_eq!(merge.skipped().len(), 1);
        let named = merge.skipped()[0].to_string();
        assert!(named.contains("record 2 does not decode"), "{named}");
    }

    /// In-order batches come out whole: one run per batch, no copy; also when a batch
    /// begins at the instant the previous one ends.
    #[test]
    fn batches_in_order_are_runs_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let batches: [&[i64]; 4] = [&[0, 1, 2], &[100, 101, 102], &[102, 102, 103], &[103, 200]];
        for batch in batches {
            spool.append(Table::Flows, &rows(batch)).unwrap();
        }
        let sealed = spool.seal().unwrap().unwrap();
        let plan = plan(&sealed.path, None).unwrap();
        let runs: Vec<Vec<i64>> = Merge::new(&plan, Table::Flows)
            .unwrap()
            .map(|run| times(&run.unwrap()))
            .collect();
        assert_eq!(runs, batches);
    }
}
