//! Following a file that a log rotator renames away: the reading side of
//! `flowrec run --source file --follow PATH`.
//!
//! Cilium's Hubble exporter writes `PATH` (e.g. `/var/run/cilium/hubble/events.log`) through
//! lumberjack: when the file is full it is closed, **renamed** to a backup
//! `{stem}-{timestamp}{ext}` in the same folder (e.g. `events-2026-11-26T09-15-00.000.log`;
//! the timestamps sort in time order), optionally **gzipped** to `….log.gz` (the plain backup is
//! removed once the `.gz` is complete), and a new `PATH` is created.
//!
//! A [`Position`] names the file being read by its device and inode, and by a CRC of its first
//! bytes (the *head*): an inode number comes back once a gzipped backup's original is deleted,
//! the head does not, and a gzipped backup is recognised by its decompressed head. Resuming
//! from a position ([`Tail::resume`]) or moving on after a rotation both locate the position's
//! file (`PATH` itself, or a backup), finish it from the position's offset, then read every
//! newer backup and finally `PATH` from their start: nothing skipped, nothing read twice.
//!
//! Only whole lines are handed out: a line still being written stays in the file until its
//! newline arrives (or, in a rotated file, until it is known to be the last).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Bytes of a file's beginning that identify it.
const HEAD: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("--follow {path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("--follow: the recorded position {0:?} is not one this flowrec wrote")]
    BadPosition(String),
    #[error("--follow {path}: the folder {folder} does not exist (check the path; in a pod, mount the folder the file is written to)")]
    NoFolder { path: String, folder: String },
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> TailError + 'a {
    move |source| TailError::Io {
        path: path.display().to_string(),
        action,
        source,
    }
}

/// Where reading stands: which file, and how far into its (uncompressed) content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    /// Bytes of whole lines consumed.
    pub offset: u64,
    /// Lines consumed (for `file:line` messages).
    pub line: u64,
    /// The file's first `head_len` bytes (at most [`HEAD`]) have this CRC-32.
    pub head_len: u32,
    pub head_crc: u32,
}

const POSITION_VERSION: &str = "follow1";

