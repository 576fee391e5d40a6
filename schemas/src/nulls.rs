//! Columns with no value in any row, for batches that have many of them.
//!
//! Much of the flow schema is L7 and Kubernetes columns a source may never fill, and the spool
//! leaves all-NULL columns out of its records, so both the decoder's batches and every batch read
//! back from the spool carry ~30 of them. Arrow's `new_null_array` allocates zeroed buffers for
//! each: ~150 MB zeroed per 1M Hubble flows on each side, 2-3% of the recorder's CPU in
//! `calloc`, page faults and `memset` (perf, `make bench-hubble`). Here the columns of one
//! batch share two zeroed buffers.

use std::cell::OnceCell;
use std::sync::Arc;

use arrow::array::{
    new_empty_array, new_null_array, ArrayRef, BooleanArray, DictionaryArray, Int32Array,
    ListArray, PrimitiveArray, StringArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, UInt32Type};

/// All-NULL columns of `rows` rows, sharing zeroed buffers: as offsets, dictionary keys and
/// 32-bit values, and as validity bits, allocated when the first column asks for them. Each
/// column still counts the bytes it would hold alone (`get_array_memory_size`), which is what
/// the batching's memory bounds read.
pub struct NullColumns {
    rows: usize,
    /// `rows + 1` zero `i32`s, and `rows` zero bits.
    zeros: OnceCell<(Buffer, Buffer)>,
}

impl NullColumns {
    pub fn new(rows: usize) -> NullColumns {
        NullColumns {
            rows,
            zeros: OnceCell::new(),
        }
    }

    /// A column of NULLs of `data_type`, on the shared buffers where its layout allows.
    pub fn column(&self, data_type: &DataType) -> ArrayRef {
        let rows = self.rows;
        let (words, bits) = self.zeros.get_or_init(|| {
            (
                MutableBuffer::from_len_zeroed((rows + 1) * 4).into(),
                MutableBuffer::from_len_zeroed(rows.div_ceil(8)).into(),
            )
        });
        let nulls = || Some(NullBuffer::new(BooleanBuffer::new(bits.clone(), 0, rows)));
        let offsets = || OffsetBuffer::new(ScalarBuffer::new(words.clone(), 0, rows + 1));
        match data_type {
            DataType::Utf8 => Arc::new(StringArray::new(offsets(), Buffer::from(&[]), nulls())),
            DataType::List(item) => Arc::new(ListArray::new(
                Arc::clone(item),
                offsets(),
                new_empty_array(item.data_type()),
                nulls(),
            )),
            DataType::Dictionary(key, value) if **key == DataType::Int32 => {
                Arc::new(DictionaryArray::new(
                    Int32Array::new(ScalarBuffer::new(words.clone(), 0, rows), nulls()),
                    new_empty_array(value),
                ))
            }
            DataType::Int32 => Arc::new(Int32Array::new(
                ScalarBuffer::new(words.clone(), 0, rows),
                nulls(),
            )),
            DataType::UInt32 => Arc::new(PrimitiveArray::<UInt32Type>::new(
                ScalarBuffer::new(words.clone(), 0, rows),
                nulls(),
            )),
            DataType::Boolean => Arc::new(BooleanArray::new(
                BooleanBuffer::new(bits.clone(), 0, rows),
                nulls(),
            )),
            // 64-bit values and structs: their own zeroed buffers.
            _ => new_null_array(data_type, rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    /// The shared columns are Arrow's own null arrays, for every type of both tables, valid,
    /// and each counted in memory as if it held its buffers alone.
    #[test]
    fn shared_null_columns_equal_arrow_null_arrays() {
        for rows in [0, 1, 7, 8, 9, 2048] {
            let nulls = NullColumns::new(rows);
            for table in crate::Table::ALL {
                for field in table.schema().fields() {
                    let shared = nulls.column(field.data_type());
                    let alone = new_null_array(field.data_type(), rows);
                    let name = field.name();
                    assert_eq!(shared.data_type(), field.data_type(), "{name}");
                    assert_eq!(&shared, &alone, "{name}, {rows} rows");
                    assert_eq!(shared.null_count(), rows, "{name}");
                    shared.to_data().validate_full().unwrap();
                    assert!(
                        shared.get_array_memory_size() <= alone.get_array_memory_size() + 128,
                        "{name}: {} bytes shared, {} alone",
                        shared.get_array_memory_size(),
                        alone.get_array_memory_size()
                    );
                }
            }
        }
    }
}
