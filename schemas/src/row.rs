//! Rows assembled value by value, then appended to Arrow builders derived from a table's schema.
//!
//! A decoder fills one [`Row`] per input record and appends it to a [`TableBuilder`] only once
//! the whole record was understood: a record that fails half-way leaves no trace in the batch,
//! with no rollback. The decoder decides *where* a value goes (a column index); the schema
//! decides *how* it is stored (the builder chosen for the column's type), so the two cannot
//! drift apart silently: a value of the wrong kind for its column is a bug caught by any test
//! that decodes a row.
//!
//! Rows are sparse: a flow sets a third of the 110 columns, so a row remembers which cells it
//! set, clearing and appending touch only those, and the builders catch up on the NULLs of the
//! other columns in bulk.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, DictionaryArray, Int32Array, Int32Builder, ListArray,
    ListBuilder, NullBufferBuilder, RecordBatch, StringBuilder, StructArray,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields, Int32Type, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

/// One value of a row. Strings borrow from the input where they can.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Cell<'a> {
    #[default]
    Null,
    Str(Cow<'a, str>),
    U32(u32),
    U64(u64),
    I32(i32),
    Bool(bool),
    /// Nanoseconds since the Unix epoch.
    Time(i64),
    /// A list of strings: a range of [`Row`]'s string arena.
    Strings(Range<u32>),
    /// A list of structs: a range of [`Row`]'s item arena, one cell per struct field per element.
    Structs(Range<u32>),
}

/// The values of one record, by column index, plus the arenas its lists point into.
#[derive(Debug)]
pub struct Row<'a> {
    cells: Vec<Cell<'a>>,
    /// Indexes of the cells that are not NULL, in the order they were set.
    set: Vec<usize>,
    strings: Vec<Cow<'a, str>>,
    items: Vec<Cell<'a>>,
}

impl<'a> Row<'a> {
    /// A row of `width` columns, all NULL.
    pub fn new(width: usize) -> Self {
        Row {
            cells: vec![Cell::Null; width],
            set: Vec::new(),
            strings: Vec::new(),
            items: Vec::new(),
        }
    }

    /// Back to all NULL, keeping the allocations.
    pub fn clear(&mut self) {
        for index in self.set.drain(..) {
            self.cells[index] = Cell::Null;
        }
        self.strings.clear();
        self.items.clear();
    }

    /// Sets a cell; setting NULL is not allowed (a NULL is a cell never set).
    pub fn set(&mut self, column: usize, cell: Cell<'a>) {
        debug_assert!(cell != Cell::Null, "set NULL");
        if self.is_null(column) {
            self.set.push(column);
        }
        self.cells[column] = cell;
    }

    pub fn get(&self, column: usize) -> &Cell<'a> {
        &self.cells[column]
    }

    pub fn is_null(&self, column: usize) -> bool {
        matches!(self.cells[column], Cell::Null)
    }

    /// Sets `column` if it is still NULL (proto defaults, fallbacks).
    pub fn set_default(&mut self, column: usize, cell: Cell<'a>) {
        if self.is_null(column) {
            self.set(column, cell);
        }
    }

    /// Start of a string list: push its values with [`Row::push_string`], then close it with
    /// [`Row::strings_since`].
    pub fn strings_mark(&self) -> u32 {
        self.strings.len() as u32
    }

    pub fn push_string(&mut self, value: Cow<'a, str>) {
        self.strings.push(value);
    }

    pub fn strings_since(&self, mark: u32) -> Cell<'a> {
        Cell::Strings(mark..self.strings.len() as u32)
    }

    /// Start of a struct list; each element is [`Row::push_struct`] with the struct's width.
    pub fn items_mark(&self) -> u32 {
        self.items.len() as u32
    }

    /// Appends an element of `width` NULL fields; returns the index of its first field for
    /// [`Row::set_item`].
    pub fn push_struct(&mut self, width: usize) -> usize {
        let base = self.items.len();
        self.items.resize(base + width, Cell::Null);
        base
    }

    pub fn set_item(&mut self, index: usize, cell: Cell<'a>) {
        self.items[index] = cell;
    }

    pub fn structs_since(&self, mark: u32) -> Cell<'a> {
        Cell::Structs(mark..self.items.len() as u32)
    }
}

