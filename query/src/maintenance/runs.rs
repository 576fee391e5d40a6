//! Sorted runs: how an hour with many overlapping inputs is merged in bounded memory.
//!
//! DataFusion merges time-ordered streams (one per chain of non-overlapping files), and each
//! open stream of our wide rows (114 columns, nested policy lists) costs ~15 MB of reader
//! buffers: an hour of 50 nodes' 5-minute files is 50 streams, 1 GB. Above `--merge-width`
//! chains (12 by default), the chains are merged a bucket at a time into runs (Arrow IPC, LZ4, in a local
//! temporary folder), then the runs are merged here: a k-way merge on `time`, one batch per
//! run in memory, in passes of [`FAN_IN`] runs when there are more (a very wide hour).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use tokio::sync::mpsc;

use super::merge::MergeError;

/// Rows per merged batch.
const BATCH_ROWS: usize = 8192;

/// Chains of files (indices into `ranges`, each `(min, max)` time) that do not overlap, each
/// in time order: the fewest DataFusion can merge, as it would form them.
pub fn chains(ranges: &[(i64, i64)]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i]);
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for index in order {
        let (min, _) = ranges[index];
        match chains
            .iter_mut()
            .filter(|chain| ranges[*chain.last().expect("chains are not empty")].1 < min)
            .min_by_key(|chain| chain.len())
        {
            Some(chain) => chain.push(index),
            None => chains.push(vec![index]),
        }
    }
    chains
}

/// Writes a run (rows in time order) to `path`.
pub struct RunWriter {
    writer: StreamWriter<BufWriter<File>>,
    pub path: PathBuf,
}

