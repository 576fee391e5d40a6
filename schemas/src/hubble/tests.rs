use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type};

use super::*;

fn decode(text: &str) -> Decoded {
    HubbleDecoder::new(CaptureSource::Import, None).decode(text.as_bytes(), 1)
}

/// The value of a string-like (utf8 or dictionary) column at `row`, for assertions.
fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let array = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no column {column}"));
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        arrow::datatypes::DataType::Dictionary(_, _) => {
            let dict = array.as_dictionary::<Int32Type>();
            let key = dict.keys().value(row) as usize;
            dict.values().as_string::<i32>().value(key).to_string()
        }
        _ => array.as_string::<i32>().value(row).to_string(),
    })
}

fn list(batch: &RecordBatch, column: &str, row: usize) -> Vec<String> {
    let array = batch.column_by_name(column).unwrap().as_list::<i32>();
    let values = array.value(row);
    values
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}

fn u32_at(batch: &RecordBatch, column: &str, row: usize) -> Option<u32> {
    let array = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<UInt32Type>();
    array.is_valid(row).then(|| array.value(row))
}

const DROPPED_ENVELOPE: &str = r#"{"flow":{"time":"2023-08-21T12:12:18.510175415Z","verdict":"DROPPED","IP":{"source":"10.244.1.60","destination":"10.244.1.5","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":44916,"destination_port":80,"flags":{"SYN":true}}},"source":{"namespace":"default","pod_name":"xwing"},"destination":{"namespace":"default","pod_name":"deathstar-7848d6c4d5-th9v2"},"node_name":"kind-kind/kind-worker","drop_reason_desc":"POLICY_DENIED"},"node_name":"kind-kind/kind-worker","time":"2023-08-21T12:12:18.510175415Z"}"#;

#[test]
fn envelope_flow_is_flattened() {
    let decoded = decode(DROPPED_ENVELOPE);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let flows = &decoded.flows;
    assert_eq!(flows.num_rows(), 1);
    let time = flows
        .column(0)
        .as_primitive::<TimestampNanosecondType>()
        .value(0);
    assert_eq!(time, 1_692_619_938_510_175_415);
    assert_eq!(text(flows, "verdict", 0).as_deref(), Some("DROPPED"));
    assert_eq!(
        text(flows, "drop_reason_desc", 0).as_deref(),
        Some("POLICY_DENIED")
    );
    assert_eq!(
        text(flows, "node_name", 0).as_deref(),
        Some("kind-kind/kind-worker")
    );
    assert_eq!(text(flows, "source_pod_name", 0).as_deref(), Some("xwing"));
    assert_eq!(
        text(flows, "destination_namespace", 0).as_deref(),
        Some("default")
    );
    assert_eq!(text(flows, "ip_source", 0).as_deref(), Some("10.244.1.60"));
    assert_eq!(text(flows, "ip_version", 0).as_deref(), Some("IPv4"));
    assert_eq!(text(flows, "l4_protocol", 0).as_deref(), Some("TCP"));
    assert_eq!(u32_at(flows, "destination_port", 0), Some(80));
    assert_eq!(list(flows, "tcp_flags", 0), vec!["SYN"]);
    assert_eq!(text(flows, "capture_source", 0).as_deref(), Some("import"));
    // Absent in the JSON: unknown, not false.
    assert!(flows.column_by_name("is_reply").unwrap().is_null(0));
    assert!(flows.column_by_name("icmp_type").unwrap().is_null(0));
}

#[test]
fn bare_flow_and_envelope_give_the_same_row() {
    let envelope = decode(DROPPED_ENVELOPE).flows;
    let value: serde_json::Value = serde_json::from_str(DROPPED_ENVELOPE).unwrap();
    let bare = decode(&value["flow"].to_string()).flows;
    assert_eq!(envelope, bare);
}