impl Position {
    /// A line of text (the spool stores it opaquely; it shows up readable in a hex dump).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{POSITION_VERSION} {} {} {} {} {} {}",
            self.dev, self.ino, self.offset, self.line, self.head_len, self.head_crc
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Position, TailError> {
        let text = String::from_utf8_lossy(bytes);
        let bad = || TailError::BadPosition(text.to_string());
        let mut fields = text.split(' ');
        if fields.next() != Some(POSITION_VERSION) {
            return Err(bad());
        }
        let numbers: Vec<u64> = fields
            .map(|field| field.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [dev, ino, offset, line, head_len, head_crc] = numbers[..] else {
            return Err(bad());
        };
        if head_len > HEAD as u64 {
            return Err(bad());
        }
        Ok(Position {
            dev,
            ino,
            offset,
            line,
            head_len: head_len as u32,
            head_crc: u32::try_from(head_crc).map_err(|_| bad())?,
        })
    }
}

/// Whole lines read from one file.
#[derive(Debug)]
pub struct Lines {
    pub bytes: Vec<u8>,
    /// The file they were read from (for messages).
    pub file: PathBuf,
    /// 1-based number of their first line in that file.
    pub first_line: u64,
    /// Where reading stands after them.
    pub position: Position,
}

/// The file being read.
struct Reading {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    /// Set for a plain file: its size tells a truncation (copytruncate) apart.
    plain: Option<File>,
    dev: u64,
    ino: u64,
    offset: u64,
    line: u64,
    /// Read past `offset`: the start of a line whose newline has not arrived.
    partial: Vec<u8>,
    /// The first bytes of the file, as far as known (up to [`HEAD`]).
    head: Vec<u8>,
    /// Fixed when resuming from a position (its head is the file's identity); else grows with
    /// `head`.
    head_fixed: Option<(u32, u32)>,
    /// A gzip that cannot be read to its end: its last partial line is cut, not a line.
    damaged: bool,
}

impl Reading {
    fn position(&self) -> Position {
        let (head_len, head_crc) = self
            .head_fixed
            .unwrap_or_else(|| (self.head.len() as u32, crc32fast::hash(&self.head)));
        Position {
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            line: self.line,
            head_len,
            head_crc,
        }
    }
}

/// Follows `PATH` across rotations.
pub struct Tail {
    path: PathBuf,
    reading: Option<Reading>,
    /// The file read to its end last, when it was rotated away: what comes next is the backup
    /// after it, else `PATH`. Found again by identity every time, since names move on.
    after: Option<Position>,
}

/// What became of the file being read.
enum Fate {
    /// Still `PATH`: more may come.
    Current,
    /// Renamed away: it is complete.
    Rotated,
    /// Cut below what was read (copytruncate): `PATH` is read again from its start.
    Truncated,
}

impl Tail {
    /// Starts reading `path` from `resume` (a position recorded earlier), or from the start of
    /// `path` when there is none. `path` need not exist yet.
    pub fn resume(path: &Path, resume: Option<Position>) -> Result<Tail, TailError> {
        let mut tail = Tail {
            path: path.to_path_buf(),
            reading: None,
            after: None,
        };
        match resume {
            Some(position) => tail.locate(&position)?,
            // Opened now: a rotation before the first read must not hide it.
            None => {
                tail.open_next()?;
            }
        }
        Ok(tail)
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to about `max` bytes of whole lines, from one file; None when there is nothing new.
    pub fn read(&mut self, max: usize) -> Result<Option<Lines>, TailError> {
        loop {
            if self.reading.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let reading = self.reading.as_mut().expect("opened above");
            if let Some(lines) = read_lines(reading, max)? {
                return Ok(Some(lines));
            }
            match self.fate()? {
                Fate::Current => return Ok(None),
                Fate::Truncated => {
                    self.reading = None;
                    self.after = None;
                    continue;
                }
                Fate::Rotated => {}
            }
            // lumberjack writes nothing to a file after renaming it: one more read catches
            // what was written since the last, and then the file is done.
            let reading = self.reading.as_mut().expect("opened above");
            if let Some(lines) = read_lines(reading, max)? {
                return Ok(Some(lines));
            }
            if let Some(lines) = finish(reading) {
                return Ok(Some(lines));
            }
            self.after = Some(reading.position());
            self.reading = None;
        }
    }

    fn fate(&self) -> Result<Fate, TailError> {
        let reading = self.reading.as_ref().expect("called while reading");
        // A gzipped file is a backup. (Its inode number is its own: once the plain original
        // is deleted, `PATH` may well get that one.)
        if reading.plain.is_none() {
            return Ok(Fate::Rotated);
        }
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            // Between lumberjack's rename and its create.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Fate::Rotated),
            Err(error) => return Err(io_error(&self.path, "stat")(error)),
        };
        if (metadata.dev(), metadata.ino()) != (reading.dev, reading.ino) {
            return Ok(Fate::Rotated);
        }
        let read_so_far = reading.offset + reading.partial.len() as u64;
        if reading.plain.is_some() && metadata.len() < read_so_far {
            crate::warn!(
                "--follow {}: the file shrank to {} bytes, below the {read_so_far} \
                 read (truncated in place): reading it again from its start",
                self.path.display(),
                metadata.len()
            );
            return Ok(Fate::Truncated);
        }
        Ok(Fate::Current)
    }

