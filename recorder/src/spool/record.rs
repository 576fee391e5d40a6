//! What a spool record holds: rows, and for a source that reads from a position (a followed
//! file) the position after them.
//!
//! Two encodings behind a one-byte tag:
//! - a table tag: rows of one table (flows / lost events) as one entry;
//! - `2`, a *transaction*: `[u32 LE checkpoint length][checkpoint]` then, per table,
//!   `[table tag][u32 LE length][entry]`. The checkpoint is the source's position
//!   after these rows; being in the same CRC frame, rows and position are recorded together or
//!   not at all, which is what lets a restarted source neither skip nor repeat.
//!
//! An entry is a table's rows. Table tags `0` / `1` (flows / lost events) hold them as written
//! until 2026-12: one Arrow IPC stream (schema + one batch), each buffer an LZ4 frame of its
//! own; still read. Tags `0x80` / `0x81`, written now, hold blocks of up to [`BLOCK_ROWS`]
//! rows, each `[u32 LE IPC length][summary][u32 LE block length][block]`: an IPC stream,
//! uncompressed inside, as one LZ4 block, after the [`Summary`] a merge plans with (`[u32 LE
//! hours]`, per hour `[i64 LE hour start][u32 LE rows]`, then if any `[i64 LE first time]`),
//! so planning decompresses nothing. A block leaves out the nullable columns that are NULL in all
//! its rows (`without_null_columns`); [`decode`] and [`decode_batch`] give rows of this
//! version's schema whatever a block or an older recorder stored. A record's few hundred buffers are mostly small (a column of 1024
//! rows), and a frame each cost more than the bytes in them: the frame decoder alone was 6% of
//! a live Hubble recording's CPU (perf, `make bench-hubble`). Each block is one batch of the
//! decoded record, in order.
//!
//! Self-describing (the IPC stream carries its schema), so a segment written by an older
//! recorder still decodes; the schema costs a few KiB per record, and a record is a whole
//! drain or chunk.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow_ipc::reader::{StreamDecoder, StreamReader};
use arrow_ipc::writer::StreamWriter;
use flow_schema::layout::hour_start;
use flow_schema::schema::{conform, ConformError};
use flow_schema::Table;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("unknown table tag {0}")]
    UnknownTable(u8),
    #[error("empty record")]
    Empty,
    #[error("Arrow IPC: {0}")]
    Ipc(#[from] arrow::error::ArrowError),
    #[error("the record holds no batch")]
    NoBatch,
    #[error("the record ends inside a length-prefixed field")]
    Truncated,
    #[error("damaged Arrow IPC stream: {0}")]
    Damaged(String),
    #[error("{0} bytes of rows in one record entry (at most 4 GiB)")]
    TooLarge(usize),
    #[error("LZ4 compression failed: {0}")]
    Compress(String),
    #[error("rows that do not fit this version's schema: {0}")]
    Schema(#[from] ConformError),
}

const TRANSACTION: u8 = 2;

/// A decoded record.
#[derive(Debug)]
pub struct Record {
    pub batches: Vec<(Table, RecordBatch)>,
    /// The source's position after these rows (opaque to the spool).
    pub checkpoint: Option<Vec<u8>>,
}

/// The tag bit of an entry stored as LZ4 blocks (see the module doc).
const BLOCKS: u8 = 0x80;

fn tag(table: Table) -> u8 {
    BLOCKS
        | match table {
            Table::Flows => 0,
            Table::LostEvents => 1,
        }
}

/// How an entry's IPC stream is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Each buffer an LZ4 frame (tags 0 / 1).
    FramePerBuffer,
    /// Blocks of up to [`BLOCK_ROWS`] rows, each an IPC stream as one LZ4 block (tags 0x80 /
    /// 0x81).
    Blocks,
}

fn table(tag: u8) -> Result<(Table, Stored), RecordError> {
    let stored = if tag & BLOCKS != 0 {
        Stored::Blocks
    } else {
        Stored::FramePerBuffer
    };
    match tag & !BLOCKS {
        0 => Ok((Table::Flows, stored)),
        1 => Ok((Table::LostEvents, stored)),
        _ => Err(RecordError::UnknownTable(tag)),
    }
}