#[test]
fn enums_as_numbers_and_int64_as_strings() {
    let line = r#"{"flow":{"time":"2021-11-10T10:40:56.885984700Z","verdict":2,"drop_reason_desc":133,"Type":2,"traffic_direction":1,"trace_observation_point":101,"l7":{"type":2,"latency_ns":"1678100","http":{"code":200,"method":"GET","url":"http://ratings:9080/ratings/0"}},"event_type":{"type":129},"socket_cookie":"18446744073709551615","egress_denied_by":[{"name":"p","namespace":"ns","kind":"CiliumNetworkPolicy","revision":"7","labels":["a=b"]}]}}"#;
    let decoded = decode(line);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let flows = &decoded.flows;
    assert_eq!(text(flows, "verdict", 0).as_deref(), Some("DROPPED"));
    assert_eq!(
        text(flows, "drop_reason_desc", 0).as_deref(),
        Some("POLICY_DENIED")
    );
    assert_eq!(text(flows, "type", 0).as_deref(), Some("L7"));
    assert_eq!(
        text(flows, "traffic_direction", 0).as_deref(),
        Some("INGRESS")
    );
    assert_eq!(
        text(flows, "trace_observation_point", 0).as_deref(),
        Some("TO_ENDPOINT")
    );
    assert_eq!(text(flows, "l7_type", 0).as_deref(), Some("RESPONSE"));
    assert_eq!(text(flows, "l7_protocol", 0).as_deref(), Some("http"));
    let latency = flows
        .column_by_name("l7_latency_ns")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(latency.value(0), 1_678_100);
    let cookie = flows
        .column_by_name("socket_cookie")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(cookie.value(0), u64::MAX);
    // event_type present without sub_type: proto default 0.
    let subtype = flows
        .column_by_name("event_subtype")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(subtype.value(0), 0);
    let denied = flows
        .column_by_name("egress_denied_by")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    let policy = denied.as_struct();
    assert_eq!(
        policy
            .column_by_name("name")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "p"
    );
    let revision = policy
        .column_by_name("revision")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(revision.value(0), 7);
    // No l4 at all: no ports.
    assert!(flows.column_by_name("source_port").unwrap().is_null(0));
}

#[test]
fn zero_values_omitted_by_protojson_read_as_null_or_default() {
    let line = r#"{"flow":{"time":"2021-06-16T16:52:13Z","verdict":"FORWARDED","l4":{"UDP":{"destination_port":53}},"is_reply":false,"event_type":{"type":4},"source":{}}}"#;
    let flows = decode(line).flows;
    assert_eq!(u32_at(&flows, "source_port", 0), Some(0));
    assert_eq!(u32_at(&flows, "destination_port", 0), Some(53));
    assert!(flows.column_by_name("tcp_flags").unwrap().is_null(0));
    let is_reply = flows.column_by_name("is_reply").unwrap().as_boolean();
    assert!(is_reply.is_valid(0) && !is_reply.value(0));
    assert_eq!(text(&flows, "drop_reason_desc", 0), None);
    assert_eq!(text(&flows, "source_namespace", 0), None);
}

