//! Rows of the `lost_events` table back into the records Hubble printed for them. (Flows go
//! straight from their columns to the protobuf wire: `flow_schema::hubble::FlowRows`.)

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType, UInt64Type};
use datafusion::arrow::error::ArrowError;

use super::format::LostEvents;

/// A result batch with its dictionary and view columns as plain strings, and its columns
/// found by name.
pub struct Rows {
    batch: RecordBatch,
    index: HashMap<String, usize, ahash::RandomState>,
}

impl Rows {
    pub fn new(batch: &RecordBatch) -> Result<Rows, ArrowError> {
        let schema = batch.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        let mut fields = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let plain = match field.data_type() {
                DataType::Dictionary(_, value) => Some(value.as_ref().clone()),
                DataType::Utf8View => Some(DataType::Utf8),
                _ => None,
            };
            if let Some(plain) = plain {
                columns.push(cast(column, &plain)?);
                fields.push(field.as_ref().clone().with_data_type(plain));
            } else {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
        let batch = RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            columns,
        )?;
        let index = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        Ok(Rows { batch, index })
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column, if the result has it and the row's value is not NULL.
    fn at(&self, name: &str, row: usize) -> Option<&ArrayRef> {
        let column = self.batch.column(*self.index.get(name)?);
        column.is_valid(row).then_some(column)
    }

    fn text(&self, name: &str, row: usize) -> String {
        self.at(name, row)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .map_or_else(String::new, |c| c.value(row).to_owned())
    }

    fn u64(&self, name: &str, row: usize) -> Option<u64> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .map(|c| c.value(row))
    }

    fn i32(&self, name: &str, row: usize) -> Option<i32> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .map(|c| c.value(row))
    }

    fn time(&self, name: &str, row: usize) -> Option<i64> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .map(|c| c.value(row))
    }

    /// A row of `lost_events`.
    pub fn lost_events(&self, row: usize) -> LostEvents {
        LostEvents {
            time: self.time("time", row).map(timestamp),
            node_name: self.text("node_name", row),
            source: self.text("source", row),
            num_events_lost: self.u64("num_events_lost", row).unwrap_or_default(),
            cpu: self.i32("cpu", row),
            first: self.time("first", row).map(timestamp),
            last: self.time("last", row).map(timestamp),
        }
    }
}

fn timestamp(ns: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}
