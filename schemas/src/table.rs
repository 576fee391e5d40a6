//! Column builders that a decoder appends to directly, one row at a time, and that can drop the
//! row being written when the record turns out to be bad half-way.
//!
//! The decoder decides *where* a value goes (a column index); the schema decides *how* it is
//! stored (the builder made for the column's type), so the two cannot drift apart silently: a
//! value of the wrong kind for its column is a bug, caught by any test that decodes a row.
//!
//! Why not Arrow's builders: they cannot take back a value, so a record that fails in its 30th
//! field would need staging in between, and staging every value once more cost a fifth of an
//! import's CPU. Here a row is written in place; [`TableBuilder::commit`] keeps it,
//! [`TableBuilder::discard`] cuts every column back. Columns a row does not set are filled with
//! NULLs in bulk when a later row (or [`TableBuilder::finish`]) needs them aligned. Setting a
//! column twice in one row keeps the last value.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Int32Array, ListArray, PrimitiveArray, RecordBatch,
    StringArray, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, FieldRef, Fields, Int32Type, SchemaRef,
    TimeUnit, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;

use crate::nulls::NullColumns;

/// Builders for every column of a schema.
pub struct TableBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
}

impl TableBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column::for_type(field.data_type(), field.name()))
            .collect();
        TableBuilder {
            schema,
            columns,
            rows: 0,
        }
    }

    /// How much each column holds now (call before [`TableBuilder::finish`]).
    pub fn sizes(&self) -> Sizes {
        Sizes {
            rows: self.rows,
            columns: self.columns.iter().map(Column::size).collect(),
        }
    }

    /// Reserves room for `rows` rows of the shape `like` had, so that vectors do not grow (and
    /// copy themselves) value by value: decoding a chunk like the previous one then allocates
    /// each column once (measured: 2.5% of an import's CPU went to regrowing).
    pub fn reserve_like(&mut self, like: &Sizes, rows: usize) {
        if like.rows == 0 || like.columns.len() != self.columns.len() {
            return;
        }
        let scale = |n: usize| n * rows / like.rows + 64;
        for (column, size) in self.columns.iter_mut().zip(&like.columns) {
            column.reserve(
                rows,
                ColumnSize {
                    bytes: scale(size.bytes),
                    items: scale(size.items),
                    item_bytes: scale(size.item_bytes),
                },
            );
        }
    }

    /// Rows committed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether the row being written has a value in `column`.
    pub fn is_set(&self, column: usize) -> bool {
        self.columns[column].len() > self.rows
    }

    /// The column, ready to take the current row's value.
    fn slot(&mut self, column: usize) -> &mut Column {
        self.columns[column].slot(self.rows)
    }

    fn mismatch(&self, column: usize, value: &str) -> ! {
        let field = self.schema.field(column);
        panic!(
            "decoder bug: a {value} value does not fit column {} ({})",
            field.name(),
            field.data_type()
        )
    }

    /// A string (plain or dictionary-encoded column).
    pub fn str(&mut self, column: usize, value: &str) {
        if !self.slot(column).push_str(value) {
            self.mismatch(column, "string")
        }
    }

    pub fn u32(&mut self, column: usize, value: u32) {
        match self.slot(column) {
            Column::UInt32(c) => c.push(value),
            _ => self.mismatch(column, "u32"),
        }
    }

    pub fn u64(&mut self, column: usize, value: u64) {
        match self.slot(column) {
            Column::UInt64(c) => c.push(value),
            _ => self.mismatch(column, "u64"),
        }
    }

    pub fn i32(&mut self, column: usize, value: i32) {
        match self.slot(column) {
            Column::Int32(c) => c.push(value),
            _ => self.mismatch(column, "i32"),
        }
    }

    pub fn bool(&mut self, column: usize, value: bool) {
        match self.slot(column) {
            Column::Boolean(c) => c.push(value),
            _ => self.mismatch(column, "bool"),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn time(&mut self, column: usize, ns: i64) {
        match self.slot(column) {
            Column::Timestamp(c, _) => c.push(ns),
            _ => self.mismatch(column, "timestamp"),
        }
    }

    /// Starts a `list<utf8>` value for the current row; `List::end` sets it.
    pub fn strings(&mut self, column: usize) -> &mut StringList {
        if !matches!(self.columns[column], Column::Strings(_)) {
            self.mismatch(column, "list of strings")
        }
        match self.slot(column) {
            Column::Strings(list) => list,
            _ => unreachable!("checked above"),
        }
    }

    /// Starts a `list<struct>` value for the current row; `StructList::end` sets it.
    pub fn structs(&mut self, column: usize) -> &mut StructList {
        if !matches!(self.columns[column], Column::Structs(_)) {
            self.mismatch(column, "list of structs")
        }
        match self.slot(column) {
            Column::Structs(list) => list,
            _ => unreachable!("checked above"),
        }
    }

    /// Keeps the row written since the last commit or discard.
    pub fn commit(&mut self) {
        self.rows += 1;
    }

    /// Drops whatever was written since the last commit or discard.
    pub fn discard(&mut self) {
        for column in &mut self.columns {
            column.truncate(self.rows);
        }
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        self.discard();
        let rows = self.rows;
        let nulls = NullColumns::new(rows);
        let columns = self
            .columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(mut column, field)| {
                // A column no row has a value in: all NULLs, not a zero written per row. Much
                // of the flow schema is L7 and Kubernetes columns a source may never fill, and
                // padding them showed as page faults, ~10% of an eBPF drain's samples.
                if column.len() == 0 {
                    return nulls.column(field.data_type());
                }
                column.pad(rows);
                column.finish()
            })
            .collect();
        RecordBatch::try_new(self.schema, columns)
    }
}