    /// Opens the file that comes next; false if it does not exist (yet).
    fn open_next(&mut self) -> Result<bool, TailError> {
        let Some(after) = self.after.clone() else {
            return self.open_path();
        };
        match self.successor(&after)? {
            Next::Backup(backup) => Ok(self.open_backup(&backup)),
            Next::Path => {
                if !self.open_path()? {
                    return Ok(false);
                }
                // PATH may have been rotated between the listing and the open: then a backup
                // newer than `after` exists now, and it comes first.
                if let Next::Backup(backup) = self.successor(&after)? {
                    self.reading = None;
                    return Ok(self.open_backup(&backup));
                }
                Ok(true)
            }
            Next::Unknown => {
                crate::warn!(
                    "--follow {}: the rotated file read last (inode {}) is gone, so which \
                     rotated files are newer is unknown: going on with {}; rotated files \
                     between the two, if any, are not read",
                    self.path.display(),
                    after.ino,
                    self.path.display()
                );
                self.after = None;
                self.open_path()
            }
        }
    }

    fn open_path(&mut self) -> Result<bool, TailError> {
        match open_from_start(&self.path) {
            Ok(reading) => {
                self.reading = Some(reading);
                Ok(true)
            }
            // Not created yet (between lumberjack's rename and create, or before Cilium).
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(io_error(&self.path, "open")(error)),
        }
    }