#[test]
fn top_level_scalar_zeros_spelled_out_read_like_omitted_ones() {
    // Not protojson (which omits zeros), but the same message: the row must be the one the
    // wire format gives, where a zero is never sent.
    let spelled = r#"{"flow":{"time":"2021-06-16T16:52:13Z","policy_match_type":0,"drop_reason":0,"proxy_port":0,"socket_cookie":"0","cgroup_id":0}}"#;
    let omitted = r#"{"flow":{"time":"2021-06-16T16:52:13Z"}}"#;
    let (spelled, omitted) = (decode(spelled).flows, decode(omitted).flows);
    for column in [
        "policy_match_type",
        "drop_reason",
        "proxy_port",
        "socket_cookie",
        "cgroup_id",
    ] {
        assert!(
            spelled.column_by_name(column).unwrap().is_null(0),
            "{column}"
        );
    }
    assert_eq!(spelled, omitted);
    let set = decode(r#"{"flow":{"time":"2021-06-16T16:52:13Z","policy_match_type":2}}"#).flows;
    assert_eq!(u32_at(&set, "policy_match_type", 0), Some(2));
}

#[test]
fn unknown_fields_are_tolerated() {
    let line = DROPPED_ENVELOPE
        .replacen(
            r#"{"flow":{"#,
            r#"{"future_field":{"x":[1,2]},"flow":{"brand_new":"v","new_object":{"a":[1,{"b":null}]},"#,
            1,
        )
        .replacen(r#""IP":{"source""#, r#""IP":{"future":{"deep":true},"source""#, 1);
    assert_ne!(line, DROPPED_ENVELOPE);
    let decoded = decode(&line);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert_eq!(decoded.flows, decode(DROPPED_ENVELOPE).flows);
}

#[test]
fn malformed_lines_are_reported_and_the_rest_is_kept() {
    let input = format!(
        "{DROPPED_ENVELOPE}\nnot json at all\n\n{{\"flow\":{{\"time\":\"2023-08-21T12:12:18Z\",\"verdict\":\"DROPPED\"\n{DROPPED_ENVELOPE}\n{{\"flow\":{{\"verdict\":\"DROPPED\"}}}}\n{{\"flow\":{{\"time\":\"yesterday\"}}}}\n{{\"flow\":{{\"time\":\"2023-08-21T12:12:18Z\",\"source\":\"oops\"}}}}\n"
    );
    let decoded = decode(&input);
    assert_eq!(decoded.flows.num_rows(), 2);
    let lines: Vec<u64> = decoded.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 4, 6, 7, 8], "{:?}", decoded.errors);
    assert!(
        decoded.errors[2].reason.contains("no time"),
        "{}",
        decoded.errors[2].reason
    );
    assert!(decoded.errors.iter().all(|e| !e.reason.is_empty()));
}

#[test]
fn lost_events_and_other_events_are_separated() {
    let input = concat!(
        r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"12","cpu":1},"node_name":"n1","time":"1970-01-01T00:00:04Z"}"#,
        "\n",
        r#"{"agent_event":{},"node_name":"my-node","time":"1970-01-01T00:00:02Z"}"#,
        "\n",
        r#"{"debug_event":{},"node_name":"my-node","time":"1970-01-01T00:00:03Z"}"#,
        "\n",
        r#"{"flow":{"time":"1970-01-01T00:00:01Z","node_name":"my-node"},"node_name":"my-node","time":"1970-01-01T00:00:01Z"}"#,
    );
    let decoded = decode(input);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert_eq!(decoded.flows.num_rows(), 1);
    assert_eq!(decoded.other_events, 2);
    let lost = &decoded.lost_events;
    assert_eq!(lost.num_rows(), 1);
    assert_eq!(
        text(lost, "source", 0).as_deref(),
        Some("HUBBLE_RING_BUFFER")
    );
    assert_eq!(text(lost, "node_name", 0).as_deref(), Some("n1"));
    let count = lost
        .column_by_name("num_events_lost")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(count.value(0), 12);
}

#[test]
fn default_node_name_fills_only_missing_names() {
    let decoder = HubbleDecoder::new(CaptureSource::Import, Some("fallback".into()));
    let input = format!(
        "{DROPPED_ENVELOPE}\n{{\"flow\":{{\"time\":\"2023-08-21T12:12:18Z\",\"verdict\":\"FORWARDED\"}}}}\n"
    );
    let flows = decoder.decode(input.as_bytes(), 1).flows;
    assert_eq!(
        text(&flows, "node_name", 0).as_deref(),
        Some("kind-kind/kind-worker")
    );
    assert_eq!(text(&flows, "node_name", 1).as_deref(), Some("fallback"));
}

