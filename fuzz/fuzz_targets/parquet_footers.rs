//! A store object's Parquet footer, decoded the way flowsql and `flowstore` decode it (the
//! whole object; page index skipped; the decoder under `guard::quietly`): a footer or a
//! reason, never a crash. Anyone with write access to the bucket can put such an object there.
//! Also flowsql's shortcut (`flow_schema::footer::SharedSchemas`): a footer decoded with the
//! shared descriptor of its schema bytes is the footer the decoder reads alone.
#![no_main]

use flow_schema::footer::{descriptor, schema_bytes, top_level_fields, SharedSchemas};
use flow_schema::guard::quietly;
use libfuzzer_sys::fuzz_target;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let decoded = quietly(|| {
        let mut reader =
            ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
        reader.try_parse_sized(&bytes, data.len() as u64)?;
        reader.finish()
    });
    if let Some(Ok(metadata)) = decoded {
        let file = metadata.file_metadata();
        let _ = flow_schema::writer::FooterInfo::from_key_values(file.key_value_metadata());
        let _ = quietly(|| {
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        });
    }
    // The input as a footer's Thrift bytes, so that the schema walk meets every shape.
    shared_schema_decodes_the_same(data);
});

fn shared_schema_decodes_the_same(footer: &[u8]) {
    let shared = SharedSchemas::default();
    let Some(with_shared) = shared.decode(footer) else {
        return;
    };
    // The documented limit: a footer that repeats its schema field with another schema.
    let schemas = top_level_fields(footer).flatten().filter(|f| f.id == 2).count();
    let alone = quietly(|| ParquetMetaDataReader::decode_metadata(footer));
    let alone = match alone {
        Some(Ok(alone)) => alone,
        _ if schemas > 1 => return,
        other => panic!("decoded with a shared schema, but the decoder alone refuses it: {other:?}"),
    };
    let first = schema_bytes(footer).and_then(descriptor).expect("decode found it");
    if schemas > 1 || *alone.file_metadata().schema_descr() != *first {
        return;
    }
    assert_eq!(with_shared, alone, "the shared schema decoded another footer");
}
