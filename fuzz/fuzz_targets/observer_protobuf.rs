//! The live Hubble path: GetFlowsResponse bytes off the wire, read straight into rows
//! (`HubbleDecoder::decode_responses`). Never a panic, valid Arrow, one event is exactly one
//! outcome; and, differentially, whenever prost reads the bytes and re-encodes them to the same
//! bytes (a canonical encoding, as every real server sends) and protojson can print the event,
//! the rows are exactly those its protojson line gives through the import decoder: the "a live
//! flow and the same flow imported give the same row" guarantee, on arbitrary messages.
#![no_main]

use arrow::array::{Array, StructArray};
use flow_schema::hubble::{Decoded, HubbleDecoder};
use flow_schema::CaptureSource;
use hubble_api::observer::GetFlowsResponse;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn valid(decoded: &Decoded) {
    for batch in [&decoded.flows, &decoded.lost_events] {
        StructArray::from(batch.clone())
            .to_data()
            .validate_full()
            .expect("valid Arrow");
    }
}

fuzz_target!(|data: &[u8]| {
    static DECODER: std::sync::OnceLock<HubbleDecoder> = std::sync::OnceLock::new();
    let decoder = DECODER
        .get_or_init(|| HubbleDecoder::new(CaptureSource::Hubble, Some("fuzz-node".into())));
    let mut kept = 0;
    let wire = decoder.decode_responses([data].into_iter(), |_, _| {
        kept += 1;
        true
    });
    valid(&wire);
    let outcomes =
        wire.flows.num_rows() + wire.lost_events.num_rows() + wire.other_events + wire.errors.len();
    assert_eq!(outcomes, 1, "{wire:?}");
    assert!(kept <= 1);

    let Ok(event) = GetFlowsResponse::decode(data) else {
        return;
    };
    if event.encode_to_vec() != data {
        return;
    }
    // A value protojson cannot print (an enum number this API does not define) has no JSON
    // line to compare with; the wire decoder keeps it as its number.
    let Ok(json) = serde_json::to_vec(&event) else {
        return;
    };
    let imported = decoder.decode(&json, 1);
    assert_eq!(wire.flows, imported.flows, "flows differ for {json:?}");
    assert_eq!(wire.lost_events, imported.lost_events, "lost events differ");
    assert_eq!(wire.other_events, imported.other_events);
    assert_eq!(
        wire.errors.is_empty(),
        imported.errors.is_empty(),
        "wire {:?} json {:?}",
        wire.errors,
        imported.errors
    );
});
