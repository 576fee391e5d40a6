//! The schema inside a Parquet footer, found without decoding it, and shared between footers.
//!
//! A footer (Thrift compact protocol `FileMetaData`) carries its file's schema as field 2, a
//! list of `SchemaElement`s. Decoding that list into a `SchemaDescriptor` was a tenth of
//! reading a newest hour's 600 small files, and each descriptor took ~55 KiB of memory, yet
//! the files of one writer version all carry the same bytes there. [`SharedSchemas`] decodes
//! those bytes once and hands the descriptor to the decoder of every footer whose bytes are
//! equal (`ParquetMetaDataOptions::with_schema`, which makes the decoder skip field 2).
//!
//! What makes that exact: the descriptor is a function of the schema bytes alone, and a bytes
//! span is shared only when the decoder provably reads exactly that span as the schema (see
//! [`descriptor`]) and skips exactly it when given a descriptor (see [`schema_bytes`]). Then a
//! footer decodes to the same metadata either way, whatever else it holds (but a repeated
//! schema field, see [`schema_bytes`]); the fuzz target `parquet_footers` checks that on
//! arbitrary bytes.
//!
//! The input is untrusted (any object in the bucket): every read is bounds-checked, nesting
//! is limited, and anything unexpected is `None` (the caller then decodes the footer the
//! ordinary way, which reports damage).

use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetStatisticsPolicy,
};
use parquet::schema::types::SchemaDescPtr;

use crate::guard::quietly;

/// Footer decoding that shares the schema descriptors of equal schema bytes.
#[derive(Debug, Default)]
pub struct SharedSchemas(ByBytes<Option<SchemaDescPtr>>);

impl SharedSchemas {
    /// `footer` (a `FileMetaData`'s bytes, without the page index) decoded with the shared
    /// descriptor of its schema; `None` when that cannot be done exactly or the footer does
    /// not decode: decode it the ordinary way then, which reports what is wrong.
    pub fn decode(&self, footer: &[u8]) -> Option<ParquetMetaData> {
        self.decode_with(footer, ParquetMetaDataOptions::new())
    }

    /// As [`SharedSchemas::decode`], without the columns' statistics (values, encodings,
    /// sizes): what a reader needs to decode the rows and nothing it would prune with. Over a
    /// flows file's 131 columns the statistics are most of the decoding.
    pub fn decode_for_rows(&self, footer: &[u8]) -> Option<ParquetMetaData> {
        let options = ParquetMetaDataOptions::new()
            .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
            .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
            .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
        self.decode_with(footer, options)
    }

    fn decode_with(
        &self,
        footer: &[u8],
        options: ParquetMetaDataOptions,
    ) -> Option<ParquetMetaData> {
        let schema = schema_bytes(footer)?;
        let shared = match self.0.get(schema) {
            Some(shared) => shared,
            None => {
                let shared = descriptor(schema);
                self.0.remember(schema, shared.clone());
                shared
            }
        }?;
        let options = options.with_schema(shared);
        quietly(|| ParquetMetaDataReader::decode_metadata_with_options(footer, Some(&options)))?
            .ok()
    }
}

/// The descriptor that `schema` (from [`schema_bytes`]) decodes to, or `None` unless the
/// decoder reads exactly these bytes as the schema: it must succeed on them and fail when
/// their last byte is cut (a reader that stops early would succeed on both, and what it left
/// would be read as other fields of the footer).
pub fn descriptor(schema: &[u8]) -> Option<SchemaDescPtr> {
    // Field 2 of a struct, of type list: delta 2, type 9.
    let mut wrapped = Vec::with_capacity(schema.len() + 1);
    wrapped.push(0x29);
    wrapped.extend_from_slice(schema);
    let descriptor = quietly(|| ParquetMetaDataReader::decode_schema(&wrapped))?.ok()?;
    wrapped.pop();
    let cut = quietly(|| ParquetMetaDataReader::decode_schema(&wrapped));
    matches!(cut, Some(Err(_))).then_some(descriptor)
}

/// Values worked out from some bytes of a file, kept for files with equal bytes. Compared
/// whole, not by a hash: equal bytes are what makes a value reusable, and comparing an
/// embedded schema (12 KiB) costs less than hashing it did.
#[derive(Debug)]
pub struct ByBytes<T>(std::sync::Mutex<Vec<(Box<[u8]>, T)>>);

impl<T> Default for ByBytes<T> {
    fn default() -> Self {
        ByBytes(Default::default())
    }
}

impl<T: Clone> ByBytes<T> {
    /// More distinct values than a store holds schema versions; past it, each file works out
    /// its own.
    const MAX: usize = 8;

    pub fn get(&self, bytes: &[u8]) -> Option<T> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .find(|(key, _)| **key == *bytes)
            .map(|(_, value)| value.clone())
    }

    pub fn remember(&self, bytes: &[u8], value: T) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() < Self::MAX && !known.iter().any(|(key, _)| **key == *bytes) {
            known.push((bytes.into(), value));
        }
    }
}