#[test]
fn workloads_labels_and_l7_dns() {
    let line = r#"{"flow":{"time":"2026-11-24T09:00:00Z","verdict":"FORWARDED","source":{"namespace":"prod-app","pod_name":"api-gateway-7d9f-abcde","labels":["k8s:app=api-gateway"],"workloads":[{"name":"api-gateway","kind":"Deployment"}]},"l7":{"type":"REQUEST","dns":{"query":"user-service.prod-app.svc.cluster.local.","qtypes":["A"],"rcode":3}}}}"#;
    let flows = decode(line).flows;
    assert_eq!(
        text(&flows, "source_workload", 0).as_deref(),
        Some("api-gateway")
    );
    assert_eq!(
        text(&flows, "source_workload_kind", 0).as_deref(),
        Some("Deployment")
    );
    assert_eq!(
        list(&flows, "source_labels", 0),
        vec!["k8s:app=api-gateway"]
    );
    assert_eq!(text(&flows, "l7_protocol", 0).as_deref(), Some("dns"));
    assert_eq!(u32_at(&flows, "dns_rcode", 0), Some(3));
    assert_eq!(text(&flows, "destination_workload", 0), None);
}

#[test]
fn a_chunk_mixing_envelopes_and_bare_flows_keeps_both() {
    let value: serde_json::Value = serde_json::from_str(DROPPED_ENVELOPE).unwrap();
    let bare = value["flow"].to_string().replace("xwing", "tiefighter");
    let input = format!("{DROPPED_ENVELOPE}\n{bare}\n{DROPPED_ENVELOPE}\n");
    let decoded = decode(&input);
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let pods: Vec<Option<String>> = (0..3)
        .map(|row| text(&decoded.flows, "source_pod_name", row))
        .collect();
    assert_eq!(
        pods,
        vec![
            Some("xwing".into()),
            Some("tiefighter".into()),
            Some("xwing".into())
        ]
    );
}

/// A line that fails after it wrote lists, policies and headers leaves nothing in the batch: the
/// rows are exactly those of the good lines alone.
#[test]
fn a_line_failing_half_way_leaves_nothing_behind() {
    let good = r#"{"flow":{"time":"2026-11-24T09:00:00Z","verdict":"DROPPED","source":{"labels":["k8s:app=a"]},"egress_denied_by":[{"name":"p","labels":["x=y"]}],"l7":{"http":{"headers":[{"key":"k","value":"v"}]}},"l4":{"TCP":{"flags":{"SYN":true}}}}}"#;
    let bad_end = good.replacen(r#""verdict":"DROPPED","#, "", 1).replacen(
        r#"}}}}}"#,
        r#"}}},"is_reply":"maybe"}}"#,
        1,
    );
    let bad_inside = good.replacen(r#"["x=y"]"#, r#"["x=y", 5x]"#, 1);
    assert_ne!(bad_end, good);
    assert_ne!(bad_inside, good);
    let input = format!("{bad_end}\n{good}\n{bad_inside}\n{good}\n{bad_end}\n");
    let decoded = decode(&input);
    let lines: Vec<u64> = decoded.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3, 5], "{:?}", decoded.errors);
    let twice = decode(&format!("{good}\n{good}\n")).flows;
    assert_eq!(decoded.flows, twice);
    assert_eq!(list(&decoded.flows, "tcp_flags", 1), vec!["SYN"]);
}

#[test]
fn invalid_utf8_is_reported_with_its_column_and_the_line_skipped() {
    let mut input = DROPPED_ENVELOPE.as_bytes().to_vec();
    input.push(b'\n');
    // Appends the envelope with `from` replaced by `to`, whose \u{1} becomes `byte`; returns
    // that byte's offset in the line.
    let mut add_line = |from: &str, to: &str, byte: u8| {
        let line = DROPPED_ENVELOPE.replacen(from, to, 1);
        let at = line.find('\u{1}').unwrap();
        let mut line = line.into_bytes();
        line[at] = byte;
        input.extend_from_slice(&line);
        input.push(b'\n');
        at
    };
    let at = add_line("xwing", "xw\u{1}ng", 0xff);
    // Outside any string (after a key's colon), and inside a string that has an escape.
    let outside_at = add_line("\"verdict\":", "\"verdict\":\u{1}", 0xc3);
    let escaped_at = add_line("xwing", "x\\\"w\u{1}ng", 0x80);
    let decoded = HubbleDecoder::new(CaptureSource::Import, None).decode(&input, 1);
    assert_eq!(decoded.flows.num_rows(), 1);
    let errors: Vec<_> = decoded
        .errors
        .iter()
        .map(|e| (e.line, e.reason.clone()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (
                2,
                format!("flow.source.pod_name: invalid UTF-8 at column {}", at + 1)
            ),
            (
                3,
                format!(
                    "flow.verdict: expected a string, found byte 0xc3 at column {}",
                    outside_at + 1
                )
            ),
            (
                4,
                format!(
                    "flow.source.pod_name: invalid UTF-8 at column {}",
                    escaped_at + 1
                )
            ),
        ]
    );
}

