//! Rows of the `flows` table back into Hubble `Flow` messages: the inverse of the import
//! decoder's mapping (`flow_schema::hubble`), so that `replay -o jsonpb` prints what Hubble
//! would have printed and re-importing it gives the same rows.
//!
//! Columns without a Hubble field (the eBPF-only ones: bytes, packets, tcp_*, …) have nothing
//! to go back to; `capture_source` is the recorder's, not Hubble's.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use datafusion::arrow::error::ArrowError;

use super::format::LostEvents;
use hubble_api::flow::{
    self, layer4, layer7, AuthType, CiliumEventType, Dns, Emitter, Endpoint, Ethernet, FileInfo,
    Flow, FlowType, Http, HttpHeader, Ip, IpTraceId, IpVersion, Kafka, L7FlowType, Layer4, Layer7,
    NetworkInterface, Policy, Service, SocketTranslationPoint, Tcp, TcpFlags, TraceContext,
    TraceObservationPoint, TraceParent, TraceReason, TrafficDirection, Tunnel, Udp, Verdict,
    Workload,
};

/// A result batch with its dictionary columns decoded and its columns found by name (a
/// lookup per field of every flow: a fast hash, no allocation).
pub struct Rows {
    batch: RecordBatch,
    index: HashMap<String, usize, ahash::RandomState>,
}

/// The non-NULL strings of a list cell's items, read in place from the encodings the reader
/// gives (plain, view, dictionary): a label list is read on every flow, so no cast (a copy of
/// the items) per cell.
fn string_items(items: &ArrayRef) -> Vec<String> {
    let owned = |values: &mut dyn Iterator<Item = Option<&str>>| {
        values.flatten().map(str::to_owned).collect::<Vec<_>>()
    };
    match items.data_type() {
        DataType::Utf8 => owned(&mut items.as_string::<i32>().iter()),
        DataType::LargeUtf8 => owned(&mut items.as_string::<i64>().iter()),
        DataType::Utf8View => owned(&mut items.as_string_view().iter()),
        DataType::Dictionary(key, value)
            if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 =>
        {
            let dictionary = items.as_dictionary::<Int32Type>();
            let values = dictionary.values().as_string::<i32>();
            let mut texts = dictionary
                .keys()
                .iter()
                .map(|key| key.map(|k| values.value(k as usize)));
            owned(&mut texts)
        }
        _ => match cast(items, &DataType::Utf8) {
            Ok(items) => owned(&mut items.as_string::<i32>().iter()),
            Err(_) => Vec::new(),
        },
    }
}

/// The end of a flow, with its columns' names.
#[derive(Debug, Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Side {
    /// id, identity, cluster_name, namespace, pod_name, labels, workload, workload_kind.
    fn endpoint(self) -> [&'static str; 8] {
        match self {
            Side::Source => [
                "source_id",
                "source_identity",
                "source_cluster_name",
                "source_namespace",
                "source_pod_name",
                "source_labels",
                "source_workload",
                "source_workload_kind",
            ],
            Side::Destination => [
                "destination_id",
                "destination_identity",
                "destination_cluster_name",
                "destination_namespace",
                "destination_pod_name",
                "destination_labels",
                "destination_workload",
                "destination_workload_kind",
            ],
        }
    }

    /// service name, service namespace.
    fn service(self) -> [&'static str; 2] {
        match self {
            Side::Source => ["source_service_name", "source_service_namespace"],
            Side::Destination => ["destination_service_name", "destination_service_namespace"],
        }
    }
}

