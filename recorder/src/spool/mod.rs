//! The spool: where captured flows become durable before they reach the store.
//!
//! A flow is **recorded** once the spool record holding it is covered by an fsync
//! ([`Spool::commit`], after every drain). Records go to numbered segments
//! (`DIR/segments/NNNNNNNNNNNN.seg`, CRC-framed: [`segment`]); the highest-numbered is the one
//! being written, every lower one is sealed and waits for the shipper ([`ship`]), which turns it
//! into Parquet files under keys that depend only on the spool's id, the segment's number and
//! the file's content, uploads them, checks them in the store, and only then deletes the
//! segment. A retried or repeated upload therefore overwrites the same objects: nothing is
//! duplicated, nothing deleted before it is safe.
//!
//! Layout of DIR: `LOCK` (flock'ed by the recorder using the spool; holds its pid), `ID` (a
//! random id chosen when the spool is created, part of every object key, so a spool recreated
//! from scratch never reuses a previous one's keys), `SEQUENCE` (the last segment number
//! used, so numbers are never reused even after every segment was shipped), `CHECKPOINT`
//! (see below), `segments/`.
//!
//! **Checkpoints.** A source that reads from a position (a followed file) records its position
//! in the same record as the rows read before it ([`Spool::append_transaction_within`]), so the
//! two are recorded together or not at all. The newest checkpoint must outlive the segment
//! holding it, which is deleted once shipped: before a segment holding one is sealed, its last
//! checkpoint is written to `CHECKPOINT` (with the segment's number). At open, the newest of
//! that file and of the leftover segments' checkpoints is the position to resume from
//! ([`Spool::checkpoint`]). The spool does not interpret checkpoints.

pub mod merge;
pub mod record;
pub mod segment;
pub mod ship;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use flow_schema::Table;

use segment::{sync_directory, walk_file, SegmentError, SegmentWriter};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("--spool {dir}: cannot {action}: {source}{}", writable_hint(source))]
    Io {
        dir: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "--spool {dir} is in use by another flowrec{holder}: one recorder per spool (give this \
         one its own --spool)"
    )]
    InUse { dir: String, holder: String },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("spool record: {0}")]
    Record(#[from] record::RecordError),
}

/// What to do when the spool folder cannot be written at all (a read-only mount, a folder of
/// another user): said at start, before any flow is accepted.
fn writable_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            " (the spool must be a writable folder of the recorder's user, on a disk that \
             survives restarts: in Kubernetes a hostPath volume mounted read-write)"
        }
        _ => "",
    }
}

/// The spool's lock: released when the last holder drops it.
#[derive(Debug, Clone)]
pub struct SpoolLock(#[allow(dead_code)] std::sync::Arc<File>);

/// A sealed segment, waiting to be shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub sequence: u64,
    pub path: PathBuf,
}