/// Flows that set what the bundled captures do not: every message, list and enum of the
/// schema, unknown enum numbers, negative int32s, empty strings in lists.
const EVERY_FIELD: &str = r#"{"flow":{"time":"2026-11-24T09:00:00.000000001Z","uuid":"every-1","verdict":"DROPPED","drop_reason":133,"drop_reason_desc":"POLICY_DENIED","auth_type":"SPIRE","Type":"L7","node_name":"prod/node-a","node_labels":["kubernetes.io/hostname=node-a",""],"traffic_direction":"EGRESS","is_reply":false,"reply":true,"trace_observation_point":"TO_ENDPOINT","trace_reason":"ESTABLISHED","policy_match_type":4,"sock_xlate_point":"SOCK_XLATE_POINT_PRE_DIRECTION_FWD","socket_cookie":"18446744073709551615","cgroup_id":"1234","proxy_port":15001,"Summary":"s","ethernet":{"source":"aa:bb","destination":"cc:dd"},"IP":{"source":"10.0.0.1","destination":"10.0.0.2","source_xlated":"1.2.3.4","ipVersion":"IPv4","encrypted":true},"l4":{"TCP":{"source_port":1,"destination_port":80,"flags":{"SYN":true,"ACK":true,"NS":true}}},"source":{"ID":7,"identity":8,"cluster_name":"prod","namespace":"a","pod_name":"p","labels":["k8s:app=a","reserved:world"],"workloads":[{"name":"w","kind":"Deployment"}]},"destination":{"namespace":"b"},"source_service":{"name":"svc","namespace":"a"},"destination_service":{"namespace":"b"},"source_names":["a.example.com"],"destination_names":["b.example.com","c.example.com"],"l7":{"type":"RESPONSE","latency_ns":"5","http":{"code":503,"method":"GET","url":"http://x/y?z=1","protocol":"HTTP/1.1","headers":[{"key":"a","value":"b"},{"key":"c"}]}},"event_type":{"type":129,"sub_type":-3},"interface":{"index":3,"name":"eth0"},"trace_context":{"parent":{"trace_id":"abc"}},"ip_trace_id":{"trace_id":"99"},"file":{"name":"bpf_lxc.c","line":1234},"emitter":{"name":"Hubble","version":"1.19.4"},"tunnel":{"protocol":"VXLAN","IP":{"source":"192.168.0.1","destination":"192.168.0.2"},"vni":42},"aggregate":{"ingress_flow_count":1,"egress_flow_count":2},"egress_allowed_by":[{"name":"allow","namespace":"a","labels":["k8s:io.cilium.k8s.policy.name=allow"],"revision":"7","kind":"CiliumNetworkPolicy"}],"ingress_allowed_by":[{"name":"x"},{"kind":"NetworkPolicy"}],"egress_denied_by":[{"name":"deny"}],"ingress_denied_by":[{"revision":"1"}],"policy_log":["a","b"]},"node_name":"prod/node-a","time":"2026-11-24T09:00:00.000000001Z"}
{"flow":{"time":"1969-12-31T23:59:59.5Z","uuid":"every-2","verdict":42,"trace_observation_point":77,"l4":{"ICMPv6":{"type":128,"code":1}},"source":{},"destination":{},"l7":{"type":"REQUEST","dns":{"query":"x.example.com.","ips":["1.1.1.1","::1"],"ttl":30,"cnames":["y"],"observation_source":"proxy","rcode":3,"qtypes":["A"],"rrtypes":["AAAA"]}},"is_reply":true}}
{"flow":{"time":"2026-11-24T09:00:03Z","uuid":"every-3","l4":{"SCTP":{"destination_port":9}},"l7":{"kafka":{"error_code":-1,"api_version":2,"api_key":"produce","correlation_id":-7,"topic":"t"}},"tunnel":{"vni":1}}}
{"flow":{"time":"2026-11-24T09:00:04Z","uuid":"every-4","l4":{"VRRP":{}},"l7":{"latency_ns":"1"},"trace_context":{"parent":{}}}}
{"flow":{"time":"2026-11-24T09:00:05Z","uuid":"every-5","l4":{"IGMP":{}},"event_type":{"sub_type":2}}}
{"flow":{"time":"2026-11-24T09:00:06Z","uuid":"every-6","l4":{"UDP":{}},"l4_ignored":1,"IP":{"ipVersion":"IPv6"}}}
{"flow":{"time":"2026-11-24T09:00:07Z","uuid":"every-7","l4":{"ICMPv4":{"code":3}},"l4_protocol_unused":true}}"#;

