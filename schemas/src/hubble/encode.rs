//! Rows of the flat flow schema back into Hubble's `Flow` on the protobuf wire (cilium v1.19.4
//! field numbers): the inverse of [`super::protobuf`]. `flowsql serve` sends these bytes as
//! they are, `flowsql replay` decodes them to print, and decoding them into columns again gives
//! the same row (tested over every bundled capture).
//!
//! Why straight to the wire: a `Flow` message tree costs ~40 allocations per flow to build,
//! then a length pass and an encoding pass; streaming the history to a client is that, a
//! million times. Here the columns are resolved once per batch into typed readers (plain, view
//! and dictionary strings alike; enum names to numbers once per dictionary value), and a row
//! costs the bytes it writes.
//!
//! The presence rules are the decoder's, read backwards:
//! - both endpoints are always present (Hubble's parsers always set them, and `-o jsonpb`
//!   prints an empty one as `{}`);
//! - any other message is present when one of its columns is non-NULL (`l4` when
//!   `l4_protocol` names a member, `l7` when it has a record, a type or a latency);
//! - an enum's stored name goes back to its number, and an unknown number that was kept as
//!   digits goes back as that number;
//! - NULL, empty strings and proto3 zero values are left out, as every encoder does.

use std::ops::Range;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, GenericListArray, Int32Array,
    LargeStringArray, PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use arrow::error::ArrowError;

use super::enums::{self, EnumNames};
use super::flow::TCP_FLAG_NAMES;
use super::flow::{Side, DESTINATION, F, HEADER_FIELDS, LAYER4, POLICY_FIELDS, SOURCE};
use super::wire::{Message, Value};

/// Field numbers of `GetFlowsResponse` (observer.proto).
const RESPONSE_FLOW: u32 = 1;
const RESPONSE_NODE_NAME: u32 = 1000;
const RESPONSE_TIME: u32 = 1001;
/// Field numbers of `Flow` the envelope repeats.
const FLOW_TIME: u32 = 1;
const FLOW_NODE_NAME: u32 = 11;

/// A string column in whichever encoding the scan produced.
enum Text {
    Absent,
    Plain(StringArray),
    Large(LargeStringArray),
    View(StringViewArray),
    /// Keys into the values.
    Dictionary(Int32Array, Box<Text>),
}