/// The writing side of a spool (one per recorder, held under the lock).
pub struct Spool {
    dir: PathBuf,
    segments: PathBuf,
    id: String,
    /// The flock is the lock; shared with whoever must outlive the writer (the shipper).
    lock: SpoolLock,
    active: SegmentWriter,
    sequence: u64,
    opened: Instant,
    /// The newest checkpoint recorded, and the segment it is in.
    checkpoint: Option<(u64, Vec<u8>)>,
    /// Appended, not yet committed.
    pending_checkpoint: Option<(u64, Vec<u8>)>,
    /// In-memory size of the rows in the active segment: what shipping it will hold at once
    /// (records are compressed, so the file says little about it).
    active_rows_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and returns it with the segments a previous run
    /// left, to ship first. Recovery, in this order:
    /// 1. take the lock, or fail naming the holder's pid: two recorders on one spool would
    ///    ship each other's segments;
    /// 2. read the spool id (create it the first time);
    /// 3. every segment already there is from a previous run: it is cut at its last good
    ///    record (a torn or damaged tail is logged with the file and the offset) and fsynced,
    ///    so that what is shipped is what would survive a power loss now, and shipping it again
    ///    later writes the same objects; one left with no record is deleted, any other sealed;
    /// 4. start a new segment numbered after every number ever used.
    pub fn open(dir: &Path) -> Result<(Spool, Vec<Sealed>), SpoolError> {
        let shown = dir.display().to_string();
        let io_error = |action| {
            let dir = shown.clone();
            move |source| SpoolError::Io {
                dir,
                action,
                source,
            }
        };
        let segments = dir.join("segments");
        std::fs::create_dir_all(&segments).map_err(io_error("create it"))?;
        let lock = lock(dir, &shown)?;
        let id = read_or_create_id(dir).map_err(io_error("read or create its ID"))?;
        let mut leftovers = list_segments(&segments).map_err(io_error("list its segments"))?;
        let mut checkpoint = read_checkpoint(dir).map_err(io_error("read its CHECKPOINT"))?;
        let mut sealed = Vec::new();
        for (sequence, path) in leftovers.drain(..) {
            let recovered = recover_segment(&path)?;
            if let Some(found) = recovered.checkpoint {
                if checkpoint
                    .as_ref()
                    .is_none_or(|(file, _)| sequence >= *file)
                {
                    checkpoint = Some((sequence, found));
                }
            }
            if recovered.keep {
                sealed.push(Sealed { sequence, path });
            }
        }
        // The leftovers are about to be shipped and deleted: their checkpoint must not go
        // with them.
        if let Some((sequence, bytes)) = &checkpoint {
            write_checkpoint(dir, *sequence, bytes).map_err(io_error("write its CHECKPOINT"))?;
        }
        let last = read_sequence(dir).map_err(io_error("read its SEQUENCE"))?;
        let newest = sealed.last().map_or(0, |s| s.sequence);
        let sequence = last.max(newest) + 1;
        let active = start_segment(dir, &segments, sequence)?;
        Ok((
            Spool {
                dir: dir.to_path_buf(),
                segments,
                id,
                lock: SpoolLock(std::sync::Arc::new(lock)),
                active,
                sequence,
                opened: Instant::now(),
                checkpoint,
                pending_checkpoint: None,
                active_rows_bytes: 0,
            },
            sealed,
        ))
    }

    /// The lock, for the shipper to hold until it is done: a recorder started meanwhile on the
    /// same spool would otherwise ship the same segments.
    pub fn lock(&self) -> SpoolLock {
        self.lock.clone()
    }

