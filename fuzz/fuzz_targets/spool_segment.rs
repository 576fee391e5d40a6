//! A spool segment as recovery reads it after a crash: any bytes are cut at the last good
//! record, never a panic; what is kept reads back the same, undamaged; each record's payload
//! and checkpoint decode or fail cleanly.
#![no_main]

use flowrec::source::tail::Position;
use flowrec::spool::{record, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recovered = segment::parse(data);
    let valid = usize::try_from(recovered.valid_len).expect("fits");
    assert!(valid <= data.len());
    if recovered.damage.is_none() {
        assert_eq!(valid, data.len(), "undamaged means everything was read");
    }
    if valid > 0 {
        let again = segment::parse(&data[..valid]);
        assert!(again.damage.is_none(), "{:?}", again.damage);
        assert_eq!(again.records, recovered.records);
    }
    for bytes in &recovered.records {
        let _ = record::decode(bytes);
        if let Some(checkpoint) = record::checkpoint(bytes) {
            let _ = Position::decode(checkpoint);
        }
    }
});