impl Text {
    fn of(array: Option<&ArrayRef>) -> Result<Text, ArrowError> {
        let Some(array) = array else {
            return Ok(Text::Absent);
        };
        Ok(match array.data_type() {
            DataType::Utf8 => Text::Plain(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Text::Large(array.as_string::<i64>().clone()),
            DataType::Utf8View => Text::View(array.as_string_view().clone()),
            DataType::Dictionary(key, _) if key.as_ref() == &DataType::Int32 => {
                let dictionary = array.as_dictionary::<Int32Type>();
                Text::Dictionary(
                    dictionary.keys().clone(),
                    Box::new(Text::of(Some(dictionary.values()))?),
                )
            }
            _ => Text::Plain(cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
        })
    }

    fn get(&self, row: usize) -> Option<&str> {
        match self {
            Text::Absent => None,
            Text::Plain(a) => a.is_valid(row).then(|| a.value(row)),
            Text::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Text::View(a) => a.is_valid(row).then(|| a.value(row)),
            Text::Dictionary(keys, values) => {
                if keys.is_valid(row) {
                    values.get(keys.value(row) as usize)
                } else {
                    None
                }
            }
        }
    }

    fn is_valid(&self, row: usize) -> bool {
        self.get(row).is_some()
    }
}

/// A column of numbers of type `T` (cast to it if the file stored another width).
struct Num<T: ArrowPrimitiveType>(Option<PrimitiveArray<T>>);

impl<T: ArrowPrimitiveType> Num<T> {
    fn of(array: Option<&ArrayRef>) -> Result<Num<T>, ArrowError> {
        let Some(array) = array else {
            return Ok(Num(None));
        };
        let typed = match array.as_primitive_opt::<T>() {
            Some(typed) => typed.clone(),
            None => cast(array, &T::DATA_TYPE)?.as_primitive::<T>().clone(),
        };
        Ok(Num(Some(typed)))
    }

    fn get(&self, row: usize) -> Option<T::Native> {
        self.0
            .as_ref()
            .and_then(|a| a.is_valid(row).then(|| a.value(row)))
    }
}

struct Flag(Option<BooleanArray>);

impl Flag {
    fn of(array: Option<&ArrayRef>) -> Result<Flag, ArrowError> {
        Ok(Flag(match array {
            Some(a) => Some(match a.as_boolean_opt() {
                Some(b) => b.clone(),
                None => cast(a, &DataType::Boolean)?.as_boolean().clone(),
            }),
            None => None,
        }))
    }

    fn get(&self, row: usize) -> Option<bool> {
        self.0
            .as_ref()
            .and_then(|a| a.is_valid(row).then(|| a.value(row)))
    }
}

/// An enum column: its stored names back to numbers, worked out once per dictionary value.
struct Enum {
    text: Text,
    names: &'static EnumNames,
    numbers: Vec<i32>,
}

impl Enum {
    fn of(array: Option<&ArrayRef>, names: &'static EnumNames) -> Result<Enum, ArrowError> {
        let text = Text::of(array)?;
        let dictionary = array.and_then(|a| a.as_dictionary_opt::<Int32Type>());
        let numbers = match (&text, dictionary) {
            (Text::Dictionary(_, values), Some(dictionary)) => (0..dictionary.values().len())
                .map(|i| values.get(i).map_or(0, |name| names.number_of(name)))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Enum {
            text,
            names,
            numbers,
        })
    }

    /// 0 (left out) when NULL.
    fn get(&self, row: usize) -> i32 {
        match &self.text {
            Text::Dictionary(keys, _) => {
                if keys.is_valid(row) {
                    self.numbers[keys.value(row) as usize]
                } else {
                    0
                }
            }
            text => text.get(row).map_or(0, |name| self.names.number_of(name)),
        }
    }

    fn is_valid(&self, row: usize) -> bool {
        self.text.is_valid(row)
    }
}

/// The offsets and validity of a list column.
struct Lists {
    offsets: OffsetBuffer<i32>,
    nulls: Option<NullBuffer>,
}

impl Lists {
    /// The list column as `list<_>` (a large list is cast), with its items.
    fn of(array: &ArrayRef) -> Result<(Lists, ArrayRef), ArrowError> {
        let list: GenericListArray<i32> = match array.as_list_opt::<i32>() {
            Some(list) => list.clone(),
            None => {
                let item = match array.data_type() {
                    DataType::LargeList(item) | DataType::ListView(item) => item.clone(),
                    other => {
                        return Err(ArrowError::InvalidArgumentError(format!(
                            "a list column, not {other}"
                        )))
                    }
                };
                cast(array, &DataType::List(item))?.as_list::<i32>().clone()
            }
        };
        Ok((
            Lists {
                offsets: list.offsets().clone(),
                nulls: list.nulls().cloned(),
            },
            list.values().clone(),
        ))
    }

    /// The items of row `row`; empty when NULL.
    fn items(&self, row: usize) -> Range<usize> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return 0..0;
        }
        self.offsets[row] as usize..self.offsets[row + 1] as usize
    }
}

/// A `list<utf8>` column.
struct TextList(Option<(Lists, Text)>);

impl TextList {
    fn of(array: Option<&ArrayRef>) -> Result<TextList, ArrowError> {
        Ok(TextList(match array {
            Some(array) => {
                let (lists, items) = Lists::of(array)?;
                Some((lists, Text::of(Some(&items))?))
            }
            None => None,
        }))
    }

    /// Writes each non-NULL item of `row` as repeated field `field`.
    fn write(&self, row: usize, field: u32, out: &mut Vec<u8>) {
        if let Some((lists, items)) = &self.0 {
            for i in lists.items(row) {
                if let Some(item) = items.get(i) {
                    bytes_field(out, field, item.as_bytes());
                }
            }
        }
    }

    fn contains(&self, row: usize, wanted: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(lists, items)| lists.items(row).any(|i| items.get(i) == Some(wanted)))
    }

    fn is_empty(&self, row: usize) -> bool {
        self.0
            .as_ref()
            .is_none_or(|(lists, items)| lists.items(row).all(|i| !items.is_valid(i)))
    }
}

/// A child of a `list<struct>` column by name (absent if the struct lacks it).
fn child<'a>(items: &'a ArrayRef, name: &str) -> Option<&'a ArrayRef> {
    items.as_struct_opt()?.column_by_name(name)
}

/// A `list<struct<name, namespace, kind, revision, labels>>` column: `Policy` messages.
struct Policies(Option<(Lists, Text, Text, Text, Num<UInt64Type>, TextList)>);