/// Rows per block. A whole drain of a full eBPF map (65,536 flows) as one block needed its IPC
/// stream whole in memory twice over (the scratch, then the reader's copy): 321 MiB peak
/// instead of 200 (`make bench-ebpf-memory`).
const BLOCK_ROWS: usize = 8192;

/// LZ4-compressed: a flow row is about as large as its JSON line uncompressed (some hundred
/// columns, most null), a few times smaller compressed; LZ4 costs little CPU, and a smaller
/// spool holds a longer store outage within `--spool-max-bytes`.
fn write_entry(bytes: &mut Vec<u8>, batch: &RecordBatch) -> Result<(), RecordError> {
    let mut offset = 0;
    loop {
        let rows = (batch.num_rows() - offset).min(BLOCK_ROWS);
        write_block(bytes, &without_null_columns(&batch.slice(offset, rows)))?;
        offset += rows;
        if offset == batch.num_rows() {
            return Ok(());
        }
    }
}

/// `batch` without its nullable columns that are NULL in every row. Most of a flow's hundred
/// columns are, in most blocks (L7, Kafka, tunnel, trace fields; Hubble's for an eBPF flow),
/// and their offsets and validity, all zeros, were much of what LZ4 compressed and then copied
/// back byte by byte (`hubble-stages`: spool write 0.96 -> 0.80, read 1.22 -> 0.77 CPU-s per 1M
/// flows). A block names its columns (its IPC schema); the merge gives every block this
/// version's schema (`schema::conform`), which puts the missing ones back as NULL.
fn without_null_columns(batch: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            !(schema.field(i).is_nullable() && batch.column(i).null_count() == batch.num_rows())
        })
        .collect();
    if keep.len() == batch.num_columns() {
        return batch.clone();
    }
    batch
        .project(&keep)
        .expect("indices of the batch's own columns")
}

fn write_block(bytes: &mut Vec<u8>, batch: &RecordBatch) -> Result<(), RecordError> {
    with_scratch(|ipc| {
        let mut writer = StreamWriter::try_new(&mut *ipc, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        push_block(bytes, ipc, Summary::of(times(batch)))
    })
}

/// Appends an IPC stream as one block: its length, `summary`, then the LZ4 block.
fn push_block(bytes: &mut Vec<u8>, ipc: &[u8], summary: Summary) -> Result<(), RecordError> {
    let length = u32::try_from(ipc.len()).map_err(|_| RecordError::TooLarge(ipc.len()))?;
    bytes.extend_from_slice(&length.to_le_bytes());
    summary.write(bytes);
    let length_at = bytes.len();
    bytes.extend_from_slice(&[0; 4]);
    let start = bytes.len();
    bytes.resize(
        start + lz4_flex::block::get_maximum_output_size(ipc.len()),
        0,
    );
    let compressed = lz4_flex::block::compress_into(ipc, &mut bytes[start..])
        .map_err(|e| RecordError::Compress(e.to_string()))?;
    bytes.truncate(start + compressed);
    let compressed = u32::try_from(compressed).map_err(|_| RecordError::TooLarge(compressed))?;
    bytes[length_at..start].copy_from_slice(&compressed.to_le_bytes());
    Ok(())
}

thread_local! {
    /// An entry's IPC stream before compression, reused: recording would otherwise allocate
    /// and free a record's size for every record, and freed memory is kept a while
    /// (`main::purge_delay`), so the churn showed in the peak RSS.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer larger than this (a record of a full eBPF map) is not kept after use.
const SCRATCH_KEPT: usize = 8 << 20;

/// Runs `work` with this thread's empty scratch buffer.
fn with_scratch<T>(work: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        let result = work(scratch);
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        result
    })
}

/// One batch of a record, as stored.
#[derive(Debug, Clone)]
enum Part<'a> {
    /// An Arrow IPC stream with LZ4-framed buffers (an older recorder's entry).
    Frames(&'a [u8]),
    /// An Arrow IPC stream of `length` bytes as one LZ4 block.
    Block {
        length: u32,
        summary: Summary,
        block: &'a [u8],
    },
}

