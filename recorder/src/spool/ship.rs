//! Shipping a sealed segment: Parquet files under keys fixed by the segment, uploaded and
//! checked in the store, then the segment deleted.
//!
//! The segment's rows are grouped into files by table and UTC hour (the store's layout); file
//! `part` of segment `sequence` of spool `id` is written as writer id `{id}-{sequence}-{part}`,
//! and its time in the key is its first row's. All of that is a function of the segment's
//! content, so shipping a segment twice (a crash between upload and delete, a retry after a
//! timeout that had in fact succeeded) writes the same objects again instead of adding copies.

use std::collections::VecDeque;
use std::time::Duration;

use flow_schema::Table;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::Instant;

use arrow::array::AsArray;
use flow_schema::layout::hour_start;

use super::merge::{self, Merge, MergeError};
use super::segment::SegmentError;
use super::{remove_shipped, Sealed};
use crate::metrics::Metrics;
use crate::parquet_file::{EncodeError, EncodedFile, FileEncoder, Provenance};
use crate::upload::{PartsUpload, UploadError, UploadedFile, Uploader};

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("cannot delete shipped segment {path}: {source}")]
    Delete {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a shipping thread failed: {0}")]
    Thread(String),
}

/// What shipped segments put in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shipped {
    pub flows: u64,
    pub lost_events: u64,
    pub files: u64,
    pub bytes: u64,
}