impl Policies {
    fn of(array: Option<&ArrayRef>) -> Result<Policies, ArrowError> {
        let Some(array) = array else {
            return Ok(Policies(None));
        };
        let (lists, items) = Lists::of(array)?;
        let [name, namespace, kind, revision, labels] = POLICY_FIELDS;
        Ok(Policies(Some((
            lists,
            Text::of(child(&items, name))?,
            Text::of(child(&items, namespace))?,
            Text::of(child(&items, kind))?,
            Num::of(child(&items, revision))?,
            TextList::of(child(&items, labels))?,
        ))))
    }

    fn write(&self, row: usize, field: u32, out: &mut Vec<u8>) {
        let Some((lists, name, namespace, kind, revision, labels)) = &self.0 else {
            return;
        };
        for i in lists.items(row) {
            message(out, field, |out| {
                string(out, 1, name.get(i));
                string(out, 2, namespace.get(i));
                labels.write(i, 3, out);
                uint(out, 4, revision.get(i).unwrap_or_default());
                string(out, 5, kind.get(i));
            });
        }
    }
}

/// The `http_headers` column: `HTTPHeader` messages.
struct Headers(Option<(Lists, Text, Text)>);

impl Headers {
    fn of(array: Option<&ArrayRef>) -> Result<Headers, ArrowError> {
        let Some(array) = array else {
            return Ok(Headers(None));
        };
        let (lists, items) = Lists::of(array)?;
        let [key, value] = HEADER_FIELDS;
        Ok(Headers(Some((
            lists,
            Text::of(child(&items, key))?,
            Text::of(child(&items, value))?,
        ))))
    }

    fn write(&self, row: usize, field: u32, out: &mut Vec<u8>) {
        let Some((lists, key, value)) = &self.0 else {
            return;
        };
        for i in lists.items(row) {
            message(out, field, |out| {
                string(out, 1, key.get(i));
                string(out, 2, value.get(i));
            });
        }
    }
}

/// One end's columns.
struct End {
    id: Num<UInt32Type>,
    identity: Num<UInt32Type>,
    cluster_name: Text,
    namespace: Text,
    pod_name: Text,
    labels: TextList,
    workload: Text,
    workload_kind: Text,
    service_name: Text,
    service_namespace: Text,
}

impl End {
    fn of(columns: &Columns, side: &Side) -> Result<End, ArrowError> {
        Ok(End {
            id: columns.num(side.id)?,
            identity: columns.num(side.identity)?,
            cluster_name: columns.text(side.cluster_name)?,
            namespace: columns.text(side.namespace)?,
            pod_name: columns.text(side.pod_name)?,
            labels: TextList::of(columns.get(side.labels))?,
            workload: columns.text(side.workload)?,
            workload_kind: columns.text(side.workload_kind)?,
            service_name: columns.text(side.service_name)?,
            service_namespace: columns.text(side.service_namespace)?,
        })
    }

    /// The `Endpoint`, always present.
    fn endpoint(&self, row: usize, field: u32, out: &mut Vec<u8>) {
        message(out, field, |out| {
            uint(out, 1, self.id.get(row).unwrap_or_default().into());
            uint(out, 2, self.identity.get(row).unwrap_or_default().into());
            string(out, 3, self.namespace.get(row));
            self.labels.write(row, 4, out);
            string(out, 5, self.pod_name.get(row));
            let (name, kind) = (self.workload.get(row), self.workload_kind.get(row));
            if name.is_some() || kind.is_some() {
                message(out, 6, |out| {
                    string(out, 1, name);
                    string(out, 2, kind);
                });
            }
            string(out, 7, self.cluster_name.get(row));
        });
    }

    fn service(&self, row: usize, field: u32, out: &mut Vec<u8>) {
        let (name, namespace) = (self.service_name.get(row), self.service_namespace.get(row));
        if name.is_some() || namespace.is_some() {
            message(out, field, |out| {
                string(out, 1, name);
                string(out, 2, namespace);
            });
        }
    }
}

/// The batch's columns by [`F`] variant.
struct Columns<'b> {
    batch: &'b RecordBatch,
}

