//! The Hubble JSON line decoder (`flowrec import`, `--follow`, live Hubble after protojson).
//! Any buffer decodes without a panic into valid Arrow; and one arbitrary line between two
//! good flows is exactly one outcome (a flow, a lost event, another event, or one error naming
//! line 2; nothing for a blank line) while its neighbours decode as they do alone.
#![no_main]

use arrow::array::{Array, RecordBatch, StructArray};
use flow_schema::hubble::{Decoded, HubbleDecoder};
use flow_schema::CaptureSource;
use libfuzzer_sys::fuzz_target;

const BEFORE: &str = r#"{"flow":{"time":"2026-11-26T10:00:00.000000001Z","uuid":"a","verdict":"DROPPED","drop_reason_desc":"POLICY_DENIED","IP":{"source":"10.0.1.1","destination":"10.0.2.1","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40000,"destination_port":80,"flags":{"SYN":true}}},"source":{"namespace":"shop","pod_name":"api-gateway-7d9f","labels":["k8s:app=api-gateway"]},"destination":{"namespace":"shop","pod_name":"user-service-5c4b","labels":["k8s:app=user-service"]},"Type":"L3_L4","event_type":{"type":1,"sub_type":133},"traffic_direction":"EGRESS"},"node_name":"n1","time":"2026-11-26T10:00:00.000000001Z"}"#;
const AFTER: &str = r#"{"flow":{"time":"2026-11-26T10:00:01Z","uuid":"b","verdict":"FORWARDED","IP":{"source":"fd00::1","destination":"fd00::2","ipVersion":"IPv6"},"l4":{"UDP":{"source_port":53000,"destination_port":53}},"l7":{"type":"REQUEST","dns":{"query":"user-service.shop.svc.cluster.local."}},"Type":"L7","node_name":"n2"},"node_name":"n2"}"#;

fn valid(decoded: &Decoded) {
    for batch in [&decoded.flows, &decoded.lost_events] {
        StructArray::from(batch.clone())
            .to_data()
            .validate_full()
            .expect("the decoder's batches are valid Arrow");
    }
}

fn rows(batch: &RecordBatch, offset: usize) -> RecordBatch {
    batch.slice(offset, 1)
}

/// Built once: a decoder is stateless but for a size hint, and building it checks the schema.
struct Fixture {
    decoder: HubbleDecoder,
    before: RecordBatch,
    after: RecordBatch,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let decoder = HubbleDecoder::new(CaptureSource::Hubble, Some("fuzz-node".into()));
        let before = decoder.decode(BEFORE.as_bytes(), 1).flows;
        let after = decoder.decode(AFTER.as_bytes(), 1).flows;
        assert_eq!((before.num_rows(), after.num_rows()), (1, 1));
        Fixture {
            decoder,
            before,
            after,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Fixture {
        decoder,
        before,
        after,
    } = fixture();
    valid(&decoder.decode(data, 1));

    let line: Vec<u8> = data.iter().copied().filter(|&b| b != b'\n').collect();
    let mut buffer = Vec::with_capacity(line.len() + BEFORE.len() + AFTER.len() + 3);
    buffer.extend_from_slice(BEFORE.as_bytes());
    buffer.push(b'\n');
    buffer.extend_from_slice(&line);
    buffer.push(b'\n');
    buffer.extend_from_slice(AFTER.as_bytes());
    buffer.push(b'\n');
    let decoded = decoder.decode(&buffer, 1);
    valid(&decoded);
    let flows = decoded.flows.num_rows();
    assert!(flows >= 2, "the good neighbours are rows: {decoded:?}");
    assert!(decoded.errors.iter().all(|e| e.line == 2), "{:?}", decoded.errors);
    let outcomes =
        (flows - 2) + decoded.lost_events.num_rows() + decoded.other_events + decoded.errors.len();
    assert!(outcomes <= 1, "one line, one outcome: {decoded:?}");
    if outcomes == 0 {
        assert!(line.trim_ascii().is_empty(), "a non-blank line vanished: {line:?}");
    }
    assert_eq!(&rows(&decoded.flows, 0), before, "the line before is intact");
    assert_eq!(&rows(&decoded.flows, flows - 1), after, "the line after is intact");
});