/// What planning a merge needs of a batch: its rows per UTC hour and its earliest time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// (hour start in ns, rows), by hour.
    pub rows_per_hour: Vec<(i64, u32)>,
    /// The earliest time; `None` for a batch without rows.
    pub first: Option<i64>,
}

impl Summary {
    fn of(times: &[i64]) -> Summary {
        let mut hours = std::collections::BTreeMap::<i64, u32>::new();
        for &t in times {
            *hours.entry(hour_start(t)).or_default() += 1;
        }
        Summary {
            rows_per_hour: hours.into_iter().collect(),
            first: times.iter().copied().min(),
        }
    }

    fn write(&self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(&(self.rows_per_hour.len() as u32).to_le_bytes());
        for (hour, rows) in &self.rows_per_hour {
            bytes.extend_from_slice(&hour.to_le_bytes());
            bytes.extend_from_slice(&rows.to_le_bytes());
        }
        if let Some(first) = self.first {
            bytes.extend_from_slice(&first.to_le_bytes());
        }
    }

    /// Reads a summary off the front of `bytes`.
    fn read(bytes: &[u8]) -> Result<(Summary, &[u8]), RecordError> {
        let (hours, mut rest) = take::<4>(bytes)?;
        let hours = u32::from_le_bytes(hours) as usize;
        // Each hour takes 12 bytes: a count beyond what is left is damage, not an allocation.
        if hours > rest.len() / 12 {
            return Err(RecordError::Truncated);
        }
        let mut summary = Summary::default();
        for _ in 0..hours {
            let (hour, tail) = take::<8>(rest)?;
            let (rows, tail) = take::<4>(tail)?;
            summary
                .rows_per_hour
                .push((i64::from_le_bytes(hour), u32::from_le_bytes(rows)));
            rest = tail;
        }
        if hours > 0 {
            let (first, tail) = take::<8>(rest)?;
            summary.first = Some(i64::from_le_bytes(first));
            rest = tail;
        }
        Ok((summary, rest))
    }
}

/// Splits `N` bytes off the front of `bytes`.
fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), RecordError> {
    bytes
        .split_first_chunk::<N>()
        .map(|(head, rest)| (*head, rest))
        .ok_or(RecordError::Truncated)
}

/// The time column of rows of any table and schema version (column 0).
pub(super) fn times(batch: &RecordBatch) -> &arrow::buffer::ScalarBuffer<i64> {
    use arrow::array::AsArray;
    batch
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
        .values()
}

/// The parts of an entry stored as `stored`.
fn parts_of(entry: &[u8], stored: Stored) -> Result<Vec<Part<'_>>, RecordError> {
    if stored == Stored::FramePerBuffer {
        return Ok(vec![Part::Frames(entry)]);
    }
    let mut parts = Vec::new();
    let mut rest = entry;
    while !rest.is_empty() {
        let (length, tail) = take::<4>(rest)?;
        let (summary, tail) = Summary::read(tail)?;
        let (block, tail) = length_prefixed(tail)?;
        parts.push(Part::Block {
            length: u32::from_le_bytes(length),
            summary,
            block,
        });
        rest = tail;
    }
    if parts.is_empty() {
        return Err(RecordError::NoBatch);
    }
    Ok(parts)
}

/// The rows of a part.
fn read_part(part: Part) -> Result<RecordBatch, RecordError> {
    match part {
        Part::Frames(ipc) => read_ipc(ipc, None),
        Part::Block { length, block, .. } => {
            if u64::from(length) > (block.len() as u64 + 64).saturating_mul(MAX_LZ4_RATIO) {
                return Err(RecordError::Damaged(format!(
                    "a block of {} bytes declares {length} bytes decompressed",
                    block.len()
                )));
            }
            // Into a buffer of its own, not zeroed first (LZ4 writes every byte or fails),
            // that the batch's columns then point into: zeroing a scratch buffer, and the IPC
            // reader copying each message out of it, were 2-3% of a live recorder's CPU.
            let ipc = lz4_flex::block::decompress(block, length as usize)
                .map_err(|e| RecordError::Damaged(format!("LZ4: {e}")))?;
            if ipc.len() != length as usize {
                return Err(damaged("the LZ4 block is shorter than it declares"));
            }
            read_ipc_in_place(Buffer::from_vec(ipc))
        }
    }
}

