//! Maps decoded Hubble lines (nested, see `input`) onto the flat flow and lost-event schemas.
//!
//! Works column by column on whole arrays, never row by row through serde: a nested struct column
//! becomes a flat column by applying its ancestors' validity, so "l4.TCP.source_port" is NULL
//! exactly when the flow has no TCP header.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    make_array, new_null_array, Array, ArrayRef, AsArray, BooleanArray, DictionaryArray,
    Int32Array, ListBuilder, RecordBatch, Scalar, StringArray, StringBuilder,
    StringDictionaryBuilder, StructArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::{boolean, zip::zip};
use arrow::compute::{cast, is_not_null, is_null};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use arrow::error::ArrowError;

use super::enums::{self, EnumNames};
use super::input::TCP_FLAG_NAMES;
use crate::schema::{dict, flow_schema, lost_events_schema, CaptureSource};

/// A struct column seen through the validity of all its ancestors.
#[derive(Clone)]
pub(crate) struct View {
    array: StructArray,
    /// Validity of this struct and every ancestor (None: all valid).
    nulls: Option<NullBuffer>,
}

impl View {
    pub fn root(array: StructArray) -> Self {
        let nulls = array.nulls().cloned();
        View { array, nulls }
    }

    fn column(&self, name: &str) -> &ArrayRef {
        self.array
            .column_by_name(name)
            .unwrap_or_else(|| panic!("field {name} is declared in the Hubble line schema"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.array.column_by_name(name).is_some()
    }

    pub fn child(&self, name: &str) -> View {
        let child = self.column(name).as_struct().clone();
        let nulls = NullBuffer::union(self.nulls.as_ref(), child.nulls());
        View {
            array: child,
            nulls,
        }
    }

    /// A leaf column, NULL wherever it or an ancestor is absent.
    pub fn leaf(&self, name: &str) -> ArrayRef {
        let column = self.column(name);
        match NullBuffer::union(self.nulls.as_ref(), column.nulls()) {
            None => column.clone(),
            Some(nulls) if Some(&nulls) == column.nulls() => column.clone(),
            Some(nulls) => {
                let data = column.to_data().into_builder().nulls(Some(nulls));
                // Only the validity changes, so the data stays valid.
                make_array(data.build().expect("same data with a narrower validity"))
            }
        }
    }

    /// Rows where this struct (and every ancestor) is present.
    pub fn present(&self) -> BooleanArray {
        match &self.nulls {
            None => BooleanArray::from(vec![true; self.array.len()]),
            Some(nulls) => BooleanArray::new(nulls.inner().clone(), None),
        }
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }
}

/// `a` where it is set, else `b`.
pub(crate) fn coalesce(a: &ArrayRef, b: &ArrayRef) -> ArrayRef {
    let mask = is_not_null(a.as_ref()).expect("is_not_null never fails");
    zip(&mask, a, b).expect("same types")
}

fn coalesce_all(arrays: &[ArrayRef]) -> ArrayRef {
    let mut result = arrays[0].clone();
    for next in &arrays[1..] {
        result = coalesce(&result, next);
    }
    result
}

/// Proto3 default: a number omitted inside a present message is 0, not unknown.
fn zero_where_present(leaf: ArrayRef, present: &BooleanArray) -> ArrayRef {
    let missing = is_null(leaf.as_ref()).expect("is_null never fails");
    let fill = boolean::and(&missing, present).expect("same length");
    let zero: ArrayRef = match leaf.data_type() {
        DataType::UInt32 => Arc::new(UInt32Array::from(vec![0u32])),
        DataType::Int32 => Arc::new(Int32Array::from(vec![0i32])),
        other => unreachable!("zero default for {other}"),
    };
    zip(&fill, &Scalar::new(zero), &leaf).expect("same types")
}

fn or_all(arrays: &[BooleanArray]) -> BooleanArray {
    let mut result = arrays[0].clone();
    for next in &arrays[1..] {
        result = boolean::or(&result, next).expect("same length");
    }
    result
}

/// Utf8 -> dictionary of enum names (numbers named, zero value NULL). Works on the distinct
/// values only, then remaps the keys.
pub(crate) fn enum_column(raw: &ArrayRef, names: &EnumNames) -> ArrayRef {
    let dictionary = cast(raw, &dict()).expect("utf8 casts to a dictionary");
    let dictionary = dictionary.as_dictionary::<Int32Type>();
    let values = dictionary.values().as_string::<i32>();
    let mut new_values = StringBuilder::new();
    let mut index_of: HashMap<String, i32> = HashMap::new();
    let remap: Vec<Option<i32>> = values
        .iter()
        .map(|value| {
            let name = value.and_then(|v| names.normalize(v))?;
            let next = index_of.len() as i32;
            Some(
                *index_of
                    .entry(name.into_owned())
                    .or_insert_with_key(|name| {
                        new_values.append_value(name);
                        next
                    }),
            )
        })
        .collect();
    let keys: Int32Array = dictionary
        .keys()
        .iter()
        .map(|key| key.and_then(|k| remap[k as usize]))
        .collect();
    Arc::new(DictionaryArray::new(keys, Arc::new(new_values.finish())))
}

fn dict_column(raw: &ArrayRef) -> ArrayRef {
    cast(raw, &dict()).expect("utf8 casts to a dictionary")
}

/// A dictionary column holding one value on every row.
pub(crate) fn constant_dict(value: &str, rows: usize) -> ArrayRef {
    let keys = Int32Array::from(vec![0; rows]);
    Arc::new(DictionaryArray::new(
        keys,
        Arc::new(StringArray::from(vec![value])),
    ))
}

/// First element's `field` of a `list<struct>` column (Hubble's repeated `workloads`).
fn first_in_list(list: &ArrayRef, field: &str) -> ArrayRef {
    let list = list.as_list::<i32>();
    let values = list.values().as_struct();
    let strings = values
        .column_by_name(field)
        .expect("declared field")
        .as_string::<i32>();
    let first: StringArray = (0..list.len())
        .map(|row| {
            if list.is_null(row) || list.value_length(row) == 0 {
                return None;
            }
            let index = list.value_offsets()[row] as usize;
            strings.is_valid(index).then(|| strings.value(index))
        })
        .collect();
    Arc::new(first)
}

fn tcp_flags(flags: &View, tcp_present: &BooleanArray) -> ArrayRef {
    let columns: Vec<BooleanArray> = TCP_FLAG_NAMES
        .iter()
        .map(|name| flags.leaf(name).as_boolean().clone())
        .collect();
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in 0..flags.len() {
        if !tcp_present.value(row) {
            builder.append_null();
            continue;
        }
        for (name, column) in TCP_FLAG_NAMES.iter().zip(&columns) {
            if column.is_valid(row) && column.value(row) {
                builder.values().append_value(name);
            }
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// Name of the first present alternative per row (a proto `oneof`).
fn oneof_name(alternatives: &[(&str, BooleanArray)], rows: usize) -> ArrayRef {
    let mut builder = StringDictionaryBuilder::<Int32Type>::new();
    for row in 0..rows {
        match alternatives.iter().find(|(_, present)| present.value(row)) {
            Some((name, _)) => builder.append_value(name),
            None => builder.append_null(),
        }
    }
    Arc::new(builder.finish())
}

/// Flattens `Flow` structs (already merged from envelope and bare lines) into the flow schema.
/// `time` and `node_name` are the resolved per-row values (with envelope/default fallbacks).
pub(crate) fn flows(
    flow: &View,
    time: ArrayRef,
    node_name: ArrayRef,
    source: CaptureSource,
) -> Result<RecordBatch, ArrowError> {
    let rows = flow.len();
    let schema: SchemaRef = flow_schema();
    let ip = flow.child("IP");
    let l4 = flow.child("l4");
    let l4_kinds = ["TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", "VRRP", "IGMP"];
    let l4_present: Vec<(&str, BooleanArray)> = l4_kinds
        .iter()
        .map(|kind| (*kind, l4.child(kind).present()))
        .collect();
    let with_ports = [l4.child("TCP"), l4.child("UDP"), l4.child("SCTP")];
    let ports_present = or_all(&[
        with_ports[0].present(),
        with_ports[1].present(),
        with_ports[2].present(),
    ]);
    let icmp = [l4.child("ICMPv4"), l4.child("ICMPv6")];
    let icmp_present = boolean::or(&icmp[0].present(), &icmp[1].present())?;
    let port = |name: &str| {
        let leaves: Vec<ArrayRef> = with_ports.iter().map(|v| v.leaf(name)).collect();
        zero_where_present(coalesce_all(&leaves), &ports_present)
    };
    let icmp_field = |name: &str| {
        zero_where_present(
            coalesce(&icmp[0].leaf(name), &icmp[1].leaf(name)),
            &icmp_present,
        )
    };
    let event_type = flow.child("event_type");
    let l7 = flow.child("l7");
    let http = l7.child("http");
    let dns = l7.child("dns");
    let kafka = l7.child("kafka");
    let tunnel = flow.child("tunnel");
    let aggregate = flow.child("aggregate");
    let emitter = flow.child("emitter");

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let column: ArrayRef = match name {
            "time" => time.clone(),
            "uuid" => flow.leaf("uuid"),
            "capture_source" => constant_dict(source.as_str(), rows),
            "node_name" => dict_column(&node_name),
            "node_labels" => flow.leaf("node_labels"),
            "verdict" => enum_column(&flow.leaf("verdict"), &enums::VERDICT),
            "drop_reason" => flow.leaf("drop_reason"),
            "drop_reason_desc" => enum_column(&flow.leaf("drop_reason_desc"), &enums::DROP_REASON),
            "auth_type" => enum_column(&flow.leaf("auth_type"), &enums::AUTH_TYPE),
            "type" => enum_column(&flow.leaf("Type"), &enums::FLOW_TYPE),
            "event_type" => event_type.leaf("type"),
            "event_subtype" => {
                zero_where_present(event_type.leaf("sub_type"), &event_type.present())
            }
            "traffic_direction" => {
                enum_column(&flow.leaf("traffic_direction"), &enums::TRAFFIC_DIRECTION)
            }
            "is_reply" => flow.leaf("is_reply"),
            "reply" => flow.leaf("reply"),
            "trace_observation_point" => enum_column(
                &flow.leaf("trace_observation_point"),
                &enums::TRACE_OBSERVATION_POINT,
            ),
            "trace_reason" => enum_column(&flow.leaf("trace_reason"), &enums::TRACE_REASON),
            "policy_match_type" => flow.leaf("policy_match_type"),
            "ethernet_source" => flow.child("ethernet").leaf("source"),
            "ethernet_destination" => flow.child("ethernet").leaf("destination"),
            "ip_source" => ip.leaf("source"),
            "ip_destination" => ip.leaf("destination"),
            "ip_source_xlated" => ip.leaf("source_xlated"),
            "ip_version" => enum_column(&ip.leaf("ipVersion"), &enums::IP_VERSION),
            "ip_encrypted" => ip.leaf("encrypted"),
            "l4_protocol" => oneof_name(&l4_present, rows),
            "source_port" => port("source_port"),
            "destination_port" => port("destination_port"),
            "tcp_flags" => tcp_flags(&with_ports[0].child("flags"), &with_ports[0].present()),
            "icmp_type" => icmp_field("type"),
            "icmp_code" => icmp_field("code"),
            "l7_type" => enum_column(&l7.leaf("type"), &enums::L7_FLOW_TYPE),
            "l7_protocol" => oneof_name(
                &[
                    ("http", http.present()),
                    ("dns", dns.present()),
                    ("kafka", kafka.present()),
                ],
                rows,
            ),
            "l7_latency_ns" => l7.leaf("latency_ns"),
            "http_code" => http.leaf("code"),
            "http_method" => dict_column(&http.leaf("method")),
            "http_url" => http.leaf("url"),
            "http_protocol" => dict_column(&http.leaf("protocol")),
            "http_headers" => http.leaf("headers"),
            "dns_query" => dns.leaf("query"),
            "dns_ips" => dns.leaf("ips"),
            "dns_ttl" => dns.leaf("ttl"),
            "dns_cnames" => dns.leaf("cnames"),
            "dns_observation_source" => dict_column(&dns.leaf("observation_source")),
            "dns_rcode" => dns.leaf("rcode"),
            "dns_qtypes" => dns.leaf("qtypes"),
            "dns_rrtypes" => dns.leaf("rrtypes"),
            "kafka_error_code" => kafka.leaf("error_code"),
            "kafka_api_version" => kafka.leaf("api_version"),
            "kafka_api_key" => dict_column(&kafka.leaf("api_key")),
            "kafka_correlation_id" => kafka.leaf("correlation_id"),
            "kafka_topic" => kafka.leaf("topic"),
            "egress_allowed_by" | "ingress_allowed_by" | "egress_denied_by"
            | "ingress_denied_by" | "policy_log" => flow.leaf(name),
            "interface_index" => flow.child("interface").leaf("index"),
            "interface_name" => dict_column(&flow.child("interface").leaf("name")),
            "proxy_port" => flow.leaf("proxy_port"),
            "trace_id" => flow.child("trace_context").child("parent").leaf("trace_id"),
            "ip_trace_id" => flow.child("ip_trace_id").leaf("trace_id"),
            "sock_xlate_point" => {
                enum_column(&flow.leaf("sock_xlate_point"), &enums::SOCK_XLATE_POINT)
            }
            "socket_cookie" => flow.leaf("socket_cookie"),
            "cgroup_id" => flow.leaf("cgroup_id"),
            "tunnel_protocol" => enum_column(&tunnel.leaf("protocol"), &enums::TUNNEL_PROTOCOL),
            "tunnel_vni" => tunnel.leaf("vni"),
            "tunnel_ip_source" => tunnel.child("IP").leaf("source"),
            "tunnel_ip_destination" => tunnel.child("IP").leaf("destination"),
            "file_name" => flow.child("file").leaf("name"),
            "file_line" => flow.child("file").leaf("line"),
            "emitter_name" => dict_column(&emitter.leaf("name")),
            "emitter_version" => dict_column(&emitter.leaf("version")),
            "aggregate_ingress_flow_count" => aggregate.leaf("ingress_flow_count"),
            "aggregate_egress_flow_count" => aggregate.leaf("egress_flow_count"),
            "aggregate_unknown_direction_flow_count" => {
                aggregate.leaf("unknown_direction_flow_count")
            }
            "summary" => flow.leaf("Summary"),
            // Filled by the eBPF capture only.
            "bytes" | "packets" | "flow_start" | "flow_end" | "tcp_srtt_us" | "tcp_retransmits"
            | "drop_reason_kernel" => new_null_array(field.data_type(), rows),
            _ => endpoint_column(flow, name)
                .unwrap_or_else(|| panic!("flow column {name} has no Hubble mapping")),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns)
}

/// `source_*` and `destination_*` columns from the Endpoint, Service and names fields.
fn endpoint_column(flow: &View, name: &str) -> Option<ArrayRef> {
    let (side, suffix) = name
        .strip_prefix("source_")
        .map(|s| ("source", s))
        .or_else(|| {
            name.strip_prefix("destination_")
                .map(|s| ("destination", s))
        })?;
    let endpoint = flow.child(side);
    let service = flow.child(&format!("{side}_service"));
    Some(match suffix {
        "id" => endpoint.leaf("ID"),
        "identity" => endpoint.leaf("identity"),
        "cluster_name" => dict_column(&endpoint.leaf("cluster_name")),
        "namespace" => dict_column(&endpoint.leaf("namespace")),
        "pod_name" => endpoint.leaf("pod_name"),
        "labels" => endpoint.leaf("labels"),
        "workload" => dict_column(&first_in_list(&endpoint.leaf("workloads"), "name")),
        "workload_kind" => dict_column(&first_in_list(&endpoint.leaf("workloads"), "kind")),
        "service_name" => dict_column(&service.leaf("name")),
        "service_namespace" => dict_column(&service.leaf("namespace")),
        "names" => flow.leaf(&format!("{side}_names")),
        _ => return None,
    })
}

/// Flattens `lost_events` structs into the lost-events schema.
pub(crate) fn lost_events(
    lost: &View,
    time: ArrayRef,
    node_name: ArrayRef,
    source: CaptureSource,
) -> Result<RecordBatch, ArrowError> {
    let rows = lost.len();
    let schema = lost_events_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "time" => time.clone(),
            "capture_source" => constant_dict(source.as_str(), rows),
            "node_name" => dict_column(&node_name),
            "source" => enum_column(&lost.leaf("source"), &enums::LOST_EVENT_SOURCE),
            other => lost.leaf(other),
        })
        .collect();
    RecordBatch::try_new(schema, columns)
}

/// Rows where any field that only a Flow has is set (a bare `Flow` line, as opposed to an
/// `agent_event`/`debug_event`/`node_status` envelope that shares `time` and `node_name`).
pub(crate) fn looks_like_flow(top: &View) -> BooleanArray {
    if !top.has("verdict") {
        // Decoded with the envelope-only schema: no bare flows by construction.
        return BooleanArray::from(vec![false; top.len()]);
    }
    let indicators: Vec<BooleanArray> = [
        "verdict",
        "IP",
        "l4",
        "Type",
        "event_type",
        "source",
        "destination",
        "l7",
        "uuid",
        "ethernet",
    ]
    .iter()
    .map(|name| is_not_null(top.leaf(name).as_ref()).expect("is_not_null never fails"))
    .collect();
    or_all(&indicators)
}