/// Builders for every column of a schema; rows in, a `RecordBatch` out.
pub struct TableBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl TableBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|field| ColumnBuilder::for_type(field.data_type(), field.name()))
            .collect();
        TableBuilder {
            schema,
            columns,
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    /// Number of columns (the width of a [`Row`] for this table).
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(&mut self, row: &Row) {
        for &index in &row.set {
            let column = &mut self.columns[index];
            column.append_nulls(self.rows - column.len());
            let cell = &row.cells[index];
            if column.append(cell, row).is_err() {
                let field = self.schema.field(index);
                panic!(
                    "decoder bug: {cell:?} does not fit column {} ({})",
                    field.name(),
                    field.data_type()
                );
            }
        }
        self.rows += 1;
    }

    pub fn finish(self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let columns = self
            .columns
            .into_iter()
            .map(|mut column| {
                column.append_nulls(rows - column.len());
                column.finish()
            })
            .collect();
        RecordBatch::try_new(self.schema, columns)
    }
}

enum ColumnBuilder {
    Utf8(StringBuilder),
    Dictionary(DictionaryBuilder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Int32(Int32Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampNanosecondBuilder),
    Strings(ListBuilder<StringBuilder>),
    Structs {
        item: FieldRef,
        fields: Fields,
        children: Vec<ColumnBuilder>,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
    },
}

impl ColumnBuilder {
    /// The builder for a column type. The flow schemas use only these types; any other is a
    /// programming error in the schema, caught by the first test that builds a table.
    fn for_type(data_type: &DataType, name: &str) -> Self {
        match data_type {
            DataType::Utf8 => ColumnBuilder::Utf8(StringBuilder::new()),
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                ColumnBuilder::Dictionary(DictionaryBuilder::default())
            }
            DataType::UInt32 => ColumnBuilder::UInt32(UInt32Builder::new()),
            DataType::UInt64 => ColumnBuilder::UInt64(UInt64Builder::new()),
            DataType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => ColumnBuilder::Timestamp(
                TimestampNanosecondBuilder::new().with_data_type(data_type.clone()),
            ),
            DataType::List(item) if *item.data_type() == DataType::Utf8 => ColumnBuilder::Strings(
                ListBuilder::new(StringBuilder::new()).with_field(item.clone()),
            ),
            DataType::List(item) => match item.data_type() {
                DataType::Struct(fields) => ColumnBuilder::Structs {
                    item: item.clone(),
                    fields: fields.clone(),
                    children: fields
                        .iter()
                        .map(|f| ColumnBuilder::for_type(f.data_type(), f.name()))
                        .collect(),
                    offsets: vec![0],
                    validity: NullBufferBuilder::new(0),
                },
                other => panic!("column {name}: no row builder for list<{other}>"),
            },
            other => panic!("column {name}: no row builder for {other}"),
        }
    }

