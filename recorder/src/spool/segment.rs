//! A spool segment: an append-only file of CRC-framed records, the unit of local durability.
//!
//! Domain-free: a record is opaque bytes (the spool puts Arrow IPC batches in them). Layout:
//!
//! ```text
//! "FRSEG001"                                   8-byte magic, written and synced at creation
//! [len: u32 LE][crc: u32 LE][payload: len bytes]   one frame per record, CRC-32 of the payload
//! ...
//! ```
//!
//! A record counts once a [`SegmentWriter::sync`] that followed its append returned. Reading a
//! segment back ([`read_segment`]) stops at the first frame that is incomplete (a write cut by a
//! crash: the torn tail) or whose CRC does not match (a damaged disk block): everything before it
//! is returned, and what stopped the read is reported with the file and byte offset, so recovery
//! can log it and go on.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First bytes of every segment.
pub const MAGIC: &[u8; 8] = b"FRSEG001";
pub const FRAME_HEADER: usize = 8;
/// Larger "lengths" are damage, not records: a record is one drain's or one chunk's rows.
pub const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
#[error("spool segment {path}: cannot {action}: {source}")]
pub struct SegmentError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

fn error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Appends records to a new segment.
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    file: File,
    len: u64,
    /// Length covered by the last successful sync.
    synced_len: u64,
}

impl SegmentWriter {
    /// Creates the segment (never reuses an existing file), with its magic on disk and the
    /// directory entry synced: after this returns, a crash leaves a valid, empty segment.
    pub fn create(path: &Path) -> Result<SegmentWriter, SegmentError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(error(path, "create"))?;
        // A segment that could not be made whole (a full disk) is removed: left behind, it
        // would block every later attempt to create it.
        let started = file
            .write_all(MAGIC)
            .map_err(error(path, "write"))
            .and_then(|()| file.sync_all().map_err(error(path, "sync")));
        if let Err(failure) = started {
            let _ = std::fs::remove_file(path);
            return Err(failure);
        }
        if let Some(directory) = path.parent() {
            sync_directory(directory).map_err(error(path, "sync the directory of"))?;
        }
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            file,
            len: MAGIC.len() as u64,
            synced_len: MAGIC.len() as u64,
        })
    }

    /// Appends one record (not yet durable: see [`SegmentWriter::sync`]); returns its offset.
    /// Records are 1 to [`MAX_RECORD`] bytes (the spool splits larger drains).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SegmentError> {
        if payload.is_empty() || payload.len() > MAX_RECORD {
            return Err(SegmentError {
                path: self.path.clone(),
                action: "append to",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a record of {} bytes", payload.len()),
                ),
            });
        }
        let offset = self.len;
        let mut header = [0; FRAME_HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        // Header and payload written apart: a record is up to a few MiB, and copying it behind
        // its header first cost a copy and an allocation of every byte the spool records.
        let written = self
            .file
            .write_all(&header)
            .and_then(|()| self.file.write_all(payload));
        if let Err(failure) = written {
            // A full disk can leave part of the frame written: cut it off, so that the next
            // record follows the last whole one instead of garbage.
            self.truncate_to(offset);
            return Err(error(&self.path, "append to")(failure));
        }
        self.len += (FRAME_HEADER + payload.len()) as u64;
        Ok(offset)
    }

    /// Makes every record appended so far durable. On failure the records appended since the
    /// last successful sync are cut off (their durability is unknown): the caller counts them
    /// as not recorded.
    pub fn sync(&mut self) -> Result<(), SegmentError> {
        if self.len == self.synced_len {
            return Ok(());
        }
        if let Err(failure) = self.file.sync_data() {
            self.truncate_to(self.synced_len);
            return Err(error(&self.path, "sync")(failure));
        }
        self.synced_len = self.len;
        Ok(())
    }

    /// Best effort: shortens the file to `len` and writes from there on. Truncating frees
    /// space, so it works on a full disk; if it still fails, the reader stops at the damage.
    fn truncate_to(&mut self, len: u64) {
        if self.file.set_len(len).is_ok() && self.file.seek(SeekFrom::Start(len)).is_ok() {
            self.len = len;
        }
    }

    /// Bytes in the segment, magic included.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == MAGIC.len() as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes a directory's entries (a created or renamed file) durable.
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

