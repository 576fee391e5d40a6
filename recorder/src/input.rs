//! Input files for `flowrec import`: plain, `.gz` or `.zst` files, or `-` for stdin, read as
//! chunks of whole lines so the decoder can work on many lines at once and still name the line
//! of an error.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One input as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputName {
    Stdin,
    File(PathBuf),
    /// stdin saved to a temporary file (read twice by `--strict`); still reported as `<stdin>`.
    Spooled(PathBuf),
}

impl InputName {
    pub fn parse(arg: &str) -> InputName {
        if arg == "-" {
            InputName::Stdin
        } else {
            InputName::File(PathBuf::from(arg))
        }
    }

    /// Size on disk, for the progress bar (unknown for stdin).
    pub fn size(&self) -> Option<u64> {
        match self {
            InputName::Stdin => None,
            InputName::File(path) | InputName::Spooled(path) => {
                std::fs::metadata(path).ok().map(|m| m.len())
            }
        }
    }
}

impl std::fmt::Display for InputName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputName::Stdin | InputName::Spooled(_) => f.write_str("<stdin>"),
            InputName::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{input}: cannot open: {source}")]
    Open {
        input: String,
        #[source]
        source: io::Error,
    },
    #[error("{input}: unreadable after line {line}: {source}")]
    Read {
        input: String,
        line: u64,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Bytes asked of the reader at least per read call.
const READ_STEP: usize = 1 << 20;

/// Compression by magic bytes, so a renamed file still reads.
fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Counts raw (compressed) bytes read, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads an input as chunks of complete lines.
pub struct LineChunks {
    name: InputName,
    reader: Box<dyn Read + Send>,
    /// Bytes of a line not yet terminated by `\n`.
    carry: Vec<u8>,
    next_line: u64,
    chunk_bytes: usize,
    done: bool,
    /// A read error to report once the lines before it have been returned.
    pending_error: Option<io::Error>,
    pool: Arc<BufferPool>,
}

/// A chunk of complete lines and the 1-based number of its first line. Its buffer goes back to
/// the reader's pool when dropped.
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub first_line: u64,
    /// Offsets of the `\n` bytes (found while counting lines; the decoder needs them too).
    pub newlines: Vec<usize>,
    pool: Arc<BufferPool>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.bytes));
    }
}

/// Chunk buffers, reused. A fresh 9 MiB buffer per chunk cost a page fault per 4 KiB, and
/// reading into it through `read_to_end` zeroed it first (perf: 8% of an import's CPU between
/// the two); a reused buffer is mapped and initialised already.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept for reuse: the chunks in flight between reader and decoders, and a few more.
const POOLED_BUFFERS: usize = 16;

impl BufferPool {
    /// A buffer of exactly `size` initialised bytes (contents unspecified).
    fn take(&self, size: usize) -> Vec<u8> {
        let reused = self.free.lock().expect("no panics while held").pop();
        let mut buffer = reused.unwrap_or_default();
        buffer.resize(size, 0);
        buffer
    }

    fn give(&self, mut buffer: Vec<u8>) {
        // Keep its initialised length, so the next `take` zeroes at most the tail it lost.
        buffer.resize(buffer.capacity(), 0);
        let mut free = self.free.lock().expect("no panics while held");
        if free.len() < POOLED_BUFFERS {
            free.push(buffer);
        }
    }
}

impl LineChunks {
    /// Opens `name`; `raw_bytes_read` advances as compressed bytes are consumed.
    pub fn open(
        name: &InputName,
        chunk_bytes: usize,
        raw_bytes_read: Arc<AtomicU64>,
    ) -> Result<LineChunks, InputError> {
        let open_error = |source| InputError::Open {
            input: name.to_string(),
            source,
        };
        let raw: Box<dyn Read + Send> = match name {
            InputName::Stdin => Box::new(io::stdin()),
            InputName::File(path) | InputName::Spooled(path) => {
                Box::new(open_file(path).map_err(open_error)?)
            }
        };
        let mut buffered = BufReader::with_capacity(
            1 << 20,
            Counting {
                inner: raw,
                read: raw_bytes_read,
            },
        );
        let head = buffered.fill_buf().map_err(open_error)?;
        let reader: Box<dyn Read + Send> = match sniff(head) {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(open_error)?)
            }
        };
        Ok(LineChunks {
            name: name.clone(),
            reader,
            carry: Vec::new(),
            next_line: 1,
            chunk_bytes,
            done: false,
            pending_error: None,
            pool: Arc::default(),
        })
    }

    /// The next chunk; `Ok(None)` at the end. A read error (a truncated `.gz`, a disk error) ends
    /// the input: the complete lines before it come first, then the error, naming the last good
    /// line. The torn line at the point of the error is not imported.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, InputError> {
        if let Some(source) = self.pending_error.take() {
            return Err(InputError::Read {
                input: self.name.to_string(),
                line: self.next_line - 1,
                source,
            });
        }
        if self.done {
            return Ok(None);
        }
        // Read straight into the chunk (no intermediate buffer copy); only the unterminated
        // last line is copied, into the next chunk.
        let mut bytes = self.pool.take(self.chunk_bytes + READ_STEP);
        let mut filled = self.carry.len();
        bytes[..filled].copy_from_slice(&self.carry);
        self.carry.clear();
        loop {
            if filled >= self.chunk_bytes {
                if let Some(last_newline) = memchr::memrchr(b'\n', &bytes[..filled]) {
                    self.carry
                        .extend_from_slice(&bytes[last_newline + 1..filled]);
                    filled = last_newline + 1;
                    break;
                }
                // One line longer than a chunk: keep reading until it ends.
            }
            if bytes.len() - filled < READ_STEP {
                bytes.resize(filled + READ_STEP, 0);
            }
            match self.reader.read(&mut bytes[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    // Keep the complete lines read before the error.
                    self.done = true;
                    self.pending_error = Some(source);
                    filled = memchr::memrchr(b'\n', &bytes[..filled]).map_or(0, |i| i + 1);
                    break;
                }
            }
        }
        bytes.truncate(filled);
        if bytes.is_empty() {
            return self.next_chunk();
        }
        let newlines = flow_schema::hubble::newlines(&bytes);
        let lines = newlines.len() as u64 + u64::from(!bytes.ends_with(b"\n"));
        let chunk = Chunk {
            bytes,
            first_line: self.next_line,
            newlines,
            pool: Arc::clone(&self.pool),
        };
        self.next_line += lines;
        Ok(Some(chunk))
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    Ok(file)
}
