//! What a spool record holds: rows, and for a source that reads from a position (a followed
//! file) the position after them.
//!
//! Two encodings behind a one-byte tag:
//! - `0` / `1`: rows of one table (flows / lost events) as one Arrow IPC stream (schema + one
//!   batch);
//! - `2`, a *transaction*: `[u32 LE checkpoint length][checkpoint]` then, per table,
//!   `[table tag][u32 LE length][Arrow IPC stream]`. The checkpoint is the source's position
//!   after these rows; being in the same CRC frame, rows and position are recorded together or
//!   not at all, which is what lets a restarted source neither skip nor repeat.
//!
//! Self-describing (the IPC stream carries its schema), so a segment written by an older
//! recorder still decodes; the schema costs a few KiB per record, and a record is a whole
//! drain or chunk.

use arrow::array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
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
}

const TRANSACTION: u8 = 2;

/// A decoded record.
#[derive(Debug)]
pub struct Record {
    pub batches: Vec<(Table, RecordBatch)>,
    /// The source's position after these rows (opaque to the spool).
    pub checkpoint: Option<Vec<u8>>,
}

fn tag(table: Table) -> u8 {
    match table {
        Table::Flows => 0,
        Table::LostEvents => 1,
    }
}

fn table(tag: u8) -> Result<Table, RecordError> {
    match tag {
        0 => Ok(Table::Flows),
        1 => Ok(Table::LostEvents),
        other => Err(RecordError::UnknownTable(other)),
    }
}

/// LZ4-compressed buffers: a flow row is about as large as its JSON line uncompressed (some
/// hundred columns, most null), a few times smaller compressed; LZ4 costs little CPU, and a
/// smaller spool holds a longer store outage within `--spool-max-bytes`.
fn write_ipc(bytes: &mut Vec<u8>, batch: &RecordBatch) -> Result<(), RecordError> {
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut writer = StreamWriter::try_new_with_options(bytes, &batch.schema(), options)?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
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
    write_ipc(&mut bytes, batch)?;
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
        write_ipc(&mut bytes, batch)?;
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
    let (checkpoint, entries) = entries(record)?;
    Ok(Record {
        batches: entries
            .into_iter()
            .map(|(table, ipc)| Ok((table, read_ipc(ipc, None)?)))
            .collect::<Result<_, RecordError>>()?,
        checkpoint: checkpoint.map(<[u8]>::to_vec),
    })
}

/// Each batch of a record with only its first column (`time`, in every schema version):
/// what shipping needs to plan a merge, without decompressing the other columns.
pub fn decode_times(record: &[u8]) -> Result<Vec<(Table, RecordBatch)>, RecordError> {
    entries(record)?
        .1
        .into_iter()
        .map(|(table, ipc)| Ok((table, read_ipc(ipc, Some(vec![0]))?)))
        .collect()
}

/// A record's checkpoint and its (table, Arrow IPC stream) entries, in order.
#[allow(clippy::type_complexity)]
fn entries(record: &[u8]) -> Result<(Option<&[u8]>, Vec<(Table, &[u8])>), RecordError> {
    let (&tag, mut rest) = record.split_first().ok_or(RecordError::Empty)?;
    if tag != TRANSACTION {
        return Ok((None, vec![(table(tag)?, rest)]));
    }
    let (checkpoint, tail) = length_prefixed(rest)?;
    rest = tail;
    let mut entries = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        let (ipc, tail) = length_prefixed(tail)?;
        entries.push((table(tag)?, ipc));
        rest = tail;
    }
    Ok((Some(checkpoint), entries))
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

    /// A schema message without fields (the fuzz target's second crash: an `unwrap` in the
    /// IPC reader): damage, not a panic.
    #[test]
    fn a_schema_the_reader_panics_on_is_damage() {
        let record = include_bytes!("../../../fuzz/regressions/spool_record/schema-without-fields");
        let error = decode(record).unwrap_err();
        assert!(matches!(error, RecordError::Damaged(_)), "{error}");
    }

    /// A compressed buffer declaring 20 TiB decompressed (the `spool_record` fuzz target's
    /// first crash): refused, where the IPC reader would have aborted on the allocation.
    #[test]
    fn an_impossible_decompressed_size_is_damage_not_an_abort() {
        let record =
            include_bytes!("../../../fuzz/regressions/spool_record/huge-declared-lz4-size");
        let error = decode(record).unwrap_err();
        assert!(matches!(error, RecordError::Damaged(_)), "{error}");
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
        assert!(decode(&record[..record.len() / 2]).is_err());
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