impl Columns<'_> {
    fn get(&self, column: F) -> Option<&ArrayRef> {
        self.batch.column_by_name(column.name())
    }

    fn text(&self, column: F) -> Result<Text, ArrowError> {
        Text::of(self.get(column))
    }

    fn num<T: ArrowPrimitiveType>(&self, column: F) -> Result<Num<T>, ArrowError> {
        Num::of(self.get(column))
    }

    fn flag(&self, column: F) -> Result<Flag, ArrowError> {
        Flag::of(self.get(column))
    }

    fn enumeration(&self, column: F, names: &'static EnumNames) -> Result<Enum, ArrowError> {
        Enum::of(self.get(column), names)
    }

    fn strings(&self, column: F) -> Result<TextList, ArrowError> {
        TextList::of(self.get(column))
    }

    fn policies(&self, column: F) -> Result<Policies, ArrowError> {
        Policies::of(self.get(column))
    }
}

/// A batch of `flows` rows, ready to be written as `Flow` messages. Columns the batch lacks
/// read as NULL.
pub struct FlowRows {
    rows: usize,
    time: Num<TimestampNanosecondType>,
    uuid: Text,
    node_name: Text,
    node_labels: TextList,
    verdict: Enum,
    drop_reason: Num<UInt32Type>,
    drop_reason_desc: Enum,
    auth_type: Enum,
    flow_type: Enum,
    event_type: Num<Int32Type>,
    event_subtype: Num<Int32Type>,
    traffic_direction: Enum,
    is_reply: Flag,
    reply: Flag,
    trace_observation_point: Enum,
    trace_reason: Enum,
    policy_match_type: Num<UInt32Type>,
    ethernet_source: Text,
    ethernet_destination: Text,
    ip_source: Text,
    ip_destination: Text,
    ip_source_xlated: Text,
    ip_version: Enum,
    ip_encrypted: Flag,
    l4_protocol: Text,
    source_port: Num<UInt32Type>,
    destination_port: Num<UInt32Type>,
    tcp_flags: TextList,
    icmp_type: Num<UInt32Type>,
    icmp_code: Num<UInt32Type>,
    source: End,
    destination: End,
    source_names: TextList,
    destination_names: TextList,
    l7_type: Enum,
    l7_protocol: Text,
    l7_latency_ns: Num<UInt64Type>,
    http_code: Num<UInt32Type>,
    http_method: Text,
    http_url: Text,
    http_protocol: Text,
    http_headers: Headers,
    dns_query: Text,
    dns_ips: TextList,
    dns_ttl: Num<UInt32Type>,
    dns_cnames: TextList,
    dns_observation_source: Text,
    dns_rcode: Num<UInt32Type>,
    dns_qtypes: TextList,
    dns_rrtypes: TextList,
    kafka_error_code: Num<Int32Type>,
    kafka_api_version: Num<Int32Type>,
    kafka_api_key: Text,
    kafka_correlation_id: Num<Int32Type>,
    kafka_topic: Text,
    egress_allowed_by: Policies,
    ingress_allowed_by: Policies,
    egress_denied_by: Policies,
    ingress_denied_by: Policies,
    policy_log: TextList,
    interface_index: Num<UInt32Type>,
    interface_name: Text,
    proxy_port: Num<UInt32Type>,
    trace_id: Text,
    ip_trace_id: Num<UInt64Type>,
    sock_xlate_point: Enum,
    socket_cookie: Num<UInt64Type>,
    cgroup_id: Num<UInt64Type>,
    tunnel_protocol: Enum,
    tunnel_vni: Num<UInt32Type>,
    tunnel_ip_source: Text,
    tunnel_ip_destination: Text,
    file_name: Text,
    file_line: Num<UInt32Type>,
    emitter_name: Text,
    emitter_version: Text,
    aggregate: [Num<UInt32Type>; 3],
    summary: Text,
}