/// Every bundled capture, and [`EVERY_FIELD`].
fn bundled_lines() -> String {
    use std::io::Read;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-captures");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("hubble-samples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.push(root.join("typo-policy-incident.jsonl.gz"));
    let mut text = String::new();
    for file in files {
        let raw = std::fs::File::open(&file).unwrap();
        if file.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(raw)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            std::io::BufReader::new(raw)
                .read_to_string(&mut text)
                .unwrap();
        }
        text.push('\n');
    }
    text.push_str(EVERY_FIELD);
    text.push('\n');
    text
}

fn responses_of(batch: &RecordBatch) -> Vec<Vec<u8>> {
    let rows = FlowRows::new(batch).unwrap();
    assert_eq!(rows.len(), batch.num_rows());
    (0..rows.len())
        .map(|row| {
            let mut response = Vec::new();
            rows.response(row, &mut response);
            response
        })
        .collect()
}

#[test]
fn rows_written_as_protobuf_read_back_as_the_same_rows() {
    let decoder = HubbleDecoder::new(CaptureSource::Hubble, None);
    let from_json = decoder.decode(bundled_lines().as_bytes(), 1);
    assert!(from_json.errors.is_empty(), "{:?}", from_json.errors);
    assert!(
        from_json.flows.num_rows() > 10_000,
        "the captures are there"
    );
    let responses = responses_of(&from_json.flows);
    let from_wire = decoder.decode_responses(responses.iter().map(Vec::as_slice), |_, _| true);
    assert!(from_wire.errors.is_empty(), "{:?}", from_wire.errors);
    assert_eq!(from_wire.flows.num_rows(), from_json.flows.num_rows());
    for (index, field) in from_json.flows.schema().fields().iter().enumerate() {
        assert_eq!(
            from_wire.flows.column(index).as_ref(),
            from_json.flows.column(index).as_ref(),
            "column {}",
            field.name()
        );
    }
    // The hand-made flows really set what they are there for.
    let every = from_json.flows.num_rows() - 7;
    assert_eq!(
        text(&from_json.flows, "verdict", every + 1).as_deref(),
        Some("42")
    );
    assert_eq!(
        text(&from_json.flows, "l4_protocol", every + 3).as_deref(),
        Some("VRRP")
    );
    assert_eq!(
        text(&from_json.flows, "tunnel_protocol", every).as_deref(),
        Some("VXLAN")
    );
}