/// The bytes of field 2 (`schema`) of a footer's `FileMetaData`, from its list header to the
/// end of its last element; `None` when the footer is not well-formed Thrift up to there.
///
/// The span is the one the decoder skips when given a descriptor: a collection of booleans
/// (which no schema holds, and which that skip and a read measure differently) gives `None`.
/// The first field 2 is taken. A footer that repeats it (no writer does; the decoder alone
/// keeps the last, or fails on a repeat that is not a list) is read with the first: finding a
/// repeat would mean walking every row group's metadata, which costs what sharing saves. Such
/// a file is still checked against the table like any other.
pub fn schema_bytes(footer: &[u8]) -> Option<&[u8]> {
    top_level_fields(footer)
        .map_while(|field| field)
        .find(|field| field.id == 2 && field.kind == LIST)
        .map(|field| field.value)
}

/// A field of a footer's top-level struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub id: i16,
    /// Its compact-protocol type code.
    pub kind: u8,
    /// Its value's bytes (empty for a boolean, whose value is its type code).
    pub value: &'a [u8],
}

/// The fields of a footer's top-level struct in the order written; a `None` item (and the end)
/// where the bytes stop being well-formed.
pub fn top_level_fields(footer: &[u8]) -> impl Iterator<Item = Option<Field<'_>>> {
    let mut input = Input {
        bytes: footer,
        at: 0,
    };
    let mut id: i16 = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let field = (|| {
            let header = input.byte()?;
            if header == STOP {
                return Some(None);
            }
            let kind = header & 0x0f;
            id = match header >> 4 {
                0 => input.zigzag()?.try_into().ok()?,
                delta => id.checked_add(i16::from(delta))?,
            };
            let start = input.at;
            input.skip(kind, 0)?;
            Some(Some(Field {
                id,
                kind,
                value: &footer[start..input.at],
            }))
        })();
        match field {
            Some(Some(field)) => Some(Some(field)),
            Some(None) => {
                done = true;
                None
            }
            None => {
                done = true;
                Some(None)
            }
        }
    })
}