impl FlowRows {
    /// Resolves the batch's columns (an error only for a column of a type that does not cast
    /// to the schema's).
    pub fn new(batch: &RecordBatch) -> Result<FlowRows, ArrowError> {
        let c = Columns { batch };
        Ok(FlowRows {
            rows: batch.num_rows(),
            time: c.num(F::Time)?,
            uuid: c.text(F::Uuid)?,
            node_name: c.text(F::NodeName)?,
            node_labels: c.strings(F::NodeLabels)?,
            verdict: c.enumeration(F::Verdict, &enums::VERDICT)?,
            drop_reason: c.num(F::DropReason)?,
            drop_reason_desc: c.enumeration(F::DropReasonDesc, &enums::DROP_REASON)?,
            auth_type: c.enumeration(F::AuthType, &enums::AUTH_TYPE)?,
            flow_type: c.enumeration(F::Type, &enums::FLOW_TYPE)?,
            event_type: c.num(F::EventType)?,
            event_subtype: c.num(F::EventSubtype)?,
            traffic_direction: c.enumeration(F::TrafficDirection, &enums::TRAFFIC_DIRECTION)?,
            is_reply: c.flag(F::IsReply)?,
            reply: c.flag(F::Reply)?,
            trace_observation_point: c
                .enumeration(F::TraceObservationPoint, &enums::TRACE_OBSERVATION_POINT)?,
            trace_reason: c.enumeration(F::TraceReason, &enums::TRACE_REASON)?,
            policy_match_type: c.num(F::PolicyMatchType)?,
            ethernet_source: c.text(F::EthernetSource)?,
            ethernet_destination: c.text(F::EthernetDestination)?,
            ip_source: c.text(F::IpSource)?,
            ip_destination: c.text(F::IpDestination)?,
            ip_source_xlated: c.text(F::IpSourceXlated)?,
            ip_version: c.enumeration(F::IpVersion, &enums::IP_VERSION)?,
            ip_encrypted: c.flag(F::IpEncrypted)?,
            l4_protocol: c.text(F::L4Protocol)?,
            source_port: c.num(F::SourcePort)?,
            destination_port: c.num(F::DestinationPort)?,
            tcp_flags: c.strings(F::TcpFlags)?,
            icmp_type: c.num(F::IcmpType)?,
            icmp_code: c.num(F::IcmpCode)?,
            source: End::of(&c, &SOURCE)?,
            destination: End::of(&c, &DESTINATION)?,
            source_names: c.strings(F::SourceNames)?,
            destination_names: c.strings(F::DestinationNames)?,
            l7_type: c.enumeration(F::L7Type, &enums::L7_FLOW_TYPE)?,
            l7_protocol: c.text(F::L7Protocol)?,
            l7_latency_ns: c.num(F::L7LatencyNs)?,
            http_code: c.num(F::HttpCode)?,
            http_method: c.text(F::HttpMethod)?,
            http_url: c.text(F::HttpUrl)?,
            http_protocol: c.text(F::HttpProtocol)?,
            http_headers: Headers::of(c.get(F::HttpHeaders))?,
            dns_query: c.text(F::DnsQuery)?,
            dns_ips: c.strings(F::DnsIps)?,
            dns_ttl: c.num(F::DnsTtl)?,
            dns_cnames: c.strings(F::DnsCnames)?,
            dns_observation_source: c.text(F::DnsObservationSource)?,
            dns_rcode: c.num(F::DnsRcode)?,
            dns_qtypes: c.strings(F::DnsQtypes)?,
            dns_rrtypes: c.strings(F::DnsRrtypes)?,
            kafka_error_code: c.num(F::KafkaErrorCode)?,
            kafka_api_version: c.num(F::KafkaApiVersion)?,
            kafka_api_key: c.text(F::KafkaApiKey)?,
            kafka_correlation_id: c.num(F::KafkaCorrelationId)?,
            kafka_topic: c.text(F::KafkaTopic)?,
            egress_allowed_by: c.policies(F::EgressAllowedBy)?,
            ingress_allowed_by: c.policies(F::IngressAllowedBy)?,
            egress_denied_by: c.policies(F::EgressDeniedBy)?,
            ingress_denied_by: c.policies(F::IngressDeniedBy)?,
            policy_log: c.strings(F::PolicyLog)?,
            interface_index: c.num(F::InterfaceIndex)?,
            interface_name: c.text(F::InterfaceName)?,
            proxy_port: c.num(F::ProxyPort)?,
            trace_id: c.text(F::TraceId)?,
            ip_trace_id: c.num(F::IpTraceId)?,
            sock_xlate_point: c.enumeration(F::SockXlatePoint, &enums::SOCK_XLATE_POINT)?,
            socket_cookie: c.num(F::SocketCookie)?,
            cgroup_id: c.num(F::CgroupId)?,
            tunnel_protocol: c.enumeration(F::TunnelProtocol, &enums::TUNNEL_PROTOCOL)?,
            tunnel_vni: c.num(F::TunnelVni)?,
            tunnel_ip_source: c.text(F::TunnelIpSource)?,
            tunnel_ip_destination: c.text(F::TunnelIpDestination)?,
            file_name: c.text(F::FileName)?,
            file_line: c.num(F::FileLine)?,
            emitter_name: c.text(F::EmitterName)?,
            emitter_version: c.text(F::EmitterVersion)?,
            aggregate: [
                c.num(F::AggregateIngressFlowCount)?,
                c.num(F::AggregateEgressFlowCount)?,
                c.num(F::AggregateUnknownDirectionFlowCount)?,
            ],
            summary: c.text(F::Summary)?,
        })
    }