#[test]
fn a_flow_is_written_the_same_from_every_string_encoding() {
    use arrow::compute::cast;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let decoded = decode(&bundled_lines());
    let batch = decoded.flows;
    // As a scan gives them: strings and dictionaries as views, lists of views.
    let (fields, columns): (Vec<Field>, Vec<arrow::array::ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let view = match field.data_type() {
                DataType::Utf8 | DataType::Dictionary(_, _) => Some(DataType::Utf8View),
                DataType::List(item) if item.data_type() == &DataType::Utf8 => Some(
                    DataType::List(Arc::new(Field::new(item.name(), DataType::Utf8View, true))),
                ),
                _ => None,
            };
            match view {
                Some(view) => (
                    field.as_ref().clone().with_data_type(view.clone()),
                    cast(column, &view).unwrap(),
                ),
                None => (field.as_ref().clone(), Arc::clone(column)),
            }
        })
        .unzip();
    let views = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    assert_ne!(views.schema(), batch.schema());
    assert_eq!(responses_of(&views), responses_of(&batch));
}

#[test]
fn a_masked_flow_takes_its_envelope_from_what_is_left() {
    let decoded = decode(DROPPED_ENVELOPE);
    let rows = FlowRows::new(&decoded.flows).unwrap();
    let (mut flow, mut whole) = (Vec::new(), Vec::new());
    rows.flow(0, &mut flow);
    rows.response(0, &mut whole);
    let mut wrapped = Vec::new();
    response_of_flow(&flow, &mut wrapped);
    assert_eq!(wrapped, whole);
    // Without its time and node name (a mask that keeps neither), the envelope has neither:
    // a flow of only its uuid (field 34).
    let flow = [0x92, 0x02, 1, b'u'];
    let mut wrapped = Vec::new();
    response_of_flow(&flow, &mut wrapped);
    assert_eq!(
        wrapped.len(),
        flow.len() + 2,
        "only the flow field's tag and length"
    );
}

#[test]
fn a_masked_flow_read_from_only_the_columns_its_mask_needs_is_the_same() {
    use hubble_api::field_mask::FlowMask;
    let batch = decode(&bundled_lines()).flows;
    let only = |columns: &[&str]| {
        let indices: Vec<usize> = columns
            .iter()
            .map(|c| batch.schema().index_of(c).unwrap())
            .collect();
        batch.project(&indices).unwrap()
    };
    let flows = |batch: &RecordBatch| {
        let rows = FlowRows::new(batch).unwrap();
        (0..rows.len())
            .map(|row| {
                let mut flow = Vec::new();
                rows.flow(row, &mut flow);
                flow
            })
            .collect::<Vec<_>>()
    };
    let whole = flows(&batch);
    // Every column written somewhere is named: reading all the named ones changes nothing.
    let named = FlowRows::columns_for(|_| true);
    assert_eq!(
        named.len(),
        super::flow::F::ALL.len() - 1,
        "all Hubble fills but capture_source"
    );
    assert_eq!(flows(&only(&named)), whole);

    // Each field alone (top level, an endpoint's, an endpoint whole, a message in part, fields
    // no column holds) and the CLI's compact mask.
    let mut masks: Vec<Vec<&str>> = super::flow::F::ALL
        .iter()
        .filter_map(|column| column.field())
        .map(|field| vec![field])
        .collect();
    masks.dedup();
    for extra in [
        &["source"][..],
        &["destination"],
        &["l4.TCP"],
        &["l7.http", "tunnel.IP"],
        &["debug_capture_point", "extensions"],
        &hubble_api::field_mask::CLI_DEFAULT_MASK,
    ] {
        masks.push(extra.to_vec());
    }
    for paths in masks {
        let mask = FlowMask::new(&paths).unwrap().unwrap();
        let columns = FlowRows::columns_for(|field| mask.touches(field));
        assert!(columns.len() < named.len(), "{paths:?} reads {columns:?}");
        let masked = |flows: &[Vec<u8>]| {
            flows
                .iter()
                .map(|flow| {
                    let mut out = Vec::new();
                    mask.apply_encoded(flow, &mut out);
                    out
                })
                .collect::<Vec<_>>()
        };
        let (narrow, wide) = (masked(&flows(&only(&columns))), masked(&whole));
        let differing = narrow.iter().zip(&wide).filter(|(n, w)| n != w).count();
        assert_eq!(differing, 0, "{paths:?} reading {columns:?}: rows differ");
    }
}