// Compact protocol type codes (Thrift's TCompactProtocol specification).
const STOP: u8 = 0;
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// Deeper than any Parquet footer nests (a schema is a flat list of elements); a garbage
/// footer must not recurse without end.
const MAX_DEPTH: usize = 16;

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let value = self.varint()?;
        Some((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    /// Skips one value of compact type `kind`.
    fn skip(&mut self, kind: u8, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match kind {
            // A boolean field's value is its type code; nothing follows.
            BOOL_TRUE | BOOL_FALSE => Some(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let len = usize::try_from(self.varint()?).ok()?;
                self.advance(len)
            }
            LIST | SET => {
                let header = self.byte()?;
                let element = header & 0x0f;
                let count = match header >> 4 {
                    15 => self.varint()?,
                    small => u64::from(small),
                };
                for _ in 0..count {
                    self.skip_element(element, depth + 1)?;
                }
                Some(())
            }
            MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Some(());
                }
                let kinds = self.byte()?;
                for _ in 0..count {
                    self.skip_element(kinds >> 4, depth + 1)?;
                    self.skip_element(kinds & 0x0f, depth + 1)?;
                }
                Some(())
            }
            STRUCT => loop {
                let header = self.byte()?;
                if header == STOP {
                    return Some(());
                }
                if header >> 4 == 0 {
                    self.zigzag()?;
                }
                self.skip(header & 0x0f, depth + 1)?;
            },
            _ => None,
        }
    }

    /// Skips a collection's element. A boolean element is a byte of its own, but the
    /// decoder's skip reads none for it: refused, so that a span is always what it skips.
    fn skip_element(&mut self, kind: u8, depth: usize) -> Option<()> {
        match kind {
            BOOL_TRUE | BOOL_FALSE => None,
            kind => self.skip(kind, depth),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::file::metadata::ParquetMetaDataReader;

    use super::{descriptor, schema_bytes, SharedSchemas};

    /// The footer (`FileMetaData` bytes) of a file of `fields`, with a key-value entry and
    /// statistics so that fields after the schema are present too.
    fn footer(fields: Vec<Field>) -> Vec<u8> {
        let schema = Arc::new(Schema::new(fields));
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from(vec![1, 2])) as _,
                _ => Arc::new(StringArray::from(vec!["a", "b"])) as _,
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut file = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut file, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let n = file.len();
        let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
        file[n - 8 - len..n - 8].to_vec()
    }

    fn fields(names: &[&str]) -> Vec<Field> {
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect()
    }

    #[test]
    fn finds_the_schema_list_and_it_decodes_to_the_footers_schema() {
        let bytes = footer(fields(&["source", "destination"]));
        let span = schema_bytes(&bytes).expect("a writer's footer");
        // The list header: 3 elements (root + 2 columns) of type struct.
        assert_eq!(span[0], 0x3c);
        // Field 2 ends where field 3 (num_rows, i64: delta 1, type 6) begins.
        let end = span.as_ptr() as usize - bytes.as_ptr() as usize + span.len();
        assert_eq!(bytes[end], 0x16);
        let decoded = ParquetMetaDataReader::decode_metadata(&bytes).unwrap();
        let names: Vec<_> = decoded
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(names, ["source", "destination"]);
    }

    #[test]
    fn equal_schemas_give_equal_bytes_and_any_difference_shows() {
        let a = footer(fields(&["source", "destination"]));
        let b = footer(fields(&["source", "destination"]));
        let renamed = footer(fields(&["source", "destinatio"]));
        let retyped = footer(vec![
            Field::new("source", DataType::Utf8, true),
            Field::new("destination", DataType::Int64, true),
        ]);
        let required = footer(vec![
            Field::new("source", DataType::Utf8, true),
            Field::new("destination", DataType::Utf8, false),
        ]);
        let schema = |f: &Vec<u8>| schema_bytes(f).unwrap().to_vec();
        assert_eq!(schema(&a), schema(&b));
        for other in [&renamed, &retyped, &required] {
            assert_ne!(schema(&a), schema(other));
        }
    }

    #[test]
    fn footers_of_one_schema_share_its_descriptor_and_decode_as_alone() {
        let shared = SharedSchemas::default();
        let first = footer(fields(&["source", "destination"]));
        let second = footer(fields(&["source", "destination"]));
        let other = footer(fields(&["source", "verdict"]));
        let decoded: Vec<_> = [&first, &second, &other]
            .iter()
            .map(|f| shared.decode(f).expect("a writer's footer"))
            .collect();
        let descriptor = |i: usize| decoded[i].file_metadata().schema_descr_ptr();
        assert!(Arc::ptr_eq(&descriptor(0), &descriptor(1)));
        assert!(!Arc::ptr_eq(&descriptor(0), &descriptor(2)));
        for (bytes, decoded) in [&first, &second, &other].iter().zip(&decoded) {
            assert_eq!(
                *decoded,
                ParquetMetaDataReader::decode_metadata(bytes).unwrap()
            );
        }
    }

    #[test]
    fn a_span_the_decoder_would_not_read_exactly_is_not_shared() {
        let bytes = footer(fields(&["source"]));
        let span = schema_bytes(&bytes).unwrap();
        let own = ParquetMetaDataReader::decode_metadata(&bytes).unwrap();
        assert_eq!(
            *descriptor(span).unwrap(),
            *own.file_metadata().schema_descr()
        );
        // One byte more than the decoder reads: it would stop early.
        let longer: Vec<u8> = span.iter().copied().chain([0x00]).collect();
        assert!(descriptor(&longer).is_none());
        // One byte less: it cannot decode.
        assert!(descriptor(&span[..span.len() - 1]).is_none());
        // A list of booleans, which the decoder's skip measures otherwise.
        assert_eq!(schema_bytes(&[0x29, 0x21, 0x01, 0x00]), None);
    }

    #[test]
    fn top_level_fields_are_the_file_metadata_fields_in_order() {
        let bytes = footer(fields(&["source"]));
        let fields: Vec<_> = super::top_level_fields(&bytes).collect();
        assert!(fields.iter().all(Option::is_some), "{fields:?}");
        let ids: Vec<i16> = fields.iter().flatten().map(|f| f.id).collect();
        // version, schema, num_rows, row_groups, key_value_metadata, created_by, column_orders
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        // Cut inside a field: the fields before it, then None.
        let cut: Vec<_> = super::top_level_fields(&bytes[..3]).collect();
        assert_eq!(cut.len(), 2);
        assert!(cut[0].is_some() && cut[1].is_none());
    }

    #[test]
    fn garbage_and_cut_footers_give_none_never_a_panic() {
        let bytes = footer(fields(&["source", "destination"]));
        let whole = schema_bytes(&bytes).unwrap();
        let start = whole.as_ptr() as usize - bytes.as_ptr() as usize;
        for cut in 0..start + whole.len() {
            assert_eq!(schema_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(schema_bytes(&[]), None);
        assert_eq!(schema_bytes(&[0x00]), None);
        // Field 2 of another type is not a schema.
        assert_eq!(schema_bytes(&[0x15, 0x02, 0x15, 0x04, 0x00]), None);
        // Lists nested past any footer's depth.
        let deep: Vec<u8> = std::iter::once(0x19).chain([0x19; 64]).collect();
        assert_eq!(schema_bytes(&deep), None);
        // A length past the end.
        assert_eq!(schema_bytes(&[0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]), None);
    }
}
