//! Hubble events as the Observer API sends them: generated flows (the live-recording
//! benchmarks) or the lines of Hubble JSON files (test data), as `GetFlowsResponse` messages.

use hubble_api::flow::Flow;
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::GetFlowsResponse;

/// A jsonpb envelope, or a bare Flow (wrapped as the envelope Hubble would send).
pub fn parse(line: &str) -> Result<GetFlowsResponse, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    let envelope = [
        "flow",
        "lost_events",
        "node_status",
        "agent_event",
        "debug_event",
    ]
    .iter()
    .any(|key| value.get(key).is_some());
    if envelope {
        return serde_json::from_value(value);
    }
    let flow: Flow = serde_json::from_value(value)?;
    Ok(GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    })
}

/// `count` generated flows ([`crate::generate`]: the mix every benchmark uses), as events.
pub fn generated(count: u64) -> Vec<GetFlowsResponse> {
    let mut lines = Vec::new();
    let start = "2026-11-26T10:00:00Z".parse().expect("a time");
    crate::generate(&mut lines, count, 400, start, 1, 7).expect("in memory");
    String::from_utf8(lines)
        .expect("generated UTF-8")
        .lines()
        .map(|line| parse(line).expect("generated lines parse"))
        .collect()
}