/// Why reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last frame is incomplete: a write cut short by a crash.
    TornTail,
    /// The frame's payload does not match its CRC.
    BadChecksum,
    /// The frame claims more than any record can hold.
    BadLength(u64),
    /// The file does not start with the segment magic.
    BadMagic,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::TornTail => write!(f, "incomplete last record (torn write)"),
            Damage::BadChecksum => write!(f, "checksum mismatch"),
            Damage::BadLength(length) => write!(f, "impossible record length {length}"),
            Damage::BadMagic => write!(f, "not a spool segment"),
        }
    }
}

/// A segment as read back: its good records, and where and why reading stopped early.
#[derive(Debug)]
pub struct Recovered {
    pub records: Vec<Vec<u8>>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    /// `(offset, damage)` of the first frame that could not be read, if any.
    pub damage: Option<(u64, Damage)>,
}

/// Reads every good record of a segment, stopping at the first damaged frame.
pub fn read_segment(path: &Path) -> Result<Recovered, SegmentError> {
    let mut records = Vec::new();
    let (valid_len, damage) = walk_file(path, |_, payload| records.push(payload.to_vec()))?;
    Ok(Recovered {
        records,
        valid_len,
        damage,
    })
}

/// Calls `each(offset of the frame, payload)` for every good record of the segment at `path`,
/// in order, reading one frame at a time (a segment is never held whole in memory); returns
/// [`Recovered::valid_len`] and [`Recovered::damage`].
pub fn walk_file(
    path: &Path,
    each: impl FnMut(u64, &[u8]),
) -> Result<(u64, Option<(u64, Damage)>), SegmentError> {
    let file = File::open(path).map_err(error(path, "read"))?;
    walk(io::BufReader::with_capacity(1 << 20, file), each).map_err(error(path, "read"))
}

/// [`read_segment`] over bytes already read (public for the fuzz target: any bytes are cut, never
/// a panic).
pub fn parse(data: &[u8]) -> Recovered {
    let mut records = Vec::new();
    let (valid_len, damage) =
        walk(data, |_, payload| records.push(payload.to_vec())).expect("reading a slice");
    Recovered {
        records,
        valid_len,
        damage,
    }
}

/// The one reading of the frame layout, over any source.
fn walk(
    mut source: impl io::Read,
    mut each: impl FnMut(u64, &[u8]),
) -> io::Result<(u64, Option<(u64, Damage)>)> {
    let mut magic = [0u8; MAGIC.len()];
    if read_up_to(&mut source, &mut magic)? < MAGIC.len() || &magic != MAGIC {
        return Ok((0, Some((0, Damage::BadMagic))));
    }
    let mut at = MAGIC.len() as u64;
    let mut payload = Vec::new();
    let damage = loop {
        let mut header = [0u8; FRAME_HEADER];
        match read_up_to(&mut source, &mut header)? {
            0 => break None,
            FRAME_HEADER => {}
            _ => break Some(Damage::TornTail),
        }
        let Some((length, checksum)) = frame_header(&header) else {
            break Some(Damage::BadLength(u32_at(&header, 0) as u64));
        };
        payload.resize(length, 0);
        if read_up_to(&mut source, &mut payload)? < length {
            break Some(Damage::TornTail);
        }
        if crc32fast::hash(&payload) != checksum {
            break Some(Damage::BadChecksum);
        }
        each(at, &payload);
        at += (FRAME_HEADER + length) as u64;
    };
    Ok((at, damage.map(|kind| (at, kind))))
}

fn u32_at(header: &[u8; FRAME_HEADER], at: usize) -> u32 {
    u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"))
}

/// A frame header's payload length and CRC; None for an impossible length. The spool never
/// writes an empty record; zeros (a file extended by a crash whose data never reached the disk)
/// would otherwise pass as empty records with CRC 0.
fn frame_header(header: &[u8; FRAME_HEADER]) -> Option<(usize, u32)> {
    let length = u32_at(header, 0) as usize;
    (length != 0 && length <= MAX_RECORD).then(|| (length, u32_at(header, 4)))
}