/// [`read_ipc`] of every column, the batch's columns pointing into `ipc`.
fn read_ipc_in_place(mut ipc: Buffer) -> Result<RecordBatch, RecordError> {
    check_declared_sizes(&ipc)?;
    // The decoder returns nothing only once it has used up the stream.
    let read = || {
        StreamDecoder::new()
            .decode(&mut ipc)?
            .ok_or(RecordError::NoBatch)
    };
    flow_schema::guard::quietly(read)
        .unwrap_or_else(|| Err(damaged("the Arrow IPC reader failed on it")))
}

/// The IPC reader trusts what it reads (it unwraps absent schema fields, allocates declared
/// sizes): it runs on checked sizes and under `guard::quietly`, so damage is an error.
fn read_ipc(ipc: &[u8], projection: Option<Vec<usize>>) -> Result<RecordBatch, RecordError> {
    check_declared_sizes(ipc)?;
    let read = || {
        let mut reader = StreamReader::try_new(ipc, projection)?;
        reader
            .next()
            .ok_or(RecordError::NoBatch)?
            .map_err(RecordError::from)
    };
    flow_schema::guard::quietly(read)
        .unwrap_or_else(|| Err(damaged("the Arrow IPC reader failed on it")))
}

fn damaged(what: &str) -> RecordError {
    RecordError::Damaged(what.to_string())
}

/// LZ4 expands at most ~255x (a block of one repeated byte); a compressed buffer that says
/// it decompresses to more is damaged.
const MAX_LZ4_RATIO: u64 = 255;