    /// The spool's id: part of every object key its segments become.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends rows (durable at the next [`Spool::commit`]).
    pub fn append(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SpoolError> {
        let bytes = record::encode(table, batch)?;
        self.active.append(&bytes)?;
        self.active_rows_bytes += rows_bytes(batch);
        Ok(())
    }

    /// Appends rows unless the spool would then hold more than `budget` bytes (segments not
    /// yet shipped included); returns whether they were appended. Rows already recorded are
    /// never deleted to make room: recorded means kept until shipped.
    pub fn append_within(
        &mut self,
        table: Table,
        batch: &RecordBatch,
        budget: u64,
    ) -> Result<bool, SpoolError> {
        let bytes = record::encode(table, batch)?;
        if !self.fits(bytes.len(), budget)? {
            return Ok(false);
        }
        self.active.append(&bytes)?;
        self.active_rows_bytes += rows_bytes(batch);
        Ok(true)
    }

    /// Appends rows of any tables with the source's position after them, as one record,
    /// unless the spool would then hold more than `budget` bytes; returns whether it was
    /// appended. Recorded (rows and position together) at the next [`Spool::commit`].
    pub fn append_transaction_within(
        &mut self,
        batches: &[(Table, RecordBatch)],
        checkpoint: &[u8],
        budget: u64,
    ) -> Result<bool, SpoolError> {
        let bytes = record::encode_transaction(batches, checkpoint)?;
        if !self.fits(bytes.len(), budget)? {
            return Ok(false);
        }
        self.active.append(&bytes)?;
        self.active_rows_bytes += batches
            .iter()
            .map(|(_, batch)| rows_bytes(batch))
            .sum::<u64>();
        // Only a commit makes it the spool's checkpoint: a failed sync cuts the record off.
        self.pending_checkpoint = Some((self.sequence, checkpoint.to_vec()));
        Ok(true)
    }

    /// The newest checkpoint committed, or recovered at open: where the source resumes.
    pub fn checkpoint(&self) -> Option<&[u8]> {
        self.checkpoint.as_ref().map(|(_, bytes)| bytes.as_slice())
    }

    fn fits(&self, record: usize, budget: u64) -> Result<bool, SpoolError> {
        let used = self.size().map_err(|source| SpoolError::Io {
            dir: self.dir.display().to_string(),
            action: "measure its segments",
            source,
        })?;
        // An empty spool takes a record larger than the whole budget: otherwise a source
        // with such a record (a huge line) would wait forever.
        let empty = used <= segment::MAGIC.len() as u64;
        Ok(empty || used + segment::FRAME_HEADER as u64 + record as u64 <= budget)
    }

    /// Bytes of every segment in the spool (the shipper deletes shipped ones concurrently).
    pub fn size(&self) -> io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.segments)? {
            match entry?.metadata() {
                Ok(meta) => total += meta.len(),
                // Shipped and deleted while listing.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(total)
    }

    /// Makes everything appended so far recorded (on failure, nothing since the last commit
    /// is).
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        let synced = self.active.sync();
        let pending = self.pending_checkpoint.take();
        synced?;
        if pending.is_some() {
            self.checkpoint = pending;
        }
        Ok(())
    }

    /// In-memory bytes of the rows in the segment being written, and its age: what the
    /// rotation policy (`--max-file-bytes`, `--max-file-age`) bounds, so that shipping a
    /// segment holds at most about `--max-file-bytes` of rows.
    pub fn active_size(&self) -> (u64, Duration) {
        (self.active_rows_bytes, self.opened.elapsed())
    }

    /// Seals the active segment (committing it) and starts the next; None if it held nothing.
    pub fn seal(&mut self) -> Result<Option<Sealed>, SpoolError> {
        if self.active.is_empty() {
            // Its age counts from now: the next rows get the whole --max-file-age.
            self.opened = Instant::now();
            return Ok(None);
        }
        self.commit()?;
        // Once sealed, this segment may be shipped and deleted at any time: its checkpoint is
        // kept beside the segments first.
        if let Some((sequence, bytes)) = &self.checkpoint {
            if *sequence == self.sequence {
                write_checkpoint(&self.dir, *sequence, bytes).map_err(|source| SpoolError::Io {
                    dir: self.dir.display().to_string(),
                    action: "write its CHECKPOINT",
                    source,
                })?;
            }
        }
        // The next segment exists before this one counts as sealed: if it cannot be created
        // (a full disk), this one stays active and a later seal tries again.
        let next = start_segment(&self.dir, &self.segments, self.sequence + 1)?;
        let previous = std::mem::replace(&mut self.active, next);
        let sealed = Sealed {
            sequence: self.sequence,
            path: previous.path().to_path_buf(),
        };
        self.sequence += 1;
        self.opened = Instant::now();
        self.active_rows_bytes = 0;
        Ok(Some(sealed))
    }
}

impl Drop for Spool {
    /// An empty active segment is not left behind (recovery would only delete it).
    fn drop(&mut self) {
        if self.active.is_empty() {
            let _ = std::fs::remove_file(self.active.path());
        }
    }
}

/// Memory the rows of `batch` hold (a slice counts its rows, not its parent's buffers).
fn rows_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size()) as u64
        })
        .sum()
}

/// What recovery found in a leftover segment.
struct Recovered {
    /// It holds records to ship.
    keep: bool,
    /// Its last checkpoint.
    checkpoint: Option<Vec<u8>>,
}