impl RunWriter {
    pub fn create(path: &Path, schema: &SchemaRef) -> Result<RunWriter, MergeError> {
        let file =
            File::create(path).map_err(|e| MergeError::Run(format!("{}: {e}", path.display())))?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(|e| MergeError::Run(e.to_string()))?;
        let writer = StreamWriter::try_new_with_options(BufWriter::new(file), schema, options)
            .map_err(|e| MergeError::Run(e.to_string()))?;
        Ok(RunWriter {
            writer,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        self.writer
            .write(batch)
            .map_err(|e| MergeError::Run(e.to_string()))
    }

    pub fn finish(mut self) -> Result<PathBuf, MergeError> {
        self.writer
            .finish()
            .map_err(|e| MergeError::Run(e.to_string()))?;
        Ok(self.path)
    }
}

struct Run {
    reader: StreamReader<BufReader<File>>,
    /// The batch being read and its next row.
    batch: RecordBatch,
    row: usize,
    /// Where `batch` is in the arena of the batch being built.
    slot: usize,
}

fn time(batch: &RecordBatch, row: usize) -> i64 {
    batch
        .column(0)
        .as_primitive::<TimestampNanosecondType>()
        .value(row)
}

/// Runs merged at once: each holds one batch in memory while merged.
pub const FAN_IN: usize = 16;

/// Merges the runs at `paths` into batches in time order, sent to `out` (a blocking task).
/// More than [`FAN_IN`] runs are first merged [`FAN_IN`] at a time into longer runs in `dir`,
/// so memory does not grow with the number of runs.
pub fn merge_all(
    mut paths: Vec<PathBuf>,
    dir: &Path,
    out: &mpsc::Sender<RecordBatch>,
) -> Result<(), MergeError> {
    let mut pass = 0;
    while paths.len() > FAN_IN {
        pass += 1;
        let mut longer = Vec::new();
        for (index, group) in paths.chunks(FAN_IN).enumerate() {
            let path = dir.join(format!("pass-{pass}-{index}"));
            let mut writer: Option<RunWriter> = None;
            merge_runs(group, &mut |batch| {
                let writer = match &mut writer {
                    Some(writer) => writer,
                    None => writer.insert(RunWriter::create(&path, &batch.schema())?),
                };
                writer.write(&batch)
            })?;
            for done in group {
                let _ = std::fs::remove_file(done);
            }
            if let Some(writer) = writer {
                longer.push(writer.finish()?);
            }
        }
        paths = longer;
    }
    merge_runs(&paths, &mut |batch| {
        out.blocking_send(batch)
            .map_err(|_| MergeError::Run("the writer stopped".into()))
    })
}

/// Merges the runs at `paths` into batches in time order, each given to `sink`.
fn merge_runs(
    paths: &[PathBuf],
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let mut runs: Vec<Run> = Vec::new();
    let mut arena: Vec<RecordBatch> = Vec::new();
    for path in paths {
        let file =
            File::open(path).map_err(|e| MergeError::Run(format!("{}: {e}", path.display())))?;
        let mut reader = StreamReader::try_new(BufReader::new(file), None)
            .map_err(|e| MergeError::Run(e.to_string()))?;
        if let Some(batch) = next_batch(&mut reader)? {
            arena.push(batch.clone());
            runs.push(Run {
                reader,
                batch,
                row: 0,
                slot: arena.len() - 1,
            });
        }
    }
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| Reverse((time(&run.batch, 0), i)))
        .collect();
    let mut indices: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    while let Some(Reverse((_, i))) = heap.pop() {
        let bound = heap.peek().map(|Reverse((t, _))| *t);
        // Take every row of this run up to the next run's time at once.
        loop {
            let run = &mut runs[i];
            indices.push((run.slot, run.row));
            run.row += 1;
            if indices.len() == BATCH_ROWS {
                flush(&mut arena, &mut indices, &mut runs, sink)?;
                break;
            }
            let run = &runs[i];
            if run.row >= run.batch.num_rows()
                || bound.is_some_and(|b| time(&run.batch, run.row) > b)
            {
                break;
            }
        }
        let run = &mut runs[i];
        if run.row >= run.batch.num_rows() {
            match next_batch(&mut run.reader)? {
                Some(batch) => {
                    arena.push(batch.clone());
                    run.slot = arena.len() - 1;
                    run.batch = batch;
                    run.row = 0;
                }
                None => continue,
            }
        }
        heap.push(Reverse((time(&run.batch, run.row), i)));
    }
    if !indices.is_empty() {
        flush(&mut arena, &mut indices, &mut runs, sink)?;
    }
    Ok(())
}

fn next_batch(
    reader: &mut StreamReader<BufReader<File>>,
) -> Result<Option<RecordBatch>, MergeError> {
    loop {
        match reader.next() {
            None => return Ok(None),
            Some(Err(e)) => return Err(MergeError::Run(e.to_string())),
            Some(Ok(batch)) if batch.num_rows() == 0 => continue,
            Some(Ok(batch)) => return Ok(Some(batch)),
        }
    }
}

/// Builds the batch of `indices`, sends it, and keeps in the arena only the batches the runs
/// are still reading.
fn flush(
    arena: &mut Vec<RecordBatch>,
    indices: &mut Vec<(usize, usize)>,
    runs: &mut [Run],
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let refs: Vec<&RecordBatch> = arena.iter().collect();
    let batch =
        interleave_record_batch(&refs, indices).map_err(|e| MergeError::Run(e.to_string()))?;
    indices.clear();
    arena.clear();
    for run in runs.iter_mut() {
        arena.push(run.batch.clone());
        run.slot = arena.len() - 1;
    }
    sink(batch)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn chains_never_overlap_and_are_few() {
        let ranges = [(0, 10), (5, 15), (11, 20), (16, 30), (21, 25), (0, 100)];
        let chains = chains(&ranges);
        assert_eq!(chains.len(), 3, "{chains:?}");
        for chain in &chains {
            for pair in chain.windows(2) {
                assert!(ranges[pair[0]].1 < ranges[pair[1]].0, "{chains:?}");
            }
        }
        let mut all: Vec<usize> = chains.concat();
        all.sort();
        assert_eq!(all, (0..ranges.len()).collect::<Vec<_>>());
    }

    #[test]
    fn runs_merge_in_time_order_with_every_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("run", DataType::Int32, false),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let runs = FAN_IN as i32 * 2 + 3; // two passes
        for run in 0..runs {
            let mut writer =
                RunWriter::create(&dir.path().join(format!("{run}")), &schema).unwrap();
            for part in 0..3i64 {
                let times: Vec<i64> = (0..5000)
                    .map(|i| (part * 5000 + i) * i64::from(runs) + i64::from(run))
                    .collect();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                        Arc::new(Int32Array::from(vec![run; 5000])),
                    ],
                )
                .unwrap();
                writer.write(&batch).unwrap();
            }
            paths.push(writer.finish().unwrap());
        }
        let (tx, mut rx) = mpsc::channel(1000);
        let folder = dir.path().to_path_buf();
        std::thread::spawn(move || merge_all(paths, &folder, &tx).unwrap());
        let mut previous = i64::MIN;
        let mut rows = 0;
        while let Some(batch) = rx.blocking_recv() {
            assert!(batch.num_rows() <= BATCH_ROWS);
            for row in 0..batch.num_rows() {
                let t = time(&batch, row);
                assert!(t > previous, "{t} after {previous}");
                previous = t;
            }
            rows += batch.num_rows();
        }
        assert_eq!(rows, runs as usize * 3 * 5000);
    }
}
