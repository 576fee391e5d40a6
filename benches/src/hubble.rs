//! Hubble events as the Observer API sends them: generated flows (the live-recording
//! benchmarks) or the lines of Hubble JSON files (test data), as `GetFlowsResponse` messages.

use hubble_api::flow::Flow;
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::GetFlowsResponse;
use prost::Message;

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

/// The hours [`generated`] spreads its flows over, from a whole hour.
const GENERATED_HOURS: u32 = 1;

/// `count` generated flows ([`crate::generate`]: the mix every benchmark uses), as events.
pub fn generated(count: u64) -> Vec<GetFlowsResponse> {
    let mut lines = Vec::new();
    let start = "2026-11-26T10:00:00Z".parse().expect("a time");
    crate::generate(&mut lines, count, 400, start, GENERATED_HOURS, 7).expect("in memory");
    String::from_utf8(lines)
        .expect("generated UTF-8")
        .lines()
        .map(|line| parse(line).expect("generated lines parse"))
        .collect()
}

/// Generated flows without end: a pool of distinct flows, sent again and again, each round
/// shifted later by the span the pool covers. A benchmark of minutes at 100,000 flows/s needs
/// tens of millions of flows, and holding each one (decoded and encoded) took ~4 KiB per flow in
/// the server; a pooled event is re-encoded with its new time when sent (~1 KiB copied).
pub struct FlowCycle {
    pool: Vec<PooledFlow>,
    /// How much later each round is than the one before: the pool's time span.
    span_ns: i64,
    count: u64,
}

/// One generated event, split around its two timestamps so that a new time costs no decoding.
struct PooledFlow {
    time_ns: i64,
    node_name: String,
    /// The flow's fields after `time` (field 1), encoded.
    rest: Vec<u8>,
}

impl FlowCycle {
    /// `count` events cycling over `pool` generated flows (the same ones [`generated`] gives).
    pub fn new(count: u64, pool: u64) -> FlowCycle {
        let pool: Vec<PooledFlow> = generated(pool.min(count).max(1))
            .into_iter()
            .map(|event| {
                let Some(ResponseTypes::Flow(mut flow)) = event.response_types else {
                    unreachable!("the generator makes flows")
                };
                let time = flow.time.take().expect("generated flows have a time");
                assert_eq!(event.time, Some(time), "one time per generated event");
                PooledFlow {
                    time_ns: time.seconds * 1_000_000_000 + i64::from(time.nanos),
                    node_name: event.node_name,
                    rest: flow.encode_to_vec(),
                }
            })
            .collect();
        FlowCycle {
            pool,
            span_ns: i64::from(GENERATED_HOURS) * 3_600_000_000_000,
            count,
        }
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The time of event `index` (ns since the epoch).
    pub fn time_ns(&self, index: u64) -> i64 {
        let (round, at) = self.position(index);
        self.pool[at].time_ns + round * self.span_ns
    }

    /// Event `index` as a `GetFlowsResponse` on the wire: exactly what prost writes for the
    /// pooled event with its times set (fields in tag order: flow, node_name, time).
    pub fn encode(&self, index: u64) -> Vec<u8> {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
        let (round, at) = self.position(index);
        let flow = &self.pool[at];
        let ns = flow.time_ns + round * self.span_ns;
        let time = pbjson_types::Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        };
        let time_len = time.encoded_len();
        let flow_len =
            key_len(1) + encoded_len_varint(time_len as u64) + time_len + flow.rest.len();
        let mut out = Vec::with_capacity(flow_len + flow.node_name.len() + 2 * time_len + 16);
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(flow_len as u64, &mut out);
        prost::encoding::message::encode(1, &time, &mut out);
        out.extend_from_slice(&flow.rest);
        if !flow.node_name.is_empty() {
            prost::encoding::string::encode(1000, &flow.node_name, &mut out);
        }
        prost::encoding::message::encode(1001, &time, &mut out);
        out
    }

    /// (round, index in the pool) of event `index`.
    fn position(&self, index: u64) -> (i64, usize) {
        let pool = self.pool.len() as u64;
        ((index / pool) as i64, (index % pool) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of a cycle, re-encoded from the pool, is byte for byte what prost writes for
    /// that event decoded, and later rounds are the pool an hour later.
    #[test]
    fn a_cycle_sends_what_prost_would_encode_with_shifted_times() {
        let cycle = FlowCycle::new(25, 10);
        let originals = generated(10);
        let mut previous = i64::MIN;
        for index in 0..cycle.len() {
            let bytes = cycle.encode(index);
            let event = GetFlowsResponse::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(
                event.encode_to_vec(),
                bytes,
                "canonical encoding of event {index}"
            );
            let mut expected = originals[(index % 10) as usize].clone();
            let shift = (index / 10) as i64 * 3600 * i64::from(GENERATED_HOURS);
            let shifted = |t: &mut Option<pbjson_types::Timestamp>| {
                t.as_mut().expect("a time").seconds += shift;
            };
            shifted(&mut expected.time);
            if let Some(ResponseTypes::Flow(flow)) = &mut expected.response_types {
                shifted(&mut flow.time);
            }
            assert_eq!(event, expected, "event {index}");
            let time = cycle.time_ns(index);
            assert!(time > previous, "event {index} in time order");
            previous = time;
        }
    }
}