impl Rows {
    pub fn new(batch: &RecordBatch) -> Result<Rows, ArrowError> {
        let schema = batch.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        let mut fields = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            // Dictionaries and string views as plain strings.
            let plain = match field.data_type() {
                DataType::Dictionary(_, value) => Some(value.as_ref().clone()),
                DataType::Utf8View => Some(DataType::Utf8),
                _ => None,
            };
            if let Some(plain) = plain {
                columns.push(cast(column, &plain)?);
                fields.push(field.as_ref().clone().with_data_type(plain));
            } else {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
        let batch = RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            columns,
        )?;
        let index = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        Ok(Rows { batch, index })
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column, if the result has it and the row's value is not NULL.
    fn at(&self, name: &str, row: usize) -> Option<&ArrayRef> {
        debug_assert!(
            self.index.contains_key(name),
            "column {name} is not in the result"
        );
        let column = self.batch.column(*self.index.get(name)?);
        column.is_valid(row).then_some(column)
    }

    pub fn str(&self, name: &str, row: usize) -> Option<&str> {
        self.at(name, row)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .map(|c| c.value(row))
    }

    fn text(&self, name: &str, row: usize) -> String {
        self.str(name, row).unwrap_or_default().to_owned()
    }

    pub fn u32(&self, name: &str, row: usize) -> Option<u32> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .map(|c| c.value(row))
    }

