//! What a spool record holds: rows of one table, as one Arrow IPC stream (schema + one batch)
//! behind a one-byte table tag. Self-describing, so a segment written by an older recorder
//! still decodes; the schema costs a few KiB per record, and a record is a whole drain.

use arrow::array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
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
}

fn tag(table: Table) -> u8 {
    match table {
        Table::Flows => 0,
        Table::LostEvents => 1,
    }
}

pub fn encode(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, RecordError> {
    let mut bytes = vec![tag(table)];
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

pub fn decode(record: &[u8]) -> Result<(Table, RecordBatch), RecordError> {
    let (&tag, ipc) = record.split_first().ok_or(RecordError::Empty)?;
    let table = match tag {
        0 => Table::Flows,
        1 => Table::LostEvents,
        other => return Err(RecordError::UnknownTable(other)),
    };
    let mut reader = StreamReader::try_new(ipc, None)?;
    let batch = reader.next().ok_or(RecordError::NoBatch)??;
    Ok((table, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_schema::table::TableBuilder;

    #[test]
    fn a_batch_survives_the_round_trip() {
        let schema = flow_schema::flow_schema();
        let mut rows = TableBuilder::new(schema.clone());
        let time = schema.index_of("time").unwrap();
        let verdict = schema.index_of("verdict").unwrap();
        for t in [3, 1, 2] {
            rows.time(time, t);
            rows.str(verdict, "DROPPED");
            rows.commit();
        }
        let batch = rows.finish().unwrap();
        let record = encode(Table::Flows, &batch).unwrap();
        let (table, back) = decode(&record).unwrap();
        assert_eq!(table, Table::Flows);
        assert_eq!(back, batch);
        assert!(matches!(decode(&[7]), Err(RecordError::UnknownTable(7))));
        assert!(decode(&record[..record.len() / 2]).is_err());
    }
}
