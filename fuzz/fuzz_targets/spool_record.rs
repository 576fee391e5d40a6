//! One spool record's payload (tag, LZ4 Arrow IPC batches, a transaction's checkpoint) and a
//! followed file's position: decoded or refused, never a panic. (A record reaches these only
//! past its CRC, so this is defence in depth against a bug in our own writer.)
#![no_main]

use flowrec::source::tail::Position;
use flowrec::spool::record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = record::decode(data) {
        for (_, batch) in &decoded.batches {
            let _ = batch.num_rows();
        }
    }
    let _ = record::checkpoint(data);
    let _ = Position::decode(data);
});