/// Step 3 of [`Spool::open`] for one segment.
fn recover_segment(path: &Path) -> Result<Recovered, SpoolError> {
    // One record at a time: after an outage the spool may hold gigabytes.
    let mut records = 0usize;
    let mut checkpoint = None;
    let (valid_len, damage) = walk_file(path, |_, bytes| {
        records += 1;
        if let Some(found) = record::checkpoint(bytes) {
            checkpoint = Some(found.to_vec());
        }
    })?;
    let io_error = |action| {
        move |source| SegmentError {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    if records == 0 {
        if let Some((offset, damage)) = &damage {
            crate::warn!(
                "spool segment {}: {damage} at byte {offset}; no record to recover",
                path.display()
            );
        }
        std::fs::remove_file(path).map_err(io_error("remove"))?;
        return Ok(Recovered {
            keep: false,
            checkpoint: None,
        });
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open"))?;
    if let Some((offset, damage)) = &damage {
        crate::warn!(
            "spool segment {}: {damage} at byte {offset}; the {records} records before it are \
             kept, the rest is cut",
            path.display(),
        );
        file.set_len(valid_len).map_err(io_error("truncate"))?;
    }
    file.sync_all().map_err(io_error("sync"))?;
    Ok(Recovered {
        keep: true,
        checkpoint,
    })
}

fn segment_path(segments: &Path, sequence: u64) -> PathBuf {
    segments.join(format!("{sequence:012}.seg"))
}

/// Records `sequence` as used, then creates its segment.
fn start_segment(dir: &Path, segments: &Path, sequence: u64) -> Result<SegmentWriter, SpoolError> {
    write_atomically(&dir.join("SEQUENCE"), sequence.to_string().as_bytes()).map_err(|source| {
        SpoolError::Io {
            dir: dir.display().to_string(),
            action: "write its SEQUENCE",
            source,
        }
    })?;
    Ok(SegmentWriter::create(&segment_path(segments, sequence))?)
}

fn lock(dir: &Path, shown: &str) -> Result<File, SpoolError> {
    let path = dir.join("LOCK");
    let io_error = |source| SpoolError::Io {
        dir: shown.to_string(),
        action: "open its LOCK",
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    // SAFETY: flock on a descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(SpoolError::InUse {
                dir: shown.to_string(),
                holder,
            });
        }
        return Err(io_error(error));
    }
    file.set_len(0).map_err(io_error)?;
    file.write_all(std::process::id().to_string().as_bytes())
        .map_err(io_error)?;
    Ok(file)
}

fn read_or_create_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("ID");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut random = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut random)?;
    let id = format!("{:016x}", u64::from_ne_bytes(random));
    write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

/// `CHECKPOINT`: the segment number (u64 LE), then the checkpoint.
fn write_checkpoint(dir: &Path, sequence: u64, checkpoint: &[u8]) -> io::Result<()> {
    let mut contents = sequence.to_le_bytes().to_vec();
    contents.extend_from_slice(checkpoint);
    write_atomically(&dir.join("CHECKPOINT"), &contents)
}

