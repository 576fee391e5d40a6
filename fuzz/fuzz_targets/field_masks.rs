//! `GetFlowsRequest.field_mask` paths from any client of `flowsql serve`: refused with
//! "invalid fieldmask" or applied to a flow, and what is applied is a flow again whose masked
//! fields are the original's.
#![no_main]

use hubble_api::field_mask::FlowMask;
use hubble_api::flow::{Endpoint, Flow, Layer4, Tcp, TcpFlags};
use libfuzzer_sys::fuzz_target;

fn flow() -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp { seconds: 1_764_000_000, nanos: 7 }),
        uuid: "u".into(),
        verdict: 2,
        node_name: "prod/kind-worker".into(),
        source: Some(Endpoint {
            namespace: "shop".into(),
            pod_name: "api".into(),
            labels: vec!["k8s:app=api".into()],
            identity: 7,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(hubble_api::flow::layer4::Protocol::Tcp(Tcp {
                source_port: 1,
                destination_port: 80,
                flags: Some(TcpFlags { syn: true, ..Default::default() }),
            })),
        }),
        source_names: vec!["a.example".into()],
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let paths: Vec<&str> = text.lines().collect();
    match FlowMask::new(&paths) {
        Ok(Some(mask)) => {
            let original = flow();
            let masked = mask.apply(&original);
            // Masking twice changes nothing more.
            assert_eq!(mask.apply(&masked), masked);
            if paths.contains(&"time") {
                assert_eq!(masked.time, original.time);
            }
        }
        Ok(None) => assert!(paths.is_empty()),
        Err(error) => assert!(error.to_string().starts_with("invalid fieldmask")),
    }
});