    /// Appends `cell`; `row` holds the arenas list cells point into. Err if the cell's kind
    /// does not fit the column (a decoder bug, named by the caller).
    fn append(&mut self, cell: &Cell, row: &Row) -> Result<(), ()> {
        match (self, cell) {
            (ColumnBuilder::Utf8(b), Cell::Str(s)) => b.append_value(s),
            (ColumnBuilder::Utf8(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Dictionary(b), Cell::Str(s)) => b.append_value(s),
            (ColumnBuilder::Dictionary(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::UInt32(b), Cell::U32(v)) => b.append_value(*v),
            (ColumnBuilder::UInt32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::UInt64(b), Cell::U64(v)) => b.append_value(*v),
            (ColumnBuilder::UInt64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int32(b), Cell::I32(v)) => b.append_value(*v),
            (ColumnBuilder::Int32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), Cell::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Boolean(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Cell::Time(v)) => b.append_value(*v),
            (ColumnBuilder::Timestamp(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Strings(b), Cell::Strings(range)) => {
                for value in &row.strings[range.start as usize..range.end as usize] {
                    b.values().append_value(value);
                }
                b.append(true);
            }
            (ColumnBuilder::Strings(b), Cell::Null) => b.append_null(),
            (
                ColumnBuilder::Structs {
                    fields,
                    children,
                    offsets,
                    validity,
                    ..
                },
                Cell::Structs(range),
            ) => {
                let items = &row.items[range.start as usize..range.end as usize];
                let width = fields.len();
                for element in items.chunks(width) {
                    for (child, cell) in children.iter_mut().zip(element) {
                        child.append(cell, row)?;
                    }
                }
                let last = *offsets.last().expect("starts with 0");
                offsets.push(last + (items.len() / width) as i32);
                validity.append_non_null();
            }
            (
                ColumnBuilder::Structs {
                    offsets, validity, ..
                },
                Cell::Null,
            ) => {
                let last = *offsets.last().expect("starts with 0");
                offsets.push(last);
                validity.append_null();
            }
            _ => return Err(()),
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            ColumnBuilder::Utf8(b) => b.len(),
            ColumnBuilder::Dictionary(b) => b.len(),
            ColumnBuilder::UInt32(b) => b.len(),
            ColumnBuilder::UInt64(b) => b.len(),
            ColumnBuilder::Int32(b) => b.len(),
            ColumnBuilder::Boolean(b) => b.len(),
            ColumnBuilder::Timestamp(b) => b.len(),
            ColumnBuilder::Strings(b) => b.len(),
            ColumnBuilder::Structs { offsets, .. } => offsets.len() - 1,
        }
    }

    fn append_nulls(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        match self {
            ColumnBuilder::Utf8(b) => b.append_nulls(n),
            ColumnBuilder::Dictionary(b) => b.append_nulls(n),
            ColumnBuilder::UInt32(b) => b.append_nulls(n),
            ColumnBuilder::UInt64(b) => b.append_nulls(n),
            ColumnBuilder::Int32(b) => b.append_nulls(n),
            ColumnBuilder::Boolean(b) => b.append_nulls(n),
            ColumnBuilder::Timestamp(b) => b.append_nulls(n),
            ColumnBuilder::Strings(b) => b.append_nulls(n),
            ColumnBuilder::Structs {
                offsets, validity, ..
            } => {
                let last = *offsets.last().expect("starts with 0");
                offsets.resize(offsets.len() + n, last);
                validity.append_n_nulls(n);
            }
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Dictionary(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::UInt64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Strings(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Structs {
                item,
                fields,
                children,
                offsets,
                mut validity,
            } => {
                let children = children.into_iter().map(ColumnBuilder::finish).collect();
                let values = StructArray::new(fields, children, None);
                Arc::new(ListArray::new(
                    item,
                    OffsetBuffer::new(offsets.into()),
                    Arc::new(values),
                    validity.finish(),
                ))
            }
        }
    }
}

/// Dictionary-encoded strings (`dictionary<int32, utf8>`), values in first-seen order.
///
/// Most enum-like columns repeat the previous row's value (one node, one capture source, one
/// verdict for 99% of flows), so that value is compared first and only a different one is
/// hashed: measured, the general-purpose builder's hashing was 8% of an import's CPU.
struct DictionaryBuilder {
    keys: Vec<i32>,
    validity: NullBufferBuilder,
    values: StringBuilder,
    index: HashMap<Box<str>, i32, ahash::RandomState>,
    /// Key of the last value appended.
    last: Option<i32>,
}

impl Default for DictionaryBuilder {
    fn default() -> Self {
        DictionaryBuilder {
            keys: Vec::new(),
            validity: NullBufferBuilder::new(0),
            values: StringBuilder::new(),
            index: HashMap::default(),
            last: None,
        }
    }
}

impl DictionaryBuilder {
    fn value(&self, key: i32) -> &[u8] {
        let offsets = self.values.offsets_slice();
        let key = key as usize;
        &self.values.values_slice()[offsets[key] as usize..offsets[key + 1] as usize]
    }

    fn append_value(&mut self, value: &str) {
        let key = match self.last {
            Some(last) if self.value(last) == value.as_bytes() => last,
            _ => match self.index.get(value) {
                Some(&key) => key,
                None => {
                    let key = self.index.len() as i32;
                    self.values.append_value(value);
                    self.index.insert(value.into(), key);
                    key
                }
            },
        };
        self.last = Some(key);
        self.keys.push(key);
        self.validity.append_non_null();
    }

    fn append_null(&mut self) {
        self.append_nulls(1);
    }

    fn append_nulls(&mut self, n: usize) {
        self.keys.resize(self.keys.len() + n, 0);
        self.validity.append_n_nulls(n);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn finish(mut self) -> DictionaryArray<Int32Type> {
        let keys = Int32Array::new(self.keys.into(), self.validity.finish());
        DictionaryArray::new(keys, Arc::new(self.values.finish()))
    }
}