fn read_checkpoint(dir: &Path) -> io::Result<Option<(u64, Vec<u8>)>> {
    match std::fs::read(dir.join("CHECKPOINT")) {
        Ok(contents) => match contents.split_first_chunk::<8>() {
            Some((sequence, checkpoint)) => {
                Ok(Some((u64::from_le_bytes(*sequence), checkpoint.to_vec())))
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shorter than its 8-byte segment number",
            )),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn read_sequence(dir: &Path) -> io::Result<u64> {
    match std::fs::read_to_string(dir.join("SEQUENCE")) {
        Ok(text) => text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a number: {text:?}"),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

/// Segments in `segments`, by number.
fn list_segments(segments: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(segments)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".seg"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Replaces `path` with `contents` so that a crash leaves the old or the new file, whole.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    sync_directory(path.parent().unwrap_or(Path::new(".")))
}

/// Removes a shipped segment, durably.
pub fn remove_shipped(segment: &Sealed) -> io::Result<()> {
    match std::fs::remove_file(&segment.path) {
        // Removed by an earlier attempt whose directory sync failed.
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    sync_directory(segment.path.parent().unwrap_or(Path::new(".")))
}

/// A sealed segment's good records, decoded.
#[derive(Debug)]
#[cfg(test)]
pub struct Contents {
    /// Every record's batches, in order.
    pub records: Vec<(Table, RecordBatch)>,
    /// Why reading stopped before the end (file and offset), for the caller to report.
    pub damage: Option<String>,
}

/// Reads a sealed segment back whole (the tests' reading; shipping merges it: [`merge`]).
#[cfg(test)]
pub fn read_sealed(segment: &Sealed) -> Result<Contents, SpoolError> {
    let recovered = segment::read_segment(&segment.path)?;
    let damage = recovered.damage.map(|(offset, damage)| {
        format!(
            "spool segment {}: {damage} at byte {offset}; the {} records before it are kept",
            segment.path.display(),
            recovered.records.len()
        )
    });
    // A record that passed its checksum but does not decode (written by a broken or newer
    // recorder) ends the segment like damage does: what precedes it ships, and the segment
    // never blocks the ones after it.
    let mut records = Vec::with_capacity(recovered.records.len());
    let mut damage = damage;
    for (index, bytes) in recovered.records.iter().enumerate() {
        match record::decode(bytes) {
            Ok(decoded) => records.extend(decoded.batches),
            Err(error) => {
                damage = Some(format!(
                    "spool segment {}: record {} does not decode ({error}); the {index} records \
                     before it are kept",
                    segment.path.display(),
                    index + 1
                ));
                break;
            }
        }
    }
    Ok(Contents { records, damage })
}

/// Flow rows with only `time` set, for the spool's tests.
#[cfg(test)]
pub(crate) fn test_rows(times: &[i64]) -> RecordBatch {
    let schema = flow_schema::flow_schema();
    let mut table = flow_schema::table::TableBuilder::new(schema.clone());
    let time = schema.index_of("time").unwrap();
    for &t in times {
        table.time(time, t);
        table.commit();
    }
    table.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::test_rows as rows;
    use super::*;

    #[test]
    fn a_second_recorder_on_the_same_spool_is_refused_with_the_holder_s_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Spool::open(dir.path()).unwrap();
        let error = Spool::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("in use by another flowrec"), "{error}");
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
    }

    #[test]
    fn segments_left_by_a_run_are_sealed_and_numbers_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (id, first) = {
            let (mut spool, left) = Spool::open(dir.path()).unwrap();
            assert!(left.is_empty());
            spool.append(Table::Flows, &rows(&[1, 2])).unwrap();
            spool.commit().unwrap();
            let sealed = spool.seal().unwrap().unwrap();
            spool.append(Table::Flows, &rows(&[3])).unwrap();
            spool.commit().unwrap();
            (spool.id().to_string(), sealed)
            // Dropped without sealing: as after a crash.
        };
        let (mut spool, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.id(), id, "the id survives restarts");
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0], first);
        let contents = read_sealed(&left[1]).unwrap();
        assert_eq!(contents.damage, None);
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.records[0].1.num_rows(), 1);
        // Ship both, then restart: numbering continues after them.
        for segment in &left {
            remove_shipped(segment).unwrap();
        }
        spool.append(Table::Flows, &rows(&[4])).unwrap();
        let next = spool.seal().unwrap().unwrap();
        assert!(next.sequence > left[1].sequence);
        drop(spool);
        let (_spool, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(left, std::slice::from_ref(&next));
        assert!(
            std::fs::read_dir(dir.path().join("segments"))
                .unwrap()
                .count()
                == 2
        );
    }

    #[test]
    fn the_newest_checkpoint_survives_crashes_shipping_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let txn = |spool: &mut Spool, t: i64, position: &str| {
            let batches = [(Table::Flows, rows(&[t]))];
            assert!(spool
                .append_transaction_within(&batches, position.as_bytes(), u64::MAX)
                .unwrap());
            spool.commit().unwrap();
        };
        let reopen = || Spool::open(dir.path()).unwrap();
        let first = {
            let (mut spool, _) = reopen();
            assert_eq!(spool.checkpoint(), None);
            txn(&mut spool, 1, "a");
            txn(&mut spool, 2, "b");
            assert_eq!(spool.checkpoint(), Some(&b"b"[..]));
            spool.seal().unwrap().unwrap()
        };
        // Crash with "c" recorded in the active segment: it wins over CHECKPOINT ("b").
        let (mut spool, left) = reopen();
        assert_eq!(spool.checkpoint(), Some(&b"b"[..]));
        assert_eq!(left, std::slice::from_ref(&first));
        txn(&mut spool, 3, "c");
        drop(spool);
        let (spool, left) = reopen();
        assert_eq!(spool.checkpoint(), Some(&b"c"[..]));
        // Everything shipped and deleted: the checkpoint is still known.
        for segment in &left {
            remove_shipped(segment).unwrap();
        }
        drop(spool);
        let (mut spool, left) = reopen();
        assert!(left.is_empty());
        assert_eq!(spool.checkpoint(), Some(&b"c"[..]));
        // A transaction torn by a crash takes its position with it.
        txn(&mut spool, 4, "d");
        let active = spool.active.path().to_path_buf();
        drop(spool);
        let data = std::fs::read(&active).unwrap();
        std::fs::write(&active, &data[..data.len() - 3]).unwrap();
        let (spool, left) = reopen();
        assert!(left.is_empty(), "the torn segment held nothing else");
        assert_eq!(spool.checkpoint(), Some(&b"c"[..]));
    }

    #[test]
    fn a_full_spool_refuses_new_rows_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let batch = rows(&[1, 2, 3]);
        let one = record::encode(Table::Flows, &batch).unwrap().len() as u64 + 8;
        let budget = segment::MAGIC.len() as u64 + 2 * one;
        assert!(spool.append_within(Table::Flows, &batch, budget).unwrap());
        assert!(spool.append_within(Table::Flows, &batch, budget).unwrap());
        assert!(!spool.append_within(Table::Flows, &batch, budget).unwrap());
        assert_eq!(spool.size().unwrap(), budget);
        let sealed = spool.seal().unwrap().unwrap();
        assert_eq!(read_sealed(&sealed).unwrap().records.len(), 2);
    }

    #[test]
    fn a_damaged_segment_is_recovered_up_to_its_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = {
            let (mut spool, _) = Spool::open(dir.path()).unwrap();
            for t in 0..3 {
                spool.append(Table::Flows, &rows(&[t])).unwrap();
            }
            spool.seal().unwrap().unwrap()
        };
        let data = std::fs::read(&sealed.path).unwrap();
        std::fs::write(&sealed.path, &data[..data.len() - 10]).unwrap();
        let contents = read_sealed(&sealed).unwrap();
        assert_eq!(contents.records.len(), 2);
        let damage = contents.damage.unwrap();
        assert!(
            damage.contains(&sealed.path.display().to_string()),
            "{damage}"
        );
        assert!(damage.contains("torn write) at byte"), "{damage}");
        // Reopening cuts the tail: the segment then reads clean, with the same two records.
        let (_spool, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(left, std::slice::from_ref(&sealed));
        let contents = read_sealed(&sealed).unwrap();
        assert_eq!((contents.records.len(), contents.damage), (2, None));
    }

    #[test]
    fn a_record_that_does_not_decode_ends_its_segment_without_blocking_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        spool.append(Table::Flows, &rows(&[1])).unwrap();
        spool.active.append(b"\x09not arrow").unwrap();
        spool.append(Table::Flows, &rows(&[2])).unwrap();
        let sealed = spool.seal().unwrap().unwrap();
        let contents = read_sealed(&sealed).unwrap();
        assert_eq!(contents.records.len(), 1);
        let damage = contents.damage.unwrap();
        assert!(damage.contains("record 2 does not decode"), "{damage}");
    }
}