/// Fills `buffer` as far as the source goes; the count read (short only at its end).
fn read_up_to(source: &mut impl io::Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The payload of the record whose frame starts at `offset` (found by [`walk_file`]), read
/// again and checked again.
pub fn read_record(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; FRAME_HEADER];
    file.read_exact_at(&mut header, offset)?;
    let (length, checksum) = frame_header(&header).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "impossible record length {} at byte {offset}",
                u32_at(&header, 0)
            ),
        )
    })?;
    let mut payload = vec![0u8; length];
    file.read_exact_at(&mut payload, offset + FRAME_HEADER as u64)?;
    if crc32fast::hash(&payload) != checksum {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("checksum mismatch at byte {offset} (the segment changed)"),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(records: &[&[u8]]) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.seg");
        let mut writer = SegmentWriter::create(&path).unwrap();
        let offsets = records.iter().map(|r| writer.append(r).unwrap()).collect();
        writer.sync().unwrap();
        (dir, path, offsets)
    }

    #[test]
    fn records_come_back_in_order() {
        let (_dir, path, offsets) = written(&[b"one", b"2", b"three"]);
        let recovered = read_segment(&path).unwrap();
        assert_eq!(recovered.records, [&b"one"[..], b"2", b"three"]);
        assert_eq!(recovered.damage, None);
        assert_eq!(recovered.valid_len, std::fs::metadata(&path).unwrap().len());
        assert_eq!(offsets, [8, 8 + 8 + 3, 8 + 8 + 3 + 8 + 1]);
        assert!(SegmentWriter::create(&path).is_err(), "never reuses a file");
    }

    #[test]
    fn a_truncated_segment_keeps_every_whole_record() {
        let (_dir, path, offsets) = written(&[b"first record", b"second record"]);
        let full = std::fs::read(&path).unwrap();
        // Cut anywhere inside the second frame (its header or its payload).
        for cut in offsets[1] as usize + 1..full.len() {
            let recovered = parse(&full[..cut]);
            assert_eq!(recovered.records, [&b"first record"[..]], "cut at {cut}");
            assert_eq!(recovered.valid_len, offsets[1]);
            assert_eq!(recovered.damage, Some((offsets[1], Damage::TornTail)));
        }
        // Cut exactly between frames: nothing is damaged.
        assert_eq!(parse(&full[..offsets[1] as usize]).damage, None);
    }

    #[test]
    fn a_flipped_byte_stops_the_read_at_its_record() {
        let (_dir, path, offsets) = written(&[b"aaaa", b"bbbb", b"cccc"]);
        let mut data = std::fs::read(&path).unwrap();
        data[offsets[1] as usize + FRAME_HEADER + 2] ^= 0x40;
        let recovered = parse(&data);
        assert_eq!(recovered.records, [&b"aaaa"[..]]);
        assert_eq!(recovered.damage, Some((offsets[1], Damage::BadChecksum)));
        // A flipped length byte: an impossible length, or a frame that now runs past the end.
        let mut data = std::fs::read(&path).unwrap();
        data[offsets[2] as usize + 3] ^= 0x80;
        let recovered = parse(&data);
        assert_eq!(recovered.records.len(), 2);
        assert_eq!(recovered.damage.unwrap().0, offsets[2]);
    }

    #[test]
    fn a_zero_filled_tail_is_damage_not_empty_records() {
        let (_dir, path, _) = written(&[b"kept"]);
        let mut data = std::fs::read(&path).unwrap();
        let good = data.len() as u64;
        data.extend_from_slice(&[0u8; 64]);
        let recovered = parse(&data);
        assert_eq!(recovered.records, [&b"kept"[..]]);
        assert_eq!(recovered.damage, Some((good, Damage::BadLength(0))));
    }

    #[test]
    fn a_file_without_the_magic_is_not_a_segment() {
        assert_eq!(parse(b"garbage!").damage, Some((0, Damage::BadMagic)));
        assert_eq!(parse(b"").damage, Some((0, Damage::BadMagic)));
        assert_eq!(parse(MAGIC).records.len(), 0);
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&[0u8; 8]);
        assert_eq!(parse(&data).damage, Some((8, Damage::BadLength(0))));
        assert_eq!(parse(MAGIC).damage, None);
    }
}
