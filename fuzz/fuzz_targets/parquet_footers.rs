//! A store object's Parquet footer, decoded the way flowsql and `flowstore verify` decode it
//! (the whole object; page index skipped; the decoder under `guard::quietly`): a footer or a
//! reason, never a crash. Anyone with write access to the bucket can put such an object there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let decoded = flow_schema::guard::quietly(|| {
        let mut reader =
            ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
        reader.try_parse_sized(&bytes, data.len() as u64)?;
        reader.finish()
    });
    if let Some(Ok(metadata)) = decoded {
        let file = metadata.file_metadata();
        let _ = flow_schema::writer::FooterInfo::from_key_values(file.key_value_metadata());
        let _ = flow_schema::guard::quietly(|| {
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        });
    }
});