    pub fn u64(&self, name: &str, row: usize) -> Option<u64> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .map(|c| c.value(row))
    }

    pub fn i32(&self, name: &str, row: usize) -> Option<i32> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .map(|c| c.value(row))
    }

    pub fn boolean(&self, name: &str, row: usize) -> Option<bool> {
        self.at(name, row)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .map(|c| c.value(row))
    }

    pub fn time(&self, name: &str, row: usize) -> Option<i64> {
        self.at(name, row)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .map(|c| c.value(row))
    }

    fn list(&self, name: &str, row: usize) -> Option<ArrayRef> {
        self.at(name, row)
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .map(|c| c.value(row))
    }

    /// A `list<utf8>` cell; NULL and empty are both "no values", as in proto3.
    pub fn strings(&self, name: &str, row: usize) -> Vec<String> {
        self.list(name, row)
            .map(|items| string_items(&items))
            .unwrap_or_default()
    }

    fn structs(&self, name: &str, row: usize) -> Option<StructArray> {
        self.list(name, row)
            .and_then(|list| list.as_any().downcast_ref::<StructArray>().cloned())
    }

    fn policies(&self, name: &str, row: usize) -> Vec<Policy> {
        let Some(items) = self.structs(name, row) else {
            return Vec::new();
        };
        let field = |f: &str| items.column_by_name(f).cloned();
        let text = |f: &str, i: usize| -> String {
            field(f)
                .filter(|c| c.is_valid(i))
                .and_then(|c| cast(&c, &DataType::Utf8).ok())
                .map(|c| c.as_string::<i32>().value(i).to_owned())
                .unwrap_or_default()
        };
        (0..items.len())
            .map(|i| Policy {
                name: text("name", i),
                namespace: text("namespace", i),
                kind: text("kind", i),
                revision: field("revision")
                    .filter(|c| c.is_valid(i))
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>().map(|c| c.value(i)))
                    .unwrap_or_default(),
                labels: field("labels")
                    .filter(|c| c.is_valid(i))
                    .and_then(|c| c.as_any().downcast_ref::<ListArray>().map(|l| l.value(i)))
                    .and_then(|l| cast(&l, &DataType::Utf8).ok())
                    .map(|l| {
                        l.as_string::<i32>()
                            .iter()
                            .flatten()
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn headers(&self, row: usize) -> Vec<HttpHeader> {
        let Some(items) = self.structs("http_headers", row) else {
            return Vec::new();
        };
        let text = |f: &str, i: usize| -> String {
            items
                .column_by_name(f)
                .filter(|c| c.is_valid(i))
                .map(|c| c.as_string::<i32>().value(i).to_owned())
                .unwrap_or_default()
        };
        (0..items.len())
            .map(|i| HttpHeader {
                key: text("key", i),
                value: text("value", i),
            })
            .collect()
    }

    fn name<E>(&self, column: &str, row: usize, parse: fn(&str) -> Option<E>) -> i32
    where
        E: Into<i32>,
    {
        self.str(column, row).and_then(parse).map_or(0, Into::into)
    }

    /// A row of `lost_events`.
    pub fn lost_events(&self, row: usize) -> LostEvents {
        LostEvents {
            time: self.time("time", row).map(timestamp),
            node_name: self.text("node_name", row),
            source: self.text("source", row),
            num_events_lost: self.u64("num_events_lost", row).unwrap_or_default(),
            cpu: self.i32("cpu", row),
            first: self.time("first", row).map(timestamp),
            last: self.time("last", row).map(timestamp),
        }
    }

    /// The row as the `Flow` Hubble sent (or would have sent).
    pub fn flow(&self, row: usize) -> Flow {
        let r = row;
        let mut flow = Flow {
            time: self.time("time", r).map(timestamp),
            uuid: self.text("uuid", r),
            verdict: self.name("verdict", r, Verdict::from_str_name),
            drop_reason: self.u32("drop_reason", r).unwrap_or_default(),
            drop_reason_desc: self.name("drop_reason_desc", r, flow::DropReason::from_str_name),
            auth_type: self.name("auth_type", r, AuthType::from_str_name),
            r#type: self.name("type", r, FlowType::from_str_name),
            node_name: self.text("node_name", r),
            node_labels: self.strings("node_labels", r),
            traffic_direction: self.name("traffic_direction", r, TrafficDirection::from_str_name),
            is_reply: self
                .boolean("is_reply", r)
                .map(|value| pbjson_types::BoolValue { value }),
            reply: self.boolean("reply", r).unwrap_or_default(),
            trace_observation_point: self.name(
                "trace_observation_point",
                r,
                TraceObservationPoint::from_str_name,
            ),
            trace_reason: self.name("trace_reason", r, TraceReason::from_str_name),
            policy_match_type: self.u32("policy_match_type", r).unwrap_or_default(),
            sock_xlate_point: self.name(
                "sock_xlate_point",
                r,
                SocketTranslationPoint::from_str_name,
            ),
            socket_cookie: self.u64("socket_cookie", r).unwrap_or_default(),
            cgroup_id: self.u64("cgroup_id", r).unwrap_or_default(),
            proxy_port: self.u32("proxy_port", r).unwrap_or_default(),
            summary: self.text("summary", r),
            source_names: self.strings("source_names", r),
            destination_names: self.strings("destination_names", r),
            egress_allowed_by: self.policies("egress_allowed_by", r),
            ingress_allowed_by: self.policies("ingress_allowed_by", r),
            egress_denied_by: self.policies("egress_denied_by", r),
            ingress_denied_by: self.policies("ingress_denied_by", r),
            policy_log: self.strings("policy_log", r),
            // Hubble's parsers always set both ends, empty when nothing is known: `-o jsonpb`
            // prints them as `{}`.
            source: Some(self.endpoint(Side::Source, r)),
            destination: Some(self.endpoint(Side::Destination, r)),
            source_service: self.service(Side::Source, r),
            destination_service: self.service(Side::Destination, r),
            l4: self.layer4(r),
            l7: self.layer7(r),
            ..Default::default()
        };
        flow.event_type = self
            .any(&["event_type", "event_subtype"], r)
            .then(|| CiliumEventType {
                r#type: self.i32("event_type", r).unwrap_or_default(),
                sub_type: self.i32("event_subtype", r).unwrap_or_default(),
            });
        flow.ip = self.ip(r);
        flow.ethernet = self
            .any(&["ethernet_source", "ethernet_destination"], r)
            .then(|| Ethernet {
                source: self.text("ethernet_source", r),
                destination: self.text("ethernet_destination", r),
            });
        flow.interface = self
            .any(&["interface_index", "interface_name"], r)
            .then(|| NetworkInterface {
                index: self.u32("interface_index", r).unwrap_or_default(),
                name: self.text("interface_name", r),
            });
        flow.file = self.any(&["file_name", "file_line"], r).then(|| FileInfo {
            name: self.text("file_name", r),
            line: self.u32("file_line", r).unwrap_or_default(),
        });
        flow.emitter = self
            .any(&["emitter_name", "emitter_version"], r)
            .then(|| Emitter {
                name: self.text("emitter_name", r),
                version: self.text("emitter_version", r),
            });
        flow.trace_context = self.str("trace_id", r).map(|id| TraceContext {
            parent: Some(TraceParent {
                trace_id: id.to_owned(),
            }),
        });
        flow.ip_trace_id = self.u64("ip_trace_id", r).map(|trace_id| IpTraceId {
            trace_id,
            ..Default::default()
        });
        const AGGREGATE: [&str; 3] = [
            "aggregate_ingress_flow_count",
            "aggregate_egress_flow_count",
            "aggregate_unknown_direction_flow_count",
        ];
        flow.aggregate = self.any(&AGGREGATE, r).then(|| flow::Aggregate {
            ingress_flow_count: self.u32(AGGREGATE[0], r).unwrap_or_default(),
            egress_flow_count: self.u32(AGGREGATE[1], r).unwrap_or_default(),
            unknown_direction_flow_count: self.u32(AGGREGATE[2], r).unwrap_or_default(),
        });
        const TUNNEL: [&str; 4] = [
            "tunnel_protocol",
            "tunnel_vni",
            "tunnel_ip_source",
            "tunnel_ip_destination",
        ];
        flow.tunnel = self.any(&TUNNEL, r).then(|| Tunnel {
            protocol: self.name("tunnel_protocol", r, flow::tunnel::Protocol::from_str_name),
            vni: self.u32("tunnel_vni", r).unwrap_or_default(),
            ip: self.any(&TUNNEL[2..], r).then(|| Ip {
                source: self.text("tunnel_ip_source", r),
                destination: self.text("tunnel_ip_destination", r),
                ..Default::default()
            }),
            l4: None,
        });
        flow
    }

    /// Whether any of the columns has a value in the row (the message was present).
    fn any(&self, columns: &[&str], row: usize) -> bool {
        columns.iter().any(|c| self.at(c, row).is_some())
    }

    fn endpoint(&self, side: Side, r: usize) -> Endpoint {
        let columns = side.endpoint();
        let workload = self.any(&columns[6..], r).then(|| Workload {
            name: self.text(columns[6], r),
            kind: self.text(columns[7], r),
        });
        Endpoint {
            id: self.u32(columns[0], r).unwrap_or_default(),
            identity: self.u32(columns[1], r).unwrap_or_default(),
            cluster_name: self.text(columns[2], r),
            namespace: self.text(columns[3], r),
            pod_name: self.text(columns[4], r),
            labels: self.strings(columns[5], r),
            workloads: workload.into_iter().collect(),
        }
    }

    fn service(&self, side: Side, r: usize) -> Option<Service> {
        let [name, namespace] = side.service();
        self.any(&[name, namespace], r).then(|| Service {
            name: self.text(name, r),
            namespace: self.text(namespace, r),
        })
    }

    fn ip(&self, r: usize) -> Option<Ip> {
        const IP: [&str; 5] = [
            "ip_source",
            "ip_destination",
            "ip_source_xlated",
            "ip_version",
            "ip_encrypted",
        ];
        self.any(&IP, r).then(|| Ip {
            source: self.text("ip_source", r),
            destination: self.text("ip_destination", r),
            source_xlated: self.text("ip_source_xlated", r),
            ip_version: self.name("ip_version", r, IpVersion::from_str_name),
            encrypted: self.boolean("ip_encrypted", r).unwrap_or_default(),
        })
    }

    fn layer4(&self, r: usize) -> Option<Layer4> {
        let ports = || {
            (
                self.u32("source_port", r).unwrap_or_default(),
                self.u32("destination_port", r).unwrap_or_default(),
            )
        };
        let icmp = || {
            (
                self.u32("icmp_type", r).unwrap_or_default(),
                self.u32("icmp_code", r).unwrap_or_default(),
            )
        };
        let protocol = match self.str("l4_protocol", r)? {
            "TCP" => {
                let (source_port, destination_port) = ports();
                let set = self.strings("tcp_flags", r);
                let has = |flag: &str| set.iter().any(|f| f == flag);
                let flags = (!set.is_empty()).then(|| TcpFlags {
                    fin: has("FIN"),
                    syn: has("SYN"),
                    rst: has("RST"),
                    psh: has("PSH"),
                    ack: has("ACK"),
                    urg: has("URG"),
                    ece: has("ECE"),
                    cwr: has("CWR"),
                    ns: has("NS"),
                });
                layer4::Protocol::Tcp(Tcp {
                    source_port,
                    destination_port,
                    flags,
                })
            }
            "UDP" => {
                let (source_port, destination_port) = ports();
                layer4::Protocol::Udp(Udp {
                    source_port,
                    destination_port,
                })
            }
            "SCTP" => {
                let (source_port, destination_port) = ports();
                layer4::Protocol::Sctp(flow::Sctp {
                    source_port,
                    destination_port,
                })
            }
            "ICMPv4" => {
                let (r#type, code) = icmp();
                layer4::Protocol::IcmPv4(flow::IcmPv4 { r#type, code })
            }
            "ICMPv6" => {
                let (r#type, code) = icmp();
                layer4::Protocol::IcmPv6(flow::IcmPv6 { r#type, code })
            }
            "VRRP" => layer4::Protocol::Vrrp(flow::Vrrp::default()),
            "IGMP" => layer4::Protocol::Igmp(flow::Igmp::default()),
            _ => return None,
        };
        Some(Layer4 {
            protocol: Some(protocol),
        })
    }

    fn layer7(&self, r: usize) -> Option<Layer7> {
        let record = match self.str("l7_protocol", r) {
            Some("http") => Some(layer7::Record::Http(Http {
                code: self.u32("http_code", r).unwrap_or_default(),
                method: self.text("http_method", r),
                url: self.text("http_url", r),
                protocol: self.text("http_protocol", r),
                headers: self.headers(r),
            })),
            Some("dns") => Some(layer7::Record::Dns(Dns {
                query: self.text("dns_query", r),
                ips: self.strings("dns_ips", r),
                ttl: self.u32("dns_ttl", r).unwrap_or_default(),
                cnames: self.strings("dns_cnames", r),
                observation_source: self.text("dns_observation_source", r),
                rcode: self.u32("dns_rcode", r).unwrap_or_default(),
                qtypes: self.strings("dns_qtypes", r),
                rrtypes: self.strings("dns_rrtypes", r),
            })),
            Some("kafka") => Some(layer7::Record::Kafka(Kafka {
                error_code: self.i32("kafka_error_code", r).unwrap_or_default(),
                api_version: self.i32("kafka_api_version", r).unwrap_or_default(),
                api_key: self.text("kafka_api_key", r),
                correlation_id: self.i32("kafka_correlation_id", r).unwrap_or_default(),
                topic: self.text("kafka_topic", r),
            })),
            _ => None,
        };
        let present = record.is_some() || self.any(&["l7_type", "l7_latency_ns"], r);
        present.then(|| Layer7 {
            r#type: self.name("l7_type", r, L7FlowType::from_str_name),
            latency_ns: self.u64("l7_latency_ns", r).unwrap_or_default(),
            record,
        })
    }
}

fn timestamp(ns: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, StringViewArray};

    #[test]
    fn list_items_read_the_same_in_every_string_encoding() {
        let expected = vec!["k8s:app=a".to_owned(), "reserved:world".to_owned()];
        let texts = [Some("k8s:app=a"), None, Some("reserved:world")];
        let plain: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
        let view: ArrayRef = Arc::new(StringViewArray::from(texts.to_vec()));
        let dictionary: ArrayRef =
            Arc::new(texts.into_iter().collect::<DictionaryArray<Int32Type>>());
        let large = cast(&plain, &DataType::LargeUtf8).unwrap();
        let other = cast(&plain, &DataType::Binary).unwrap();
        for items in [plain, view, dictionary, large] {
            assert_eq!(string_items(&items), expected, "{:?}", items.data_type());
        }
        assert_eq!(string_items(&other), expected);
    }
}