    /// The columns [`FlowRows::flow`] reads for the `Flow` fields `wanted` accepts (given a
    /// field mask's way of naming them: `IP`, `source.pod_name`, `source`); `time` and `uuid`
    /// always, as [`FlowRows::time`] and [`FlowRows::uuid`] read them. A scan that reads only
    /// these and encodes with a field mask gives the same bytes as a scan of every column,
    /// for less decoding (the compact output's default mask needs 54 columns of 98, 21 of
    /// them L7 ones that are mostly NULL).
    pub fn columns_for(wanted: impl Fn(&str) -> bool) -> Vec<&'static str> {
        F::ALL
            .iter()
            .filter(|column| {
                matches!(column, F::Time | F::Uuid) || column.field().is_some_and(&wanted)
            })
            .map(|column| column.name())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The row's `time` (ns since the epoch).
    pub fn time(&self, row: usize) -> Option<i64> {
        self.time.get(row)
    }

    pub fn uuid(&self, row: usize) -> Option<&str> {
        self.uuid.get(row)
    }

    /// Appends row `row` as a whole `GetFlowsResponse` (its `flow`, and the flow's
    /// `node_name` and `time` on the envelope, as an agent sends them).
    pub fn response(&self, row: usize, out: &mut Vec<u8>) {
        message(out, RESPONSE_FLOW, |out| self.flow(row, out));
        string(out, RESPONSE_NODE_NAME, self.node_name.get(row));
        if let Some(ns) = self.time.get(row) {
            timestamp(out, RESPONSE_TIME, ns);
        }
    }

    /// Appends row `row` as the fields of a `Flow` message (no length prefix).
    pub fn flow(&self, row: usize, out: &mut Vec<u8>) {
        let r = row;
        if let Some(ns) = self.time.get(r) {
            timestamp(out, FLOW_TIME, ns);
        }
        enumeration(out, 2, &self.verdict, r);
        uint(out, 3, self.drop_reason.get(r).unwrap_or_default().into());
        let (ethernet_source, ethernet_destination) = (
            self.ethernet_source.get(r),
            self.ethernet_destination.get(r),
        );
        if ethernet_source.is_some() || ethernet_destination.is_some() {
            message(out, 4, |out| {
                string(out, 1, ethernet_source);
                string(out, 2, ethernet_destination);
            });
        }
        self.ip(r, out);
        self.layer4(r, out);
        self.source.endpoint(r, 8, out);
        self.destination.endpoint(r, 9, out);
        enumeration(out, 10, &self.flow_type, r);
        string(out, FLOW_NODE_NAME, self.node_name.get(r));
        self.source_names.write(r, 13, out);
        self.destination_names.write(r, 14, out);
        self.layer7(r, out);
        boolean(out, 16, self.reply.get(r).unwrap_or_default());
        let (event_type, event_subtype) = (self.event_type.get(r), self.event_subtype.get(r));
        if event_type.is_some() || event_subtype.is_some() {
            message(out, 19, |out| {
                int32(out, 1, event_type.unwrap_or_default());
                int32(out, 2, event_subtype.unwrap_or_default());
            });
        }
        self.source.service(r, 20, out);
        self.destination.service(r, 21, out);
        enumeration(out, 22, &self.traffic_direction, r);
        uint(
            out,
            23,
            self.policy_match_type.get(r).unwrap_or_default().into(),
        );
        enumeration(out, 24, &self.trace_observation_point, r);
        enumeration(out, 25, &self.drop_reason_desc, r);
        if let Some(is_reply) = self.is_reply.get(r) {
            // google.protobuf.BoolValue: present means a value, false included.
            message(out, 26, |out| boolean(out, 1, is_reply));
        }
        let (index, name) = (self.interface_index.get(r), self.interface_name.get(r));
        if index.is_some() || name.is_some() {
            message(out, 28, |out| {
                uint(out, 1, index.unwrap_or_default().into());
                string(out, 2, name);
            });
        }
        uint(out, 29, self.proxy_port.get(r).unwrap_or_default().into());
        if let Some(trace_id) = self.trace_id.get(r) {
            message(out, 30, |out| {
                message(out, 1, |out| string(out, 1, Some(trace_id)));
            });
        }
        enumeration(out, 31, &self.sock_xlate_point, r);
        uint(out, 32, self.socket_cookie.get(r).unwrap_or_default());
        uint(out, 33, self.cgroup_id.get(r).unwrap_or_default());
        string(out, 34, self.uuid.get(r));
        enumeration(out, 35, &self.auth_type, r);
        enumeration(out, 36, &self.trace_reason, r);
        self.node_labels.write(r, 37, out);
        let (file, line) = (self.file_name.get(r), self.file_line.get(r));
        if file.is_some() || line.is_some() {
            message(out, 38, |out| {
                string(out, 1, file);
                uint(out, 2, line.unwrap_or_default().into());
            });
        }
        self.tunnel(r, out);
        if let Some(trace_id) = self.ip_trace_id.get(r) {
            message(out, 40, |out| uint(out, 1, trace_id));
        }
        let (emitter, version) = (self.emitter_name.get(r), self.emitter_version.get(r));
        if emitter.is_some() || version.is_some() {
            message(out, 41, |out| {
                string(out, 1, emitter);
                string(out, 2, version);
            });
        }
        string(out, 100000, self.summary.get(r));
        self.egress_allowed_by.write(r, 21001, out);
        self.ingress_allowed_by.write(r, 21002, out);
        self.egress_denied_by.write(r, 21004, out);
        self.ingress_denied_by.write(r, 21005, out);
        self.policy_log.write(r, 21006, out);
        let counts = self.aggregate.each_ref().map(|c| c.get(r));
        if counts.iter().any(Option::is_some) {
            message(out, 21007, |out| {
                for (field, count) in (1..).zip(counts) {
                    uint(out, field, count.unwrap_or_default().into());
                }
            });
        }
    }