/// Refuses a stream whose compressed buffers declare impossible decompressed sizes. The IPC
/// reader allocates what a buffer declares before decompressing it, so a damaged size would
/// abort the process on an allocation of terabytes instead of failing the record (found by
/// the `spool_record` fuzz target). A record is CRC-checked first; this is for one that was
/// damaged before its CRC was computed, or crafted.
fn check_declared_sizes(mut ipc: &[u8]) -> Result<(), RecordError> {
    while !ipc.is_empty() {
        // [0xFFFFFFFF][i32 LE metadata length][metadata (flatbuffer)][body]; length 0 ends it.
        let rest = match ipc.split_first_chunk::<4>() {
            Some((&[0xFF, 0xFF, 0xFF, 0xFF], rest)) => rest,
            _ => ipc,
        };
        let (length, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(RecordError::Truncated)?;
        let length = i32::from_le_bytes(*length);
        if length == 0 {
            return Ok(());
        }
        let length = usize::try_from(length).map_err(|_| damaged("negative metadata length"))?;
        let metadata = rest.get(..length).ok_or(RecordError::Truncated)?;
        let message = arrow_ipc::root_as_message(metadata)
            .map_err(|e| RecordError::Damaged(format!("message metadata: {e}")))?;
        let body_length =
            usize::try_from(message.bodyLength()).map_err(|_| damaged("negative body length"))?;
        let body = rest
            .get(length..)
            .and_then(|r| r.get(..body_length))
            .ok_or(RecordError::Truncated)?;
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(batch) = batch.filter(|b| b.compression().is_some()) {
            for buffer in batch.buffers().into_iter().flatten() {
                let range = usize::try_from(buffer.offset())
                    .ok()
                    .zip(usize::try_from(buffer.length()).ok())
                    .and_then(|(offset, length)| body.get(offset..offset.checked_add(length)?))
                    .ok_or_else(|| damaged("a buffer outside the message body"))?;
                // Each compressed buffer starts with its decompressed length (i64 LE; -1:
                // stored uncompressed).
                if let Some((declared, compressed)) = range.split_first_chunk::<8>() {
                    let declared = i64::from_le_bytes(*declared);
                    let limit = (compressed.len() as u64 + 64).saturating_mul(MAX_LZ4_RATIO);
                    if declared > 0 && declared as u64 > limit {
                        return Err(RecordError::Damaged(format!(
                            "a buffer of {} bytes declares {declared} bytes decompressed",
                            compressed.len()
                        )));
                    }
                }
            }
        }
        ipc = &rest[length + body_length..];
    }
    Ok(())
}

/// Rows of one table.
pub fn encode(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, RecordError> {
    let mut bytes = vec![tag(table)];
    write_entry(&mut bytes, batch)?;
    Ok(bytes)
}

/// Rows of any tables (empty batches are left out) with the position after them.
pub fn encode_transaction(
    batches: &[(Table, RecordBatch)],
    checkpoint: &[u8],
) -> Result<Vec<u8>, RecordError> {
    let mut bytes = vec![TRANSACTION];
    bytes.extend_from_slice(&(checkpoint.len() as u32).to_le_bytes());
    bytes.extend_from_slice(checkpoint);
    for (table, batch) in batches.iter().filter(|(_, batch)| batch.num_rows() > 0) {
        bytes.push(tag(*table));
        let length_at = bytes.len();
        bytes.extend_from_slice(&[0; 4]);
        write_entry(&mut bytes, batch)?;
        let length = (bytes.len() - length_at - 4) as u32;
        bytes[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }
    Ok(bytes)
}

/// Splits `[u32 LE length][field]` off the front of `bytes`.
fn length_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let (length, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(RecordError::Truncated)?;
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() < length {
        return Err(RecordError::Truncated);
    }
    Ok(rest.split_at(length))
}

pub fn decode(record: &[u8]) -> Result<Record, RecordError> {
    let (checkpoint, parts) = parts(record)?;
    Ok(Record {
        batches: parts
            .into_iter()
            .map(|(table, part)| Ok((table, read_rows(table, part)?)))
            .collect::<Result<_, RecordError>>()?,
        checkpoint: checkpoint.map(<[u8]>::to_vec),
    })
}

/// Batch `index` of a record (as [`decode`] orders them), without decompressing the others:
/// what a merge loads when it reaches that batch's first row.
pub fn decode_batch(record: &[u8], index: usize) -> Result<(Table, RecordBatch), RecordError> {
    let (table, part) = parts(record)?
        .1
        .into_iter()
        .nth(index)
        .ok_or(RecordError::NoBatch)?;
    Ok((table, read_rows(table, part)?))
}

/// The rows of a part as rows of this version's `table`: columns a block left out (NULL in
/// every row, [`without_null_columns`]) or that an older recorder's schema did not have come
/// back as NULL.
fn read_rows(table: Table, part: Part) -> Result<RecordBatch, RecordError> {
    Ok(conform(&read_part(part)?, &table.schema())?)
}

/// Each batch's table and [`Summary`], in the order of [`decode`]: what shipping needs to plan
/// a merge. Read from the record's headers; an older recorder's entries have their `time`
/// column (only) decompressed for it.
pub fn summaries(record: &[u8]) -> Result<Vec<(Table, Summary)>, RecordError> {
    parts(record)?
        .1
        .into_iter()
        .map(|(table, part)| match part {
            Part::Block { summary, .. } => Ok((table, summary)),
            Part::Frames(ipc) => Ok((table, Summary::of(times(&read_ipc(ipc, Some(vec![0]))?)))),
        })
        .collect()
}

/// A record's checkpoint and its batches, in order, as stored.
#[allow(clippy::type_complexity)]
fn parts(record: &[u8]) -> Result<(Option<&[u8]>, Vec<(Table, Part<'_>)>), RecordError> {
    let (&tag, mut rest) = record.split_first().ok_or(RecordError::Empty)?;
    let mut parts = Vec::new();
    if tag != TRANSACTION {
        let (table, stored) = table(tag)?;
        parts.extend(
            parts_of(rest, stored)?
                .into_iter()
                .map(|part| (table, part)),
        );
        return Ok((None, parts));
    }
    let (checkpoint, tail) = length_prefixed(rest)?;
    rest = tail;
    while let Some((&tag, tail)) = rest.split_first() {
        let (entry, tail) = length_prefixed(tail)?;
        let (table, stored) = table(tag)?;
        parts.extend(
            parts_of(entry, stored)?
                .into_iter()
                .map(|part| (table, part)),
        );
        rest = tail;
    }
    Ok((Some(checkpoint), parts))
}

/// The checkpoint a record carries, read without decoding its rows (recovery reads every
/// record of every leftover segment).
pub fn checkpoint(record: &[u8]) -> Option<&[u8]> {
    match record.split_first() {
        Some((&TRANSACTION, rest)) => length_prefixed(rest).ok().map(|(checkpoint, _)| checkpoint),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::test_rows;

    /// The fuzz regression `record` (a transaction whose entry is of the frame-per-buffer
    /// format), and its IPC stream as an entry of blocks (read in place).
    fn in_both_formats(record: &[u8]) -> [Vec<u8>; 2] {
        let (_, parts) = parts(record).unwrap();
        let [(Table::Flows, Part::Frames(ipc))] = parts.as_slice() else {
            panic!("one entry of flows, frame per buffer: {parts:?}");
        };
        let mut blocks = vec![tag(Table::Flows)];
        push_block(&mut blocks, ipc, Summary::of(&[0])).unwrap();
        [record.to_vec(), blocks]
    }

    /// A schema message without fields (the fuzz target's second crash: an `unwrap` in the
    /// IPC reader): damage, not a panic, by either reader.
    #[test]
    fn a_schema_the_reader_panics_on_is_damage() {
        let record = include_bytes!("../../../fuzz/regressions/spool_record/schema-without-fields");
        for record in in_both_formats(record) {
            let error = decode(&record).unwrap_err();
            assert!(matches!(error, RecordError::Damaged(_)), "{error}");
        }
    }

    /// A compressed buffer declaring 20 TiB decompressed (the `spool_record` fuzz target's
    /// first crash): refused, where the IPC reader would have aborted on the allocation.
    #[test]
    fn an_impossible_decompressed_size_is_damage_not_an_abort() {
        let record =
            include_bytes!("../../../fuzz/regressions/spool_record/huge-declared-lz4-size");
        for record in in_both_formats(record) {
            let error = decode(&record).unwrap_err();
            assert!(matches!(error, RecordError::Damaged(_)), "{error}");
        }
    }

    #[test]
    fn a_batch_survives_the_round_trip() {
        let batch = test_rows(&[3, 1, 2]);
        let record = encode(Table::Flows, &batch).unwrap();
        let back = decode(&record).unwrap();
        assert_eq!(back.batches, vec![(Table::Flows, batch)]);
        assert_eq!(back.checkpoint, None);
        assert_eq!(checkpoint(&record), None);
        assert!(matches!(decode(&[7]), Err(RecordError::UnknownTable(7))));
        assert!(matches!(
            decode(&[0x87]),
            Err(RecordError::UnknownTable(0x87))
        ));
        assert!(decode(&record[..record.len() / 2]).is_err());
    }

    /// Segments left by a recorder of before 2026-12 (every IPC buffer an LZ4 frame) still
    /// ship after an upgrade.
    #[test]
    fn records_of_the_frame_per_buffer_format_still_decode() {
        use arrow_ipc::writer::IpcWriteOptions;
        use arrow_ipc::CompressionType;
        let batch = test_rows(&[5, 6, 7]);
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .unwrap();
        let mut ipc = Vec::new();
        let mut writer =
            StreamWriter::try_new_with_options(&mut ipc, &batch.schema(), options).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let mut record = vec![TRANSACTION];
        record.extend_from_slice(&3u32.to_le_bytes());
        record.extend_from_slice(b"pos");
        record.push(0);
        record.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        record.extend_from_slice(&ipc);
        let back = decode(&record).unwrap();
        assert_eq!(back.batches, vec![(Table::Flows, batch.clone())]);
        assert_eq!(back.checkpoint.as_deref(), Some(&b"pos"[..]));
        let summaries = summaries(&record).unwrap();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].1, Summary::of(&[5, 6, 7]));
        // The new format is smaller than the old for the same rows, and reads the same.
        let new = encode_transaction(&[(Table::Flows, batch.clone())], b"pos").unwrap();
        assert!(
            new.len() < record.len(),
            "{} vs {}",
            new.len(),
            record.len()
        );
        assert_eq!(decode(&new).unwrap().batches, back.batches);
    }

    /// A one-block entry whose declared size is impossible, or whose block is damaged, is
    /// damage: no allocation of what it declares, no panic.
    #[test]
    fn a_damaged_block_is_damage() {
        let record = encode(Table::Flows, &test_rows(&[1, 2, 3])).unwrap();
        let mut huge = record.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(RecordError::Damaged(_))));
        let mut short = record.clone();
        let declared = u32::from_le_bytes(record[1..5].try_into().unwrap());
        short[1..5].copy_from_slice(&(declared - 1).to_le_bytes());
        assert!(matches!(decode(&short), Err(RecordError::Damaged(_))));
        let mut flipped = record.clone();
        for byte in flipped[9..].iter_mut().step_by(7) {
            *byte ^= 0x5a;
        }
        assert!(decode(&flipped).is_err());
        assert!(decode(&record[..3]).is_err());
        assert!(decode(&record[..record.len() - 1]).is_err());
    }

    /// A batch larger than a block is stored as several, read back as consecutive batches
    /// (and one at a time) that together are the rows written.
    #[test]
    fn a_large_batch_is_stored_in_blocks_and_read_back_in_order() {
        let written: Vec<i64> = (0..(2 * BLOCK_ROWS as i64 + 5)).collect();
        let batch = test_rows(&written);
        let record = encode_transaction(&[(Table::Flows, batch.clone())], b"p").unwrap();
        let back = decode(&record).unwrap();
        let rows: Vec<usize> = back.batches.iter().map(|(_, b)| b.num_rows()).collect();
        assert_eq!(rows, vec![BLOCK_ROWS, BLOCK_ROWS, 5]);
        let whole =
            arrow::compute::concat_batches(&batch.schema(), back.batches.iter().map(|(_, b)| b))
                .unwrap();
        assert_eq!(whole, batch);
        let planned = summaries(&record).unwrap();
        let expected: Vec<_> = back
            .batches
            .iter()
            .map(|(table, batch)| (*table, Summary::of(times(batch))))
            .collect();
        assert_eq!(planned, expected, "the headers say what the rows say");
        assert_eq!(planned[2].1.first, Some(2 * BLOCK_ROWS as i64));
        let (table, last) = decode_batch(&record, 2).unwrap();
        assert_eq!((table, last), back.batches[2].clone());
        assert!(matches!(
            decode_batch(&record, 3),
            Err(RecordError::NoBatch)
        ));
    }

    #[test]
    fn a_transaction_keeps_its_tables_and_checkpoint_together() {
        let flows = test_rows(&[1, 2]);
        let more = test_rows(&[3]);
        let empty = test_rows(&[]);
        let batches = [
            (Table::Flows, flows.clone()),
            (Table::LostEvents, empty),
            (Table::Flows, more.clone()),
        ];
        let record = encode_transaction(&batches, b"inode 7 offset 42").unwrap();
        assert_eq!(checkpoint(&record), Some(&b"inode 7 offset 42"[..]));
        let back = decode(&record).unwrap();
        assert_eq!(back.checkpoint.as_deref(), Some(&b"inode 7 offset 42"[..]));
        assert_eq!(
            back.batches,
            vec![(Table::Flows, flows), (Table::Flows, more)],
            "empty batches are left out"
        );
        // A position with no rows (every line was malformed) is a valid record.
        let bare = encode_transaction(&[], b"x").unwrap();
        assert!(decode(&bare).unwrap().batches.is_empty());
        assert!(decode(&record[..record.len() - 1]).is_err());
        assert!(decode(&record[..8]).is_err(), "cut inside the checkpoint");
        assert_eq!(checkpoint(&record[..8]), None);
    }
}