impl Shipped {
    fn add(&mut self, other: Shipped) {
        self.flows += other.flows;
        self.lost_events += other.lost_events;
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Ships `segment` with `uploader` (its store, node and source name the files).
pub async fn ship(
    segment: &Sealed,
    spool_id: &str,
    uploader: &Uploader,
    provenance: &Provenance,
) -> Result<Shipped, ShipError> {
    if !segment.path.exists() {
        // Shipped and deleted by an earlier attempt that then failed to sync the directory.
        return Ok(Shipped::default());
    }
    let shipped = ship_records(segment, spool_id, uploader, provenance, PART_BYTES).await?;
    remove_shipped(segment).map_err(|source| ShipError::Delete {
        path: segment.path.display().to_string(),
        source,
    })?;
    Ok(shipped)
}

/// A file's bytes are sent in parts of at least this many once it has that many, so that
/// shipping a large file holds about a row group of its bytes rather than the whole file.
/// S3's multipart upload takes parts of 5 MiB and more (but the last); a row group of
/// stored flows is ~6 MiB (128k rows of ~47 bytes), so a part is a row group or two.
const PART_BYTES: usize = 5 << 20;

/// What the encoding thread hands to the uploads: the beginning of a file, or a file's end
/// (the whole file when no part of it went before).
enum Piece {
    Part {
        table: Table,
        first_time_ns: i64,
        bytes: Vec<u8>,
    },
    End(EncodedFile),
}

/// Files of the segment: one per table and hour, however large (a
/// segment is bounded by the rotation policy), numbered by table then hour. The merge and
/// the encoding run on a blocking thread, one piece ahead of the uploads; a file larger
/// than `part_bytes` ([`PART_BYTES`]) goes out in parts while it is encoded.
async fn ship_records(
    segment: &Sealed,
    spool_id: &str,
    uploader: &Uploader,
    provenance: &Provenance,
    part_bytes: usize,
) -> Result<Shipped, ShipError> {
    let (pieces, mut encoded) = mpsc::channel::<Piece>(1);
    let path = segment.path.clone();
    let provenance = provenance.clone();
    let encoding = tokio::task::spawn_blocking(move || {
        let encoded = encode_segment(&path, &provenance, part_bytes, |piece| {
            pieces.blocking_send(piece).is_ok()
        });
        // A file's encoding peaks at tens of MiB (a row group of every column) and then frees
        // it all. Kept for the purge delay (and mimalloc's arenas keep theirs ten times
        // longer), it sat beside the next segment's, which may run on another thread of the
        // blocking pool: 3 minutes at 100k flows/s peaked at 239 MiB, 165 MiB returning it
        // here (README, "Cost").
        crate::allocator::release_freed();
        encoded
    });
    let mut shipped = Shipped::default();
    let mut part = 0;
    let mut open: Option<PartsUpload> = None;
    let uploaded = async {
        while let Some(piece) = encoded.recv().await {
            let writer_id = format!("{spool_id}-{:012}-{part}", segment.sequence);
            let uploaded = match piece {
                Piece::Part {
                    table,
                    first_time_ns,
                    bytes,
                } => {
                    if open.is_none() {
                        open = Some(uploader.start_as(table, first_time_ns, &writer_id).await?);
                    }
                    open.as_mut()
                        .expect("started above")
                        .put_part(bytes)
                        .await?;
                    continue;
                }
                Piece::End(file) => match open.take() {
                    Some(upload) => upload.finish(file).await?,
                    None => uploader.upload_as(file, &writer_id).await?,
                },
            };
            part += 1;
            let UploadedFile {
                table, rows, bytes, ..
            } = uploaded;
            match table {
                Table::Flows => shipped.flows += rows as u64,
                Table::LostEvents => shipped.lost_events += rows as u64,
            }
            shipped.files += 1;
            shipped.bytes += bytes as u64;
        }
        Ok::<(), ShipError>(())
    }
    .await;
    // The encoder stops at its next piece once the receiver is gone.
    drop(encoded);
    if let Some(upload) = open {
        // Failed in the middle of a file (its error is returned below).
        upload.abort().await;
    }
    let encoded = encoding
        .await
        .map_err(|error| ShipError::Thread(error.to_string()))?;
    uploaded?;
    encoded?;
    Ok(shipped)
}

/// Merges the segment at `path` and encodes its files, handing each piece to `send` in order
/// (a file larger than `part_bytes` in parts as it is encoded); `send` returns false once the
/// uploads have stopped, and then so does this (their error is what the shipment returns).
fn encode_segment(
    path: &std::path::Path,
    provenance: &Provenance,
    part_bytes: usize,
    send: impl Fn(Piece) -> bool,
) -> Result<(), ShipError> {
    let plan = merge::plan(path, None)?;
    if let Some(damage) = &plan.damage {
        crate::warn!("{damage}");
    }
    for table in plan.tables() {
        let mut file: Option<(i64, FileEncoder)> = None;
        let mut merge = Merge::new(&plan, table)?;
        for run in merge.by_ref() {
            let run = run?;
            let hour = hour_start(time_of_first(&run));
            if file.as_ref().is_none_or(|(open, _)| *open != hour) {
                if let Some((_, done)) = file.take() {
                    if !send(Piece::End(done.finish()?)) {
                        return Ok(());
                    }
                }
                let rows = plan.rows(table, hour);
                file = Some((hour, FileEncoder::new(table, rows, provenance)?));
            }
            let encoder = &mut file.as_mut().expect("opened above").1;
            encoder.write(run)?;
            if let Some((first_time_ns, bytes)) = encoder.take_part(part_bytes) {
                let part = Piece::Part {
                    table,
                    first_time_ns,
                    bytes,
                };
                if !send(part) {
                    return Ok(());
                }
            }
        }
        for skipped in merge.skipped() {
            crate::warn!("{skipped}; its rows are not shipped");
        }
        if let Some((_, done)) = file {
            if !send(Piece::End(done.finish()?)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn time_of_first(run: &arrow::array::RecordBatch) -> i64 {
    run.column(0)
        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
        .value(0)
}

/// First wait after a failed shipment; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the shipping loop did.
#[derive(Debug, Default)]
pub struct Shipping {
    pub shipped: Shipped,
    pub segments: u64,
    /// Failed attempts (each was retried or left for the next start).
    pub retries: u64,
    /// Segments still in the spool when the loop ended (shipped at the next start).
    pub left: u64,
}

/// Ships every segment `sealed` delivers, in order, retrying a failing one with capped
/// backoff (the spool keeps it meanwhile). Once `sealed` is closed (the recorder is stopping),
/// what is left is tried until `grace` has passed, then left in the spool for the next start.
pub async fn ship_all(
    mut sealed: mpsc::UnboundedReceiver<Sealed>,
    spool_id: &str,
    uploader: &Uploader,
    provenance: &Provenance,
    grace: Duration,
    metrics: &Metrics,
) -> Shipping {
    let mut shipping = Shipping::default();
    let mut queue = VecDeque::new();
    let mut deadline: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Everything already delivered; wait for more only when idle and still running.
        loop {
            match sealed.try_recv() {
                Ok(segment) => queue.push_back(segment),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    deadline.get_or_insert_with(|| Instant::now() + grace);
                    break;
                }
            }
        }
        let Some(segment) = queue.front() else {
            if deadline.is_some() {
                return shipping;
            }
            match sealed.recv().await {
                Some(segment) => queue.push_back(segment),
                None => return shipping,
            }
            continue;
        };
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            shipping.left = queue.len() as u64;
            crate::warn!(
                "stopping with {} spool segment(s) not shipped (first: {}); they stay \
                 in the spool and are shipped at the next start",
                queue.len(),
                segment.path.display()
            );
            return shipping;
        }
        let attempt = ship(segment, spool_id, uploader, provenance);
        let outcome = match remaining {
            // Stopping: an attempt may not outlast the grace.
            Some(left) => tokio::time::timeout(left, attempt)
                .await
                .unwrap_or_else(|_| Err(ShipError::Thread("stop grace over".into()))),
            None => attempt.await,
        };
        match outcome {
            Ok(shipped) => {
                Metrics::add(&metrics.flows_shipped, shipped.flows);
                Metrics::add(&metrics.files_uploaded, shipped.files);
                Metrics::add(&metrics.bytes_uploaded, shipped.bytes);
                shipping.shipped.add(shipped);
                shipping.segments += 1;
                backoff = FIRST_BACKOFF;
                queue.pop_front();
            }
            Err(error) => {
                shipping.retries += 1;
                Metrics::add(&metrics.upload_errors, 1);
                let wait = remaining.map_or(backoff, |left| backoff.min(left));
                crate::warn!(
                    "cannot ship spool segment {} (kept; retrying in {wait:?}): {}",
                    segment.path.display(),
                    flow_schema::error_chain(&error)
                );
                // A stop during the wait starts the grace at once.
                let until = Instant::now() + wait;
                while Instant::now() < until && (deadline.is_some() || !sealed.is_closed()) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{test_rows as rows, Spool};
    use flow_schema::store::{Patience, Store};

    const HOUR: i64 = 3_600_000_000_000;

    fn objects(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(root).unwrap().display().to_string();
                    found.push((name, std::fs::read(&path).unwrap()));
                }
            }
        }
        found.sort();
        found
    }

    /// A crash after the upload but before the delete ships the segment again at the next
    /// start: the same keys are written with the same bytes, so the store holds it once.
    #[tokio::test]
    async fn shipping_a_segment_twice_writes_the_same_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let store = Store::open(store_dir.to_str().unwrap(), &Patience::INTERACTIVE).unwrap();
        let uploader = Uploader::new(store, "node-1".into(), "ebpf");
        let provenance = Provenance {
            node: "node-1".into(),
            source: "ebpf",
        };
        let (mut spool, _) = Spool::open(&dir.path().join("spool")).unwrap();
        // Two hours in one segment: two files.
        spool
            .append(Table::Flows, &rows(&[10 * HOUR + 5, 10 * HOUR + 1]))
            .unwrap();
        spool.append(Table::Flows, &rows(&[11 * HOUR + 2])).unwrap();
        let segment = spool.seal().unwrap().unwrap();
        let copy = dir.path().join("copy.seg");
        std::fs::copy(&segment.path, &copy).unwrap();

        let shipped = ship(&segment, spool.id(), &uploader, &provenance)
            .await
            .unwrap();
        assert_eq!((shipped.flows, shipped.files), (3, 2));
        assert!(!segment.path.exists(), "deleted once shipped");
        let first = objects(&store_dir);
        assert_eq!(
            first.len(),
            2,
            "{:?}",
            first.iter().map(|o| &o.0).collect::<Vec<_>>()
        );

        std::fs::copy(&copy, &segment.path).unwrap();
        ship(&segment, spool.id(), &uploader, &provenance)
            .await
            .unwrap();
        assert_eq!(objects(&store_dir), first, "same keys, same bytes");
    }

    /// A file sent in parts as it is encoded (here a part after every row group: three parts
    /// and the end) is the file sent whole, byte for byte, under the same key; a file smaller
    /// than a part is sent whole either way.
    #[tokio::test]
    async fn a_file_sent_in_parts_is_the_file_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let provenance = Provenance {
            node: "node-1".into(),
            source: "ebpf",
        };
        let (mut spool, _) = Spool::open(&dir.path().join("spool")).unwrap();
        // Three row groups and a bit in hour 10, one row in hour 11.
        let rows_10 = 3 * flow_schema::writer::ROW_GROUP_ROWS + 100;
        let times: Vec<i64> = (0..rows_10 as i64).map(|i| 10 * HOUR + i * 1000).collect();
        for chunk in times.chunks(50_000) {
            spool.append(Table::Flows, &rows(chunk)).unwrap();
        }
        spool.append(Table::Flows, &rows(&[11 * HOUR])).unwrap();
        let segment = spool.seal().unwrap().unwrap();
        let copy = dir.path().join("copy.seg");
        std::fs::copy(&segment.path, &copy).unwrap();
        let mut stored = Vec::new();
        for (name, part_bytes) in [("whole", usize::MAX), ("parts", 1)] {
            let store_dir = dir.path().join(name);
            std::fs::create_dir_all(&store_dir).unwrap();
            let store = Store::open(store_dir.to_str().unwrap(), &Patience::INTERACTIVE).unwrap();
            let uploader = Uploader::new(store, "node-1".into(), "ebpf");
            std::fs::copy(&copy, &segment.path).unwrap();
            let shipped = ship_records(&segment, spool.id(), &uploader, &provenance, part_bytes)
                .await
                .unwrap();
            assert_eq!(shipped.flows, rows_10 as u64 + 1);
            assert_eq!(shipped.files, 2);
            stored.push(objects(&store_dir));
        }
        assert_eq!(
            stored[0].len(),
            2,
            "two files, nothing else (no staging file left)"
        );
        assert!(stored[0] == stored[1], "the same keys and bytes");
    }
}