    fn ip(&self, r: usize, out: &mut Vec<u8>) {
        let (source, destination, xlated) = (
            self.ip_source.get(r),
            self.ip_destination.get(r),
            self.ip_source_xlated.get(r),
        );
        let encrypted = self.ip_encrypted.get(r);
        if source.is_none()
            && destination.is_none()
            && xlated.is_none()
            && encrypted.is_none()
            && !self.ip_version.is_valid(r)
        {
            return;
        }
        message(out, 5, |out| {
            string(out, 1, source);
            string(out, 2, destination);
            enumeration(out, 3, &self.ip_version, r);
            boolean(out, 4, encrypted.unwrap_or_default());
            string(out, 5, xlated);
        });
    }

    fn layer4(&self, r: usize, out: &mut Vec<u8>) {
        let Some(member) = self
            .l4_protocol
            .get(r)
            .and_then(|p| LAYER4.iter().position(|known| *known == p))
        else {
            return;
        };
        let member = member as u32 + 1;
        message(out, 6, |out| {
            message(out, member, |out| match member {
                // TCP, UDP, SCTP: ports; TCP also its flags, when any are set.
                1 | 2 | 5 => {
                    uint(out, 1, self.source_port.get(r).unwrap_or_default().into());
                    uint(
                        out,
                        2,
                        self.destination_port.get(r).unwrap_or_default().into(),
                    );
                    if member == 1 && !self.tcp_flags.is_empty(r) {
                        message(out, 3, |out| {
                            for (field, flag) in (1..).zip(TCP_FLAG_NAMES) {
                                boolean(out, field, self.tcp_flags.contains(r, flag));
                            }
                        });
                    }
                }
                // ICMPv4, ICMPv6.
                3 | 4 => {
                    uint(out, 1, self.icmp_type.get(r).unwrap_or_default().into());
                    uint(out, 2, self.icmp_code.get(r).unwrap_or_default().into());
                }
                // VRRP, IGMP: nothing stored.
                _ => {}
            });
        });
    }