    /// Opens a backup, plain or (once compressed) gzipped; false if it is gone for now (it is
    /// looked for again at the next read).
    fn open_backup(&mut self, backup: &Backup) -> bool {
        for candidate in backup.candidates() {
            match open_from_start(candidate) {
                Ok(reading) => {
                    self.reading = Some(reading);
                    return true;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => crate::warn!(
                    "--follow {}: cannot open rotated file {}: {error}",
                    self.path.display(),
                    candidate.display()
                ),
            }
        }
        false
    }

    /// What comes after `position`'s file: the next backup (oldest first), or `PATH`.
    fn successor(&self, position: &Position) -> Result<Next, TailError> {
        let backups = backups(&self.path).map_err(io_error(&self.path, "list the backups of"))?;
        for (index, backup) in backups.iter().enumerate() {
            for candidate in backup.candidates() {
                if identify(candidate, position)?.is_some() {
                    return Ok(match backups.get(index + 1) {
                        Some(next) => Next::Backup(next.clone()),
                        None => Next::Path,
                    });
                }
            }
        }
        Ok(Next::Unknown)
    }

    /// Finds `position`'s file (`PATH` or a backup, plain or gzipped) and reads on from the
    /// position's offset.
    fn locate(&mut self, position: &Position) -> Result<(), TailError> {
        if let Some(reading) = open_at(&self.path, position)? {
            self.reading = Some(reading);
            return Ok(());
        }
        let backups = backups(&self.path).map_err(io_error(&self.path, "list the backups of"))?;
        for backup in &backups {
            // Plain first: while it exists its .gz may be incomplete; once it is gone the .gz
            // is complete.
            for candidate in backup.candidates() {
                if let Some(reading) = open_at(candidate, position)? {
                    crate::info!(
                        "--follow {}: resuming in rotated file {} at line {}",
                        self.path.display(),
                        candidate.display(),
                        position.line + 1
                    );
                    self.reading = Some(reading);
                    return Ok(());
                }
            }
        }
        crate::warn!(
            "--follow {}: the file read last (inode {}, {} lines read) is neither this \
             path nor one of its rotated files any more (deleted by the rotation?): lines it got \
             after that, and rotated files deleted since, are not recorded; reading {} from its \
             start",
            self.path.display(),
            position.ino,
            position.line,
            self.path.display()
        );
        self.open_path()?;
        Ok(())
    }
}

/// What follows a finished file.
enum Next {
    Backup(Backup),
    Path,
    /// The finished file is not among the backups any more.
    Unknown,
}

/// A file known to be complete: a last line without its newline is handed out as a line
/// (unless the file is damaged there).
fn finish(reading: &mut Reading) -> Option<Lines> {
    if reading.partial.is_empty() || reading.damaged {
        return None;
    }
    let mut bytes = std::mem::take(&mut reading.partial);
    let first_line = reading.line + 1;
    reading.offset += bytes.len() as u64;
    reading.line += 1;
    bytes.push(b'\n');
    Some(Lines {
        bytes,
        file: reading.path.clone(),
        first_line,
        position: reading.position(),
    })
}

/// Reads what is new in `reading`; the whole lines among it, if any. Reads on past `max`
/// until a line is whole (a line longer than `max` is handed out whole).
fn read_lines(reading: &mut Reading, max: usize) -> Result<Option<Lines>, TailError> {
    let mut buffer = std::mem::take(&mut reading.partial);
    let start = buffer.len();
    let mut want = max.max(start + 64 * 1024);
    let mut filled = start;
    let mut newline = None;
    let mut failed = None;
    loop {
        buffer.resize(want, 0);
        let before = filled;
        let mut end_of_file = false;
        while filled < want {
            match reading.reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    end_of_file = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A damaged gzip (cut by a crash of the node while compressing): what it held
                // up to the damage is read, the rest cannot be.
                Err(error) if reading.plain.is_none() => {
                    crate::warn!(
                        "--follow: rotated file {} is damaged after {} bytes ({error}): the \
                         rest of it is not recorded",
                        reading.path.display(),
                        reading.offset as usize + filled
                    );
                    reading.reader = Box::new(io::empty());
                    reading.damaged = true;
                    end_of_file = true;
                    break;
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        newline = buffer[before..filled]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|at| before + at)
            .or(newline);
        if end_of_file || newline.is_some() || failed.is_some() {
            break;
        }
        want *= 2;
    }
    buffer.truncate(filled);
    // The head grows with what is read from the start of the file.
    if reading.head_fixed.is_none() && reading.head.len() < HEAD {
        let known = reading.offset as usize + start;
        if known == reading.head.len() {
            let more = (HEAD - known).min(filled - start);
            reading.head.extend_from_slice(&buffer[start..start + more]);
        }
    }
    if let Some(error) = failed {
        reading.partial = buffer;
        return Err(io_error(&reading.path, "read")(error));
    }
    let Some(last_newline) = newline else {
        reading.partial = buffer;
        return Ok(None);
    };
    reading.partial = buffer.split_off(last_newline + 1);
    let first_line = reading.line + 1;
    reading.line += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
    reading.offset += buffer.len() as u64;
    Ok(Some(Lines {
        bytes: buffer,
        file: reading.path.clone(),
        first_line,
        position: reading.position(),
    }))
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

fn open_from_start(path: &Path) -> io::Result<Reading> {
    let file = File::open(path)?;
    reading_from(path, file, 0)
}

/// A reading of `file` (plain or gzip, by `path`'s name) positioned at `offset` of its
/// content.
fn reading_from(path: &Path, mut file: File, offset: u64) -> io::Result<Reading> {
    let metadata = file.metadata()?;
    file.seek(SeekFrom::Start(0))?;
    let (reader, plain): (Box<dyn Read + Send>, Option<File>) = if is_gz(path) {
        let mut decoder = MultiGzDecoder::new(file);
        let skipped = io::copy(&mut (&mut decoder).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{skipped} bytes once decompressed, fewer than the {offset} read"),
            ));
        }
        (Box::new(decoder), None)
    } else {
        file.seek(SeekFrom::Start(offset))?;
        let reader = file.try_clone()?;
        (Box::new(reader), Some(file))
    };
    Ok(Reading {
        path: path.to_path_buf(),
        reader,
        plain,
        dev: metadata.dev(),
        ino: metadata.ino(),
        offset,
        line: 0,
        partial: Vec::new(),
        head: Vec::with_capacity(if offset == 0 { HEAD } else { 0 }),
        head_fixed: None,
        damaged: false,
    })
}

/// `path` opened, if it is `position`'s file: the same inode (a gzipped backup has its own)
/// and the same head. Checked on the opened file, so a rename between a check and an open
/// cannot swap files.
fn identify(path: &Path, position: &Position) -> Result<Option<File>, TailError> {
    if position.head_len == 0 {
        return Ok(None);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path, "open")(error)),
    };
    let metadata = file.metadata().map_err(io_error(path, "stat"))?;
    if !is_gz(path) && (metadata.dev(), metadata.ino()) != (position.dev, position.ino) {
        return Ok(None);
    }
    let len = position.head_len as usize;
    let mut head = Vec::with_capacity(len);
    let read = if is_gz(path) {
        MultiGzDecoder::new(&file)
            .take(len as u64)
            .read_to_end(&mut head)
    } else {
        (&file).take(len as u64).read_to_end(&mut head)
    };
    match read {
        Ok(_) => {}
        // A gzip still being written (or damaged) is not the file looked for.
        Err(_) if is_gz(path) => return Ok(None),
        Err(error) => return Err(io_error(path, "read")(error)),
    }
    let same = head.len() == len && crc32fast::hash(&head) == position.head_crc;
    Ok(same.then_some(file))
}

