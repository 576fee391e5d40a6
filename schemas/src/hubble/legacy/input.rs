//! The nested Arrow schema of a Hubble JSON line, a mirror of `flow.proto` / `observer.proto`
//! (cilium v1.19.4) with the field names protojson writes (`UseProtoNames`: `IP`, `Type`,
//! `Summary`, `ID`, `TCP`, `ipVersion` verbatim).
//!
//! arrow-json decodes lines straight into this schema (fields not listed here are ignored, which is
//! how unknown fields from newer Cilium releases are tolerated); `flatten` then maps it onto the
//! flat flow schema. Enums are declared as strings: with primitive coercion a number arrives as its
//! decimal string and is named later, so both spellings work. 64-bit integers are declared as
//! integers: arrow-json parses the JSON strings protojson writes for them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use crate::schema::{http_header_fields, list_of, list_utf8, policy_fields, timestamp_ns, utf8};

fn f(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, true)
}

fn object(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

fn ports() -> Vec<Field> {
    vec![
        f("source_port", DataType::UInt32),
        f("destination_port", DataType::UInt32),
    ]
}

fn icmp() -> DataType {
    object(vec![
        f("type", DataType::UInt32),
        f("code", DataType::UInt32),
    ])
}

/// `TCPFlags` keys, in the order Hubble declares them; also the order of `tcp_flags` lists.
pub const TCP_FLAG_NAMES: [&str; 9] =
    ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

fn endpoint() -> DataType {
    object(vec![
        f("ID", DataType::UInt32),
        f("identity", DataType::UInt32),
        f("cluster_name", utf8()),
        f("namespace", utf8()),
        f("labels", list_utf8()),
        f("pod_name", utf8()),
        f(
            "workloads",
            list_of(object(vec![f("name", utf8()), f("kind", utf8())])),
        ),
    ])
}

fn service() -> DataType {
    object(vec![f("name", utf8()), f("namespace", utf8())])
}

fn ip() -> DataType {
    object(vec![
        f("source", utf8()),
        f("source_xlated", utf8()),
        f("destination", utf8()),
        f("ipVersion", utf8()),
        f("encrypted", DataType::Boolean),
    ])
}

fn layer4() -> DataType {
    let tcp_flags = object(
        TCP_FLAG_NAMES
            .iter()
            .map(|n| f(n, DataType::Boolean))
            .collect(),
    );
    let mut tcp = ports();
    tcp.push(f("flags", tcp_flags));
    object(vec![
        f("TCP", object(tcp)),
        f("UDP", object(ports())),
        f("ICMPv4", icmp()),
        f("ICMPv6", icmp()),
        f("SCTP", object(ports())),
        f(
            "VRRP",
            object(vec![
                f("type", DataType::UInt32),
                f("vrid", DataType::UInt32),
                f("priority", DataType::UInt32),
            ]),
        ),
        f(
            "IGMP",
            object(vec![
                f("type", DataType::UInt32),
                f("group_address", utf8()),
            ]),
        ),
    ])
}

fn layer7() -> DataType {
    object(vec![
        f("type", utf8()),
        f("latency_ns", DataType::UInt64),
        f(
            "dns",
            object(vec![
                f("query", utf8()),
                f("ips", list_utf8()),
                f("ttl", DataType::UInt32),
                f("cnames", list_utf8()),
                f("observation_source", utf8()),
                f("rcode", DataType::UInt32),
                f("qtypes", list_utf8()),
                f("rrtypes", list_utf8()),
            ]),
        ),
        f(
            "http",
            object(vec![
                f("code", DataType::UInt32),
                f("method", utf8()),
                f("url", utf8()),
                f("protocol", utf8()),
                f("headers", list_of(DataType::Struct(http_header_fields()))),
            ]),
        ),
        f(
            "kafka",
            object(vec![
                f("error_code", DataType::Int32),
                f("api_version", DataType::Int32),
                f("api_key", utf8()),
                f("correlation_id", DataType::Int32),
                f("topic", utf8()),
            ]),
        ),
    ])
}

/// Fields of `message Flow`.
fn flow_fields() -> Vec<Field> {
    let policies = list_of(DataType::Struct(policy_fields()));
    vec![
        f("time", timestamp_ns()),
        f("uuid", utf8()),
        f(
            "emitter",
            object(vec![f("name", utf8()), f("version", utf8())]),
        ),
        f("verdict", utf8()),
        f("drop_reason", DataType::UInt32),
        f("auth_type", utf8()),
        f(
            "ethernet",
            object(vec![f("source", utf8()), f("destination", utf8())]),
        ),
        f("IP", ip()),
        f("l4", layer4()),
        f(
            "tunnel",
            object(vec![
                f("protocol", utf8()),
                f("IP", ip()),
                f("vni", DataType::UInt32),
            ]),
        ),
        f("source", endpoint()),
        f("destination", endpoint()),
        f("Type", utf8()),
        f("node_name", utf8()),
        f("node_labels", list_utf8()),
        f("source_names", list_utf8()),
        f("destination_names", list_utf8()),
        f("l7", layer7()),
        f("reply", DataType::Boolean),
        f(
            "event_type",
            object(vec![
                f("type", DataType::Int32),
                f("sub_type", DataType::Int32),
            ]),
        ),
        f("source_service", service()),
        f("destination_service", service()),
        f("traffic_direction", utf8()),
        f("policy_match_type", DataType::UInt32),
        f("trace_observation_point", utf8()),
        f("trace_reason", utf8()),
        f(
            "file",
            object(vec![f("name", utf8()), f("line", DataType::UInt32)]),
        ),
        f(
            "ip_trace_id",
            object(vec![
                f("trace_id", DataType::UInt64),
                f("ip_option_type", DataType::UInt32),
            ]),
        ),
        f("drop_reason_desc", utf8()),
        f("is_reply", DataType::Boolean),
        f(
            "interface",
            object(vec![f("index", DataType::UInt32), f("name", utf8())]),
        ),
        f("proxy_port", DataType::UInt32),
        f(
            "trace_context",
            object(vec![f("parent", object(vec![f("trace_id", utf8())]))]),
        ),
        f("sock_xlate_point", utf8()),
        f("socket_cookie", DataType::UInt64),
        f("cgroup_id", DataType::UInt64),
        f("Summary", utf8()),
        f("egress_allowed_by", policies.clone()),
        f("ingress_allowed_by", policies.clone()),
        f("egress_denied_by", policies.clone()),
        f("ingress_denied_by", policies),
        f("policy_log", list_utf8()),
        f(
            "aggregate",
            object(vec![
                f("ingress_flow_count", DataType::UInt32),
                f("egress_flow_count", DataType::UInt32),
                f("unknown_direction_flow_count", DataType::UInt32),
            ]),
        ),
    ]
}

fn lost_event() -> DataType {
    object(vec![
        f("source", utf8()),
        f("num_events_lost", DataType::UInt64),
        f("cpu", DataType::Int32),
        f("first", timestamp_ns()),
        f("last", timestamp_ns()),
    ])
}

/// Schema of one JSON line: the `GetFlowsResponse`/`ExportEvent` envelope
/// (`{"flow":…,"node_name":…,"time":…}`) and, at the same level, the fields of a bare `Flow`
/// (the legacy `hubble observe -o json` output). `node_name` and `time` mean the same in both.
pub fn line_schema() -> SchemaRef {
    let mut fields = flow_fields();
    fields.push(f("flow", object(flow_fields())));
    fields.push(f("lost_events", lost_event()));
    Arc::new(Schema::new(fields))
}

/// Schema of envelope lines only (what the exporter and `-o jsonpb` write): half the decoders of
/// [`line_schema`], for chunks where every line is an envelope.
pub fn envelope_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        f("flow", object(flow_fields())),
        f("lost_events", lost_event()),
        f("node_name", utf8()),
        f("time", timestamp_ns()),
    ]))
}

/// Opening bytes of an envelope line: protojson writes the `oneof` (field 1..5) before
/// `node_name` (1000) and `time` (1001); a bare Flow starts with its own fields.
pub const ENVELOPE_OPENINGS: [&[u8]; 5] = [
    b"{\"flow\":",
    b"{\"lost_events\":",
    b"{\"agent_event\":",
    b"{\"debug_event\":",
    b"{\"node_status\":",
];