    fn layer7(&self, r: usize, out: &mut Vec<u8>) {
        let record = match self.l7_protocol.get(r) {
            Some("dns") => Some(100),
            Some("http") => Some(101),
            Some("kafka") => Some(102),
            _ => None,
        };
        let latency = self.l7_latency_ns.get(r);
        if record.is_none() && latency.is_none() && !self.l7_type.is_valid(r) {
            return;
        }
        message(out, 15, |out| {
            enumeration(out, 1, &self.l7_type, r);
            uint(out, 2, latency.unwrap_or_default());
            match record {
                Some(100) => message(out, 100, |out| {
                    string(out, 1, self.dns_query.get(r));
                    self.dns_ips.write(r, 2, out);
                    uint(out, 3, self.dns_ttl.get(r).unwrap_or_default().into());
                    self.dns_cnames.write(r, 4, out);
                    string(out, 5, self.dns_observation_source.get(r));
                    uint(out, 6, self.dns_rcode.get(r).unwrap_or_default().into());
                    self.dns_qtypes.write(r, 7, out);
                    self.dns_rrtypes.write(r, 8, out);
                }),
                Some(101) => message(out, 101, |out| {
                    uint(out, 1, self.http_code.get(r).unwrap_or_default().into());
                    string(out, 2, self.http_method.get(r));
                    string(out, 3, self.http_url.get(r));
                    string(out, 4, self.http_protocol.get(r));
                    self.http_headers.write(r, 5, out);
                }),
                Some(_) => message(out, 102, |out| {
                    int32(out, 1, self.kafka_error_code.get(r).unwrap_or_default());
                    int32(out, 2, self.kafka_api_version.get(r).unwrap_or_default());
                    string(out, 3, self.kafka_api_key.get(r));
                    int32(out, 4, self.kafka_correlation_id.get(r).unwrap_or_default());
                    string(out, 5, self.kafka_topic.get(r));
                }),
                None => {}
            }
        });
    }

    fn tunnel(&self, r: usize, out: &mut Vec<u8>) {
        let (source, destination) = (
            self.tunnel_ip_source.get(r),
            self.tunnel_ip_destination.get(r),
        );
        let vni = self.tunnel_vni.get(r);
        if source.is_none()
            && destination.is_none()
            && vni.is_none()
            && !self.tunnel_protocol.is_valid(r)
        {
            return;
        }
        message(out, 39, |out| {
            enumeration(out, 1, &self.tunnel_protocol, r);
            if source.is_some() || destination.is_some() {
                message(out, 2, |out| {
                    string(out, 1, source);
                    string(out, 2, destination);
                });
            }
            uint(out, 4, vni.unwrap_or_default().into());
        });
    }
}

/// Wraps an encoded `Flow` (for instance one cut down by a field mask) as a
/// `GetFlowsResponse` whose `node_name` and `time` are the flow's own, as an agent sends them.
pub fn response_of_flow(flow: &[u8], out: &mut Vec<u8>) {
    bytes_field(out, RESPONSE_FLOW, flow);
    let (mut node_name, mut time) = (None, None);
    let mut fields = Message::new(flow);
    while let Ok(Some((field, value))) = fields.next() {
        match (field, value) {
            (FLOW_NODE_NAME, Value::Bytes(bytes)) => node_name = Some(bytes),
            (FLOW_TIME, Value::Bytes(bytes)) => time = Some(bytes),
            _ => {}
        }
    }
    if let Some(name) = node_name.filter(|n| !n.is_empty()) {
        bytes_field(out, RESPONSE_NODE_NAME, name);
    }
    if let Some(time) = time {
        bytes_field(out, RESPONSE_TIME, time);
    }
}

// The protobuf wire, written. Wire types: 0 varint, 2 length-delimited.

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

/// A length-delimited field, even when empty (a repeated item, a present message).
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A singular string: left out when NULL or empty.
fn string(out: &mut Vec<u8>, field: u32, text: Option<&str>) {
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        bytes_field(out, field, text.as_bytes());
    }
}

fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, 0);
        varint(out, value);
    }
}

/// An `int32` or an enum: negative values are sign-extended to 10 bytes, as protobuf does.
fn int32(out: &mut Vec<u8>, field: u32, value: i32) {
    if value != 0 {
        key(out, field, 0);
        varint(out, i64::from(value) as u64);
    }
}

fn enumeration(out: &mut Vec<u8>, field: u32, column: &Enum, row: usize) {
    int32(out, field, column.get(row));
}

fn boolean(out: &mut Vec<u8>, field: u32, value: bool) {
    if value {
        key(out, field, 0);
        out.push(1);
    }
}

fn timestamp(out: &mut Vec<u8>, field: u32, ns: i64) {
    message(out, field, |out| {
        let seconds = ns.div_euclid(1_000_000_000);
        if seconds != 0 {
            key(out, 1, 0);
            varint(out, seconds as u64);
        }
        int32(out, 2, ns.rem_euclid(1_000_000_000) as i32);
    });
}

/// A present embedded message: `body` writes its fields, the length is filled in after (one
/// byte is reserved; a longer body moves up by the extra length bytes).
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, 2);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        out.splice(at..at + 1, prefix);
    }
}