/// The shape of a table's contents: see [`TableBuilder::reserve_like`].
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    rows: usize,
    columns: Vec<ColumnSize>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ColumnSize {
    /// String bytes of a string column.
    bytes: usize,
    /// Items of a list column, and their string bytes.
    items: usize,
    item_bytes: usize,
}

/// Validity bits; no bitmap at all while every row is valid. Keeps its own length: asking the
/// Arrow builder for it on every value showed up in profiles (1.4%, not inlined).
#[derive(Debug)]
struct Validity {
    bits: NullBufferBuilder,
    len: usize,
}

impl Validity {
    fn new() -> Self {
        Validity {
            bits: NullBufferBuilder::new(0),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push_valid(&mut self) {
        self.bits.append_non_null();
        self.len += 1;
    }

    /// NULLs up to `rows`.
    fn pad(&mut self, rows: usize) {
        if rows > self.len {
            self.bits.append_n_nulls(rows - self.len);
            self.len = rows;
        }
    }

    fn truncate(&mut self, rows: usize) {
        if rows < self.len {
            self.bits.truncate(rows);
            self.len = rows;
        }
    }

    fn finish(mut self) -> Option<NullBuffer> {
        self.bits.finish()
    }
}

/// Fixed-width values.
struct Fixed<T> {
    values: Vec<T>,
    valid: Validity,
}

impl<T: Copy + Default> Fixed<T> {
    fn new() -> Self {
        Fixed {
            values: Vec::new(),
            valid: Validity::new(),
        }
    }

    fn push(&mut self, value: T) {
        self.values.push(value);
        self.valid.push_valid();
    }

    fn pad(&mut self, rows: usize) {
        self.values.resize(rows, T::default());
        self.valid.pad(rows);
    }

    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.valid.truncate(rows);
    }
}

impl<T: ArrowNativeType> Fixed<T> {
    fn primitive<P: ArrowPrimitiveType<Native = T>>(self) -> PrimitiveArray<P> {
        PrimitiveArray::new(ScalarBuffer::from(self.values), self.valid.finish())
    }
}

/// Variable-length strings: offsets into one byte buffer.
struct Strings {
    offsets: Vec<i32>,
    data: Vec<u8>,
    valid: Validity,
}

impl Strings {
    fn new() -> Self {
        Strings {
            offsets: vec![0],
            data: Vec::new(),
            valid: Validity::new(),
        }
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn push(&mut self, value: &str) {
        self.data.extend_from_slice(value.as_bytes());
        self.offsets.push(self.data.len() as i32);
        self.valid.push_valid();
    }

    fn value(&self, index: usize) -> &[u8] {
        &self.data[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    fn pad(&mut self, rows: usize) {
        let end = self.data.len() as i32;
        self.offsets.resize(rows + 1, end);
        self.valid.pad(rows);
    }

    fn truncate(&mut self, rows: usize) {
        if rows < self.len() {
            self.offsets.truncate(rows + 1);
            self.data.truncate(self.offsets[rows] as usize);
            self.valid.truncate(rows);
        }
    }

    fn finish(self) -> StringArray {
        let nulls = self.valid.finish();
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // SAFETY: `data` is the concatenation of whole `&str` values (`push` takes only those)
        // and `offsets` holds 0 and the end of each, in order: every slice is valid UTF-8 on
        // char boundaries. `StringArray::new` would check all of it again (1.7% of an import).
        unsafe { StringArray::new_unchecked(offsets, self.data.into(), nulls) }
    }
}

/// Dictionary-encoded strings (`dictionary<int32, utf8>`), values in first-seen order.
///
/// Most enum-like columns repeat the previous row's value (one node, one capture source, one
/// verdict for 99% of flows), so that value is compared first and only a different one is
/// hashed: measured, a general-purpose dictionary builder's hashing was 8% of an import's CPU.
struct Dictionary {
    keys: Fixed<i32>,
    values: Strings,
    /// foldhash: measured 2.7% of an import's CPU hashing these short strings with ahash.
    index: HashMap<Box<str>, i32, foldhash::fast::RandomState>,
    last: Option<i32>,
}

impl Dictionary {
    fn new() -> Self {
        Dictionary {
            keys: Fixed::new(),
            values: Strings::new(),
            index: HashMap::default(),
            last: None,
        }
    }

    fn push(&mut self, value: &str) {
        let key = match self.last {
            Some(last) if self.values.value(last as usize) == value.as_bytes() => last,
            _ => match self.index.get(value) {
                Some(&key) => key,
                None => {
                    let key = self.values.len() as i32;
                    self.values.push(value);
                    self.index.insert(value.into(), key);
                    key
                }
            },
        };
        self.last = Some(key);
        self.keys.push(key);
    }

    fn finish(self) -> DictionaryArray<Int32Type> {
        let keys: Int32Array = self.keys.primitive();
        DictionaryArray::new(keys, Arc::new(self.values.finish()))
    }
}

/// `list<utf8>`: per row, a range of items.
pub struct StringList {
    offsets: Vec<i32>,
    valid: Validity,
    items: Strings,
    item: FieldRef,
}

impl StringList {
    fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn push(&mut self, value: &str) {
        self.items.push(value);
    }

    /// Sets the list of the current row to the items pushed since `TableBuilder::strings`.
    pub fn end(&mut self) {
        self.offsets.push(self.items.len() as i32);
        self.valid.push_valid();
    }

    fn pad(&mut self, rows: usize) {
        // Items pushed for a row that never ended (a record that failed) go first.
        self.items
            .truncate(*self.offsets.last().expect("starts with 0") as usize);
        let end = self.items.len() as i32;
        self.offsets.resize(rows + 1, end);
        self.valid.pad(rows);
    }

    fn truncate(&mut self, rows: usize) {
        self.offsets.truncate(rows + 1);
        self.valid.truncate(rows);
        self.items
            .truncate(self.offsets[rows.min(self.offsets.len() - 1)] as usize);
    }

    fn finish(self) -> ListArray {
        ListArray::new(
            self.item,
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            Arc::new(self.items.finish()),
            self.valid.finish(),
        )
    }
}

/// `list<struct>`: per row, a range of elements whose fields are columns of their own.
pub struct StructList {
    offsets: Vec<i32>,
    valid: Validity,
    /// Elements written so far (ended or not).
    elements: usize,
    fields: Fields,
    children: Vec<Column>,
    item: FieldRef,
}

impl StructList {
    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Starts an element; its fields are NULL until set.
    pub fn element(&mut self) {
        for child in &mut self.children {
            child.pad(self.elements);
        }
        self.elements += 1;
    }

    fn field(&mut self, index: usize) -> &mut Column {
        self.children[index].slot(self.elements - 1)
    }

    pub fn field_str(&mut self, index: usize, value: &str) {
        assert!(
            self.field(index).push_str(value),
            "field {index} is not a string"
        );
    }

    pub fn field_u64(&mut self, index: usize, value: u64) {
        match self.field(index) {
            Column::UInt64(c) => c.push(value),
            _ => panic!("field {index} is not a u64"),
        }
    }

    pub fn field_strings(&mut self, index: usize) -> &mut StringList {
        match self.field(index) {
            Column::Strings(list) => list,
            _ => panic!("field {index} is not a list of strings"),
        }
    }

    /// Sets the list of the current row to the elements started since `TableBuilder::structs`.
    pub fn end(&mut self) {
        for child in &mut self.children {
            child.pad(self.elements);
        }
        self.offsets.push(self.elements as i32);
        self.valid.push_valid();
    }

    fn pad(&mut self, rows: usize) {
        // Elements of a row that never ended go first.
        self.cut_elements(*self.offsets.last().expect("starts with 0") as usize);
        let end = self.elements as i32;
        self.offsets.resize(rows + 1, end);
        self.valid.pad(rows);
    }

    fn truncate(&mut self, rows: usize) {
        self.offsets.truncate(rows + 1);
        self.valid.truncate(rows);
        self.cut_elements(self.offsets[rows.min(self.offsets.len() - 1)] as usize);
    }

    fn cut_elements(&mut self, elements: usize) {
        for child in &mut self.children {
            child.truncate(elements);
        }
        self.elements = self.elements.min(elements);
    }

    fn finish(mut self) -> ListArray {
        for child in &mut self.children {
            child.pad(self.elements);
        }
        let children = self.children.into_iter().map(Column::finish).collect();
        ListArray::new(
            self.item,
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            Arc::new(StructArray::new(self.fields, children, None)),
            self.valid.finish(),
        )
    }
}

enum Column {
    Utf8(Strings),
    Dictionary(Dictionary),
    UInt32(Fixed<u32>),
    UInt64(Fixed<u64>),
    Int32(Fixed<i32>),
    Boolean(Fixed<bool>),
    Timestamp(Fixed<i64>, DataType),
    Strings(StringList),
    Structs(StructList),
}

impl Column {
    /// The builder for a column type. The flow schemas use only these types; any other is a
    /// programming error in the schema, caught by the first test that builds a table.
    fn for_type(data_type: &DataType, name: &str) -> Self {
        match data_type {
            DataType::Utf8 => Column::Utf8(Strings::new()),
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                Column::Dictionary(Dictionary::new())
            }
            DataType::UInt32 => Column::UInt32(Fixed::new()),
            DataType::UInt64 => Column::UInt64(Fixed::new()),
            DataType::Int32 => Column::Int32(Fixed::new()),
            DataType::Boolean => Column::Boolean(Fixed::new()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                Column::Timestamp(Fixed::new(), data_type.clone())
            }
            DataType::List(item) => match item.data_type() {
                DataType::Utf8 => Column::Strings(StringList {
                    offsets: vec![0],
                    valid: Validity::new(),
                    items: Strings::new(),
                    item: item.clone(),
                }),
                DataType::Struct(fields) => Column::Structs(StructList {
                    offsets: vec![0],
                    valid: Validity::new(),
                    elements: 0,
                    fields: fields.clone(),
                    children: fields
                        .iter()
                        .map(|f| Column::for_type(f.data_type(), f.name()))
                        .collect(),
                    item: item.clone(),
                }),
                other => panic!("column {name}: no builder for list<{other}>"),
            },
            other => panic!("column {name}: no builder for {other}"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Utf8(c) => c.len(),
            Column::Dictionary(c) => c.keys.valid.len(),
            Column::UInt32(c) => c.valid.len(),
            Column::UInt64(c) => c.valid.len(),
            Column::Int32(c) => c.valid.len(),
            Column::Boolean(c) => c.valid.len(),
            Column::Timestamp(c, _) => c.valid.len(),
            Column::Strings(c) => c.len(),
            Column::Structs(c) => c.len(),
        }
    }

    fn size(&self) -> ColumnSize {
        match self {
            Column::Utf8(c) => ColumnSize {
                bytes: c.data.len(),
                ..ColumnSize::default()
            },
            Column::Strings(c) => ColumnSize {
                items: c.items.len(),
                item_bytes: c.items.data.len(),
                ..ColumnSize::default()
            },
            Column::Structs(c) => ColumnSize {
                items: c.elements,
                ..ColumnSize::default()
            },
            _ => ColumnSize::default(),
        }
    }

    fn reserve(&mut self, rows: usize, size: ColumnSize) {
        match self {
            Column::Utf8(c) => {
                c.offsets.reserve(rows + 1);
                c.data.reserve(size.bytes);
            }
            Column::Dictionary(c) => c.keys.values.reserve(rows),
            Column::UInt32(c) => c.values.reserve(rows),
            Column::UInt64(c) => c.values.reserve(rows),
            Column::Int32(c) => c.values.reserve(rows),
            Column::Boolean(c) => c.values.reserve(rows),
            Column::Timestamp(c, _) => c.values.reserve(rows),
            Column::Strings(c) => {
                c.offsets.reserve(rows + 1);
                c.items.offsets.reserve(size.items + 1);
                c.items.data.reserve(size.item_bytes);
            }
            Column::Structs(c) => c.offsets.reserve(rows + 1),
        }
    }

    /// Ready for the value of row `row`: a value already set for it is dropped (the last one
    /// wins), missing rows before it become NULL.
    fn slot(&mut self, row: usize) -> &mut Self {
        // Items of an unfinished list row cannot be left over here: a failed record is
        // discarded (which cuts them) before the next one starts.
        match self.len() {
            len if len == row => {}
            len if len > row => self.truncate(row),
            _ => self.pad(row),
        }
        self
    }

    /// Appends a string to a plain or dictionary column; false for any other column type.
    fn push_str(&mut self, value: &str) -> bool {
        match self {
            Column::Utf8(c) => c.push(value),
            Column::Dictionary(c) => c.push(value),
            _ => return false,
        }
        true
    }

    /// NULLs up to `rows` (no-op when already there).
    fn pad(&mut self, rows: usize) {
        match self {
            Column::Utf8(c) => c.pad(rows),
            Column::Dictionary(c) => c.keys.pad(rows),
            Column::UInt32(c) => c.pad(rows),
            Column::UInt64(c) => c.pad(rows),
            Column::Int32(c) => c.pad(rows),
            Column::Boolean(c) => c.pad(rows),
            Column::Timestamp(c, _) => c.pad(rows),
            Column::Strings(c) => c.pad(rows),
            Column::Structs(c) => c.pad(rows),
        }
    }

    /// Back to `rows` rows (no-op when shorter), including list items of an unfinished row.
    fn truncate(&mut self, rows: usize) {
        match self {
            Column::Utf8(c) => c.truncate(rows),
            Column::Dictionary(c) => c.keys.truncate(rows),
            Column::UInt32(c) => c.truncate(rows),
            Column::UInt64(c) => c.truncate(rows),
            Column::Int32(c) => c.truncate(rows),
            Column::Boolean(c) => c.truncate(rows),
            Column::Timestamp(c, _) => c.truncate(rows),
            Column::Strings(c) => c.truncate(rows),
            Column::Structs(c) => c.truncate(rows),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Utf8(c) => Arc::new(c.finish()),
            Column::Dictionary(c) => Arc::new(c.finish()),
            Column::UInt32(c) => Arc::new(c.primitive::<UInt32Type>()),
            Column::UInt64(c) => Arc::new(c.primitive::<UInt64Type>()),
            Column::Int32(c) => Arc::new(c.primitive::<Int32Type>()),
            Column::Boolean(c) => Arc::new(BooleanArray::new(c.values.into(), c.valid.finish())),
            Column::Timestamp(c, data_type) => Arc::new(
                c.primitive::<TimestampNanosecondType>()
                    .with_data_type(data_type),
            ),
            Column::Strings(c) => Arc::new(c.finish()),
            Column::Structs(c) => Arc::new(c.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    /// Columns no row wrote come out as NULLs of the schema's type, as long as the table;
    /// a column written in one row only has NULLs around its value.
    #[test]
    fn unwritten_columns_are_nulls_of_their_type() {
        let schema = crate::flow_schema();
        let mut table = TableBuilder::new(schema.clone());
        let node = schema.index_of("node_name").unwrap();
        let port = schema.index_of("destination_port").unwrap();
        let time = schema.index_of("time").unwrap();
        for row in 0..3u32 {
            table.time(time, i64::from(row));
            table.str(node, "node-1");
            if row == 1 {
                table.u32(port, 80);
            }
            table.commit();
        }
        // Written, then discarded: as if never written.
        let labels = schema.index_of("node_labels").unwrap();
        table.strings(labels).push("app=x");
        table.discard();
        let batch = table.finish().unwrap();
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.num_rows(), 3);
        for (index, column) in batch.columns().iter().enumerate() {
            let name = schema.field(index).name();
            assert_eq!(column.len(), 3, "{name}");
            let expected_nulls = match index {
                i if i == node || i == time => 0,
                i if i == port => 2,
                _ => 3,
            };
            assert_eq!(column.null_count(), expected_nulls, "{name}");
        }
        let ports = batch.column(port).as_primitive::<UInt32Type>();
        assert!(ports.is_null(0) && ports.is_null(2));
        assert_eq!(ports.value(1), 80);
    }
}