/// `path` opened at `position`'s offset if it is `position`'s file. A gzipped file shorter
/// than the offset (damaged) is reported and counts as read to its end.
fn open_at(path: &Path, position: &Position) -> Result<Option<Reading>, TailError> {
    let Some(file) = identify(path, position)? else {
        return Ok(None);
    };
    let mut reading = match reading_from(path, file, position.offset) {
        Ok(reading) => reading,
        Err(error) if is_gz(path) => {
            crate::warn!(
                "--follow: rotated file {} cannot be read up to the recorded position \
                 ({error}): nothing more of it is recorded",
                path.display()
            );
            let file = File::open(path).map_err(io_error(path, "open"))?;
            let mut reading = reading_from(path, file, 0).map_err(io_error(path, "read"))?;
            reading.reader = Box::new(io::empty());
            reading.offset = position.offset;
            reading
        }
        Err(error) => return Err(io_error(path, "open")(error)),
    };
    reading.line = position.line;
    reading.head_fixed = Some((position.head_len, position.head_crc));
    Ok(Some(reading))
}

/// A rotated backup, by the names it has while plain (lumberjack renamed it) and once
/// gzipped; either may be missing.
#[derive(Debug, Clone)]
struct Backup {
    plain: PathBuf,
    gz: PathBuf,
}

impl Backup {
    /// Plain first: while it exists its .gz may be incomplete.
    fn candidates(&self) -> [&Path; 2] {
        [&self.plain, &self.gz]
    }
}

/// Whether `name` is a lumberjack backup of `{stem}{ext}`:
/// `{stem}-YYYY-MM-DDTHH-MM-SS.mmm{ext}` (other files in the folder, such as another
/// exporter's `{stem}-drops.log`, are not).
fn is_backup_name(name: &str, stem: &str, ext: &str) -> bool {
    let Some(time) = name
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(ext))
    else {
        return false;
    };
    const SHAPE: &[u8] = b"0000-00-00T00-00-00.000";
    time.len() == SHAPE.len()
        && time.bytes().zip(SHAPE).all(|(c, &shape)| {
            if shape == b'0' {
                c.is_ascii_digit()
            } else {
                c == shape
            }
        })
}

/// Rotated backups of `path` in its folder, oldest first (lumberjack's timestamps sort in
/// time order); none if the folder does not exist (yet).
fn backups(path: &Path) -> io::Result<Vec<Backup>> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name.as_str(), ""),
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut bases = std::collections::BTreeSet::new();
    for entry in entries {
        let entry_name = entry?.file_name().to_string_lossy().into_owned();
        let base = entry_name.strip_suffix(".gz").unwrap_or(&entry_name);
        if is_backup_name(base, stem, ext) {
            bases.insert(base.to_string());
        }
    }
    Ok(bases
        .into_iter()
        .map(|base| Backup {
            plain: folder.join(&base),
            gz: folder.join(format!("{base}.gz")),
        })
        .collect())
}

#[cfg(test)]
mod tests;
