//! The live Hubble path: a GetFlowsResponse off the wire (prost), written as protojson the
//! way the recorder does, then decoded. Never a panic, and one event is exactly one outcome.
#![no_main]

use arrow::array::{Array, StructArray};
use flow_schema::hubble::HubbleDecoder;
use flow_schema::CaptureSource;
use hubble_api::observer::GetFlowsResponse;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = GetFlowsResponse::decode(data) else {
        return;
    };
    // A value the API definition cannot represent (an unknown enum number) is skipped by
    // the recorder, with a warning; that is an error here too, not a panic.
    let Ok(json) = serde_json::to_vec(&event) else {
        return;
    };
    assert!(!json.contains(&b'\n'), "protojson is one line");
    static DECODER: std::sync::OnceLock<HubbleDecoder> = std::sync::OnceLock::new();
    let decoder = DECODER
        .get_or_init(|| HubbleDecoder::new(CaptureSource::Hubble, Some("fuzz-node".into())));
    let decoded = decoder.decode(&json, 1);
    for batch in [&decoded.flows, &decoded.lost_events] {
        StructArray::from(batch.clone())
            .to_data()
            .validate_full()
            .expect("valid Arrow");
    }
    let outcomes = decoded.flows.num_rows()
        + decoded.lost_events.num_rows()
        + decoded.other_events
        + decoded.errors.len();
    assert_eq!(outcomes, 1, "{decoded:?}");
});
