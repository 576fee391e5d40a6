//! Hubble's `Flow` and `LostEvent` messages (cilium v1.19.4 `flow.proto`, protojson field names:
//! `IP`, `Type`, `Summary`, `ID`, `TCP`, `ipVersion` verbatim) read straight into rows of the flat
//! flow and lost-event schemas.
//!
//! This module owns the mapping "proto field -> column" and the proto3 rules that go with it:
//! a number omitted inside a present message is 0 (ports of a present TCP header), an enum at its
//! zero value is NULL ([`super::enums`]), `l4_protocol`/`l7_protocol` name the `oneof` that is set,
//! `tcp_flags` lists the set flags in Hubble's order. Fields it does not know are skipped.

use std::borrow::Cow;

use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::{DataType, Schema};

use super::enums::{self, EnumNames};
use super::json::{Cursor, JsonError, Result};
use crate::table::{StringList, TableBuilder};

/// `TCPFlags` keys, in the order Hubble declares them; also the order of `tcp_flags` lists.
pub const TCP_FLAG_NAMES: [&str; 9] =
    ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

/// Declares the columns a decoder writes, as an enum whose variants index a table resolved by
/// name against the schema when the decoder is built: the schema's column order is free to
/// change, and a column missing from the schema stops the program at start-up, not mid-import.
/// `Variant => "column" in "field"` also names the message field the column comes from, as a
/// field mask names it (`IP`, `source.pod_name`): a top-level field, or an endpoint's own
/// field (endpoints are always present, so their fields can be read apart).
macro_rules! columns {
    (@field) => { None };
    (@field $field:literal) => { Some($field) };
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $column:literal $(in $field:literal)?,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) enum $name { $($variant,)* }

        impl $name {
            const NAMES: &'static [&'static str] = &[$($column,)*];
            const FIELDS: &'static [Option<&'static str>] = &[$(columns!(@field $($field)?),)*];
            /// Every variant, in declaration order.
            #[allow(dead_code)] // not every table's rows are encoded
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The column's name in the schema.
            #[allow(dead_code)] // not every table's rows are encoded
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The message field the column is written into; `None` for a column no field
            /// holds.
            #[allow(dead_code)] // not every table's rows are encoded
            pub fn field(self) -> Option<&'static str> {
                Self::FIELDS[self as usize]
            }

            /// Schema position of every variant, by variant index.
            pub fn resolve(schema: &Schema) -> Vec<usize> {
                Self::NAMES
                    .iter()
                    .map(|name| {
                        schema
                            .index_of(name)
                            .unwrap_or_else(|_| panic!("column {name} is not in the schema"))
                    })
                    .collect()
            }
        }
    };
}

columns! {
    /// Columns of `flows` that Hubble JSON fills.
    F {
        Time => "time" in "time",
        Uuid => "uuid" in "uuid",
        CaptureSource => "capture_source",
        NodeName => "node_name" in "node_name",
        NodeLabels => "node_labels" in "node_labels",
        Verdict => "verdict" in "verdict",
        DropReason => "drop_reason" in "drop_reason",
        DropReasonDesc => "drop_reason_desc" in "drop_reason_desc",
        AuthType => "auth_type" in "auth_type",
        Type => "type" in "Type",
        EventType => "event_type" in "event_type",
        EventSubtype => "event_subtype" in "event_type",
        TrafficDirection => "traffic_direction" in "traffic_direction",
        IsReply => "is_reply" in "is_reply",
        Reply => "reply" in "reply",
        TraceObservationPoint => "trace_observation_point" in "trace_observation_point",
        TraceReason => "trace_reason" in "trace_reason",
        PolicyMatchType => "policy_match_type" in "policy_match_type",
        EthernetSource => "ethernet_source" in "ethernet",
        EthernetDestination => "ethernet_destination" in "ethernet",
        IpSource => "ip_source" in "IP",
        IpDestination => "ip_destination" in "IP",
        IpSourceXlated => "ip_source_xlated" in "IP",
        IpVersion => "ip_version" in "IP",
        IpEncrypted => "ip_encrypted" in "IP",
        L4Protocol => "l4_protocol" in "l4",
        SourcePort => "source_port" in "l4",
        DestinationPort => "destination_port" in "l4",
        TcpFlags => "tcp_flags" in "l4",
        IcmpType => "icmp_type" in "l4",
        IcmpCode => "icmp_code" in "l4",
        SourceId => "source_id" in "source.ID",
        SourceIdentity => "source_identity" in "source.identity",
        SourceClusterName => "source_cluster_name" in "source.cluster_name",
        SourceNamespace => "source_namespace" in "source.namespace",
        SourcePodName => "source_pod_name" in "source.pod_name",
        SourceLabels => "source_labels" in "source.labels",
        SourceWorkload => "source_workload" in "source.workloads",
        SourceWorkloadKind => "source_workload_kind" in "source.workloads",
        SourceServiceName => "source_service_name" in "source_service",
        SourceServiceNamespace => "source_service_namespace" in "source_service",
        SourceNames => "source_names" in "source_names",
        DestinationId => "destination_id" in "destination.ID",
        DestinationIdentity => "destination_identity" in "destination.identity",
        DestinationClusterName => "destination_cluster_name" in "destination.cluster_name",
        DestinationNamespace => "destination_namespace" in "destination.namespace",
        DestinationPodName => "destination_pod_name" in "destination.pod_name",
        DestinationLabels => "destination_labels" in "destination.labels",
        DestinationWorkload => "destination_workload" in "destination.workloads",
        DestinationWorkloadKind => "destination_workload_kind" in "destination.workloads",
        DestinationServiceName => "destination_service_name" in "destination_service",
        DestinationServiceNamespace => "destination_service_namespace" in "destination_service",
        DestinationNames => "destination_names" in "destination_names",
        L7Type => "l7_type" in "l7",
        L7Protocol => "l7_protocol" in "l7",
        L7LatencyNs => "l7_latency_ns" in "l7",
        HttpCode => "http_code" in "l7",
        HttpMethod => "http_method" in "l7",
        HttpUrl => "http_url" in "l7",
        HttpProtocol => "http_protocol" in "l7",
        HttpHeaders => "http_headers" in "l7",
        DnsQuery => "dns_query" in "l7",
        DnsIps => "dns_ips" in "l7",
        DnsTtl => "dns_ttl" in "l7",
        DnsCnames => "dns_cnames" in "l7",
        DnsObservationSource => "dns_observation_source" in "l7",
        DnsRcode => "dns_rcode" in "l7",
        DnsQtypes => "dns_qtypes" in "l7",
        DnsRrtypes => "dns_rrtypes" in "l7",
        KafkaErrorCode => "kafka_error_code" in "l7",
        KafkaApiVersion => "kafka_api_version" in "l7",
        KafkaApiKey => "kafka_api_key" in "l7",
        KafkaCorrelationId => "kafka_correlation_id" in "l7",
        KafkaTopic => "kafka_topic" in "l7",
        EgressAllowedBy => "egress_allowed_by" in "egress_allowed_by",
        IngressAllowedBy => "ingress_allowed_by" in "ingress_allowed_by",
        EgressDeniedBy => "egress_denied_by" in "egress_denied_by",
        IngressDeniedBy => "ingress_denied_by" in "ingress_denied_by",
        PolicyLog => "policy_log" in "policy_log",
        InterfaceIndex => "interface_index" in "interface",
        InterfaceName => "interface_name" in "interface",
        ProxyPort => "proxy_port" in "proxy_port",
        TraceId => "trace_id" in "trace_context",
        IpTraceId => "ip_trace_id" in "ip_trace_id",
        SockXlatePoint => "sock_xlate_point" in "sock_xlate_point",
        SocketCookie => "socket_cookie" in "socket_cookie",
        CgroupId => "cgroup_id" in "cgroup_id",
        TunnelProtocol => "tunnel_protocol" in "tunnel",
        TunnelVni => "tunnel_vni" in "tunnel",
        TunnelIpSource => "tunnel_ip_source" in "tunnel",
        TunnelIpDestination => "tunnel_ip_destination" in "tunnel",
        FileName => "file_name" in "file",
        FileLine => "file_line" in "file",
        EmitterName => "emitter_name" in "emitter",
        EmitterVersion => "emitter_version" in "emitter",
        AggregateIngressFlowCount => "aggregate_ingress_flow_count" in "aggregate",
        AggregateEgressFlowCount => "aggregate_egress_flow_count" in "aggregate",
        AggregateUnknownDirectionFlowCount => "aggregate_unknown_direction_flow_count" in "aggregate",
        Summary => "summary" in "Summary",
    }
}

columns! {
    /// Columns of `lost_events`.
    L {
        Time => "time",
        CaptureSource => "capture_source",
        NodeName => "node_name",
        Source => "source",
        NumEventsLost => "num_events_lost",
        Cpu => "cpu",
        First => "first",
        Last => "last",
    }
}

/// Field positions inside the `list<struct>` columns, checked against the schema at start-up.
pub(crate) const POLICY_FIELDS: [&str; 5] = ["name", "namespace", "kind", "revision", "labels"];
pub(crate) const HEADER_FIELDS: [&str; 2] = ["key", "value"];

/// Panics unless `column`'s items are structs with exactly `fields`, in that order.
pub(crate) fn check_struct_fields(schema: &Schema, column: &str, fields: &[&str]) {
    let field = schema.field_with_name(column).expect("resolved column");
    let names: Vec<&str> = match field.data_type() {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(f) => f.iter().map(|f| f.name().as_str()).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    assert_eq!(names, fields, "struct fields of column {column}");
}

pub(crate) fn check_flow_schema(schema: &Schema) {
    for column in [
        "egress_allowed_by",
        "ingress_allowed_by",
        "egress_denied_by",
        "ingress_denied_by",
    ] {
        check_struct_fields(schema, column, &POLICY_FIELDS);
    }
    check_struct_fields(schema, "http_headers", &HEADER_FIELDS);
}

/// The row being written, addressed by column variant.
pub(crate) struct Out<'r> {
    pub table: &'r mut TableBuilder,
    pub at: &'r [usize],
}

impl Out<'_> {
    pub fn column(&self, column: F) -> usize {
        self.at[column as usize]
    }

    pub fn is_set(&self, column: F) -> bool {
        self.table.is_set(self.column(column))
    }

    pub fn str(&mut self, column: F, value: &str) {
        self.table.str(self.column(column), value);
    }

    pub fn time(&mut self, column: F, ns: i64) {
        self.table.time(self.column(column), ns);
    }

    /// Sets a number to 0 unless the row has one: the proto3 default of a field omitted inside
    /// a message that is present.
    pub fn zero_u32(&mut self, column: F) {
        if !self.is_set(column) {
            self.table.u32(self.column(column), 0);
        }
    }

    /// Reads a JSON string, or leaves the column NULL for `null`.
    fn text(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(text) = cursor.text()? {
            self.str(column, &text);
        }
        Ok(())
    }

    fn name(&mut self, cursor: &mut Cursor, column: F, names: &EnumNames) -> Result<()> {
        if let Some(name) = enum_name(cursor, names)? {
            self.str(column, &name);
        }
        Ok(())
    }

    fn u32(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.integer("an unsigned 32-bit integer")? {
            self.table.u32(self.column(column), v);
        }
        Ok(())
    }

    /// A top-level proto3 scalar (no presence): zero is "not set", as on the wire, where a
    /// zero is never sent. (JSON writers other than protojson may spell it out.)
    fn u32_unless_zero(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.integer::<u32>("an unsigned 32-bit integer")? {
            if v != 0 {
                self.table.u32(self.column(column), v);
            }
        }
        Ok(())
    }

    /// [`Out::u32_unless_zero`] for 64-bit scalars.
    fn u64_unless_zero(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.integer::<u64>("an unsigned 64-bit integer")? {
            if v != 0 {
                self.table.u64(self.column(column), v);
            }
        }
        Ok(())
    }

    fn u64(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.integer("an unsigned 64-bit integer")? {
            self.table.u64(self.column(column), v);
        }
        Ok(())
    }

    fn i32(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.integer("a 32-bit integer")? {
            self.table.i32(self.column(column), v);
        }
        Ok(())
    }

    fn boolean(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        if let Some(v) = cursor.boolean()? {
            self.table.bool(self.column(column), v);
        }
        Ok(())
    }

    fn strings(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        let list = self.table.strings(self.column(column));
        if string_items(cursor, list)? {
            list.end();
        }
        Ok(())
    }

    /// A list of `Policy` messages.
    fn policies(&mut self, cursor: &mut Cursor, column: F) -> Result<()> {
        let list = self.table.structs(self.column(column));
        let present = cursor.array(|cursor| {
            list.element();
            cursor
                .object(|cursor, key| {
                    let Some(field) = POLICY_FIELDS.iter().position(|f| *f == key) else {
                        return cursor.skip();
                    };
                    match key {
                        "revision" => {
                            if let Some(v) = cursor.integer("an unsigned 64-bit integer")? {
                                list.field_u64(field, v);
                            }
                        }
                        "labels" => {
                            let labels = list.field_strings(field);
                            if string_items(cursor, labels)? {
                                labels.end();
                            }
                        }
                        _ => {
                            if let Some(text) = cursor.text()? {
                                list.field_str(field, &text);
                            }
                        }
                    }
                    Ok(())
                })
                .map(drop)
        })?;
        if present {
            list.end();
        }
        Ok(())
    }
}

/// Pushes the strings of a JSON array onto `list`; false for `null` (the list stays unset).
fn string_items(cursor: &mut Cursor, list: &mut StringList) -> Result<bool> {
    cursor.array(|cursor| {
        // protojson never writes null items; another writer's null carries nothing to keep.
        if let Some(value) = cursor.text()? {
            list.push(&value);
        }
        Ok(())
    })
}

/// An enum as its stored name (numbers named, zero value NULL).
fn enum_name<'a>(cursor: &mut Cursor<'a>, names: &EnumNames) -> Result<Option<Cow<'a, str>>> {
    Ok(match cursor.text()? {
        None => None,
        Some(Cow::Borrowed(raw)) => names.normalize(raw),
        Some(Cow::Owned(raw)) => names.normalize(&raw).map(|n| Cow::Owned(n.into_owned())),
    })
}

/// An RFC 3339 timestamp (protojson's `google.protobuf.Timestamp`) as ns since the epoch.
pub(crate) fn timestamp(cursor: &mut Cursor) -> Result<Option<i64>> {
    let Some(text) = cursor.text()? else {
        return Ok(None);
    };
    string_to_timestamp_nanos(&text)
        .map(Some)
        .map_err(|_| JsonError::new(format!("invalid timestamp \"{text}\"")))
}

/// Reads the value of `key` of a `Flow` into `out`. Returns false, with the value not consumed,
/// for a key that is not a Flow field (the caller skips it or knows it as something else).
pub(crate) fn flow_field(cursor: &mut Cursor, out: &mut Out, key: &str) -> Result<bool> {
    match key {
        "time" => {
            if let Some(ns) = timestamp(cursor)? {
                out.time(F::Time, ns);
            }
        }
        "uuid" => out.text(cursor, F::Uuid)?,
        "verdict" => out.name(cursor, F::Verdict, &enums::VERDICT)?,
        "drop_reason" => out.u32_unless_zero(cursor, F::DropReason)?,
        "drop_reason_desc" => out.name(cursor, F::DropReasonDesc, &enums::DROP_REASON)?,
        "auth_type" => out.name(cursor, F::AuthType, &enums::AUTH_TYPE)?,
        "Type" => out.name(cursor, F::Type, &enums::FLOW_TYPE)?,
        "node_name" => out.text(cursor, F::NodeName)?,
        "node_labels" => out.strings(cursor, F::NodeLabels)?,
        "traffic_direction" => out.name(cursor, F::TrafficDirection, &enums::TRAFFIC_DIRECTION)?,
        "is_reply" => out.boolean(cursor, F::IsReply)?,
        "reply" => out.boolean(cursor, F::Reply)?,
        "trace_observation_point" => out.name(
            cursor,
            F::TraceObservationPoint,
            &enums::TRACE_OBSERVATION_POINT,
        )?,
        "trace_reason" => out.name(cursor, F::TraceReason, &enums::TRACE_REASON)?,
        "policy_match_type" => out.u32_unless_zero(cursor, F::PolicyMatchType)?,
        "sock_xlate_point" => out.name(cursor, F::SockXlatePoint, &enums::SOCK_XLATE_POINT)?,
        "socket_cookie" => out.u64_unless_zero(cursor, F::SocketCookie)?,
        "cgroup_id" => out.u64_unless_zero(cursor, F::CgroupId)?,
        "proxy_port" => out.u32_unless_zero(cursor, F::ProxyPort)?,
        "Summary" => out.text(cursor, F::Summary)?,
        "source_names" => out.strings(cursor, F::SourceNames)?,
        "destination_names" => out.strings(cursor, F::DestinationNames)?,
        "egress_allowed_by" => out.policies(cursor, F::EgressAllowedBy)?,
        "ingress_allowed_by" => out.policies(cursor, F::IngressAllowedBy)?,
        "egress_denied_by" => out.policies(cursor, F::EgressDeniedBy)?,
        "ingress_denied_by" => out.policies(cursor, F::IngressDeniedBy)?,
        "policy_log" => out.strings(cursor, F::PolicyLog)?,
        "IP" => ip(cursor, out)?,
        "l4" => layer4(cursor, out)?,
        "l7" => layer7(cursor, out)?,
        "source" => endpoint(cursor, out, &SOURCE)?,
        "destination" => endpoint(cursor, out, &DESTINATION)?,
        "source_service" => service(cursor, out, &SOURCE)?,
        "destination_service" => service(cursor, out, &DESTINATION)?,
        "event_type" => {
            let present = cursor.object(|cursor, key| match key {
                "type" => out.i32(cursor, F::EventType),
                "sub_type" => out.i32(cursor, F::EventSubtype),
                _ => cursor.skip(),
            })?;
            if present && !out.is_set(F::EventSubtype) {
                out.table.i32(out.column(F::EventSubtype), 0);
            }
        }
        "ethernet" => fields(
            cursor,
            out,
            &[
                ("source", F::EthernetSource),
                ("destination", F::EthernetDestination),
            ],
        )?,
        "interface" => {
            cursor.object(|cursor, key| match key {
                "index" => out.u32(cursor, F::InterfaceIndex),
                "name" => out.text(cursor, F::InterfaceName),
                _ => cursor.skip(),
            })?;
        }
        "file" => {
            cursor.object(|cursor, key| match key {
                "name" => out.text(cursor, F::FileName),
                "line" => out.u32(cursor, F::FileLine),
                _ => cursor.skip(),
            })?;
        }
        "emitter" => fields(
            cursor,
            out,
            &[("name", F::EmitterName), ("version", F::EmitterVersion)],
        )?,
        "trace_context" => {
            cursor.object(|cursor, key| match key {
                "parent" => fields(cursor, out, &[("trace_id", F::TraceId)]),
                _ => cursor.skip(),
            })?;
        }
        "ip_trace_id" => {
            cursor.object(|cursor, key| match key {
                "trace_id" => out.u64(cursor, F::IpTraceId),
                _ => cursor.skip(),
            })?;
        }
        "aggregate" => {
            cursor.object(|cursor, key| match key {
                "ingress_flow_count" => out.u32(cursor, F::AggregateIngressFlowCount),
                "egress_flow_count" => out.u32(cursor, F::AggregateEgressFlowCount),
                "unknown_direction_flow_count" => {
                    out.u32(cursor, F::AggregateUnknownDirectionFlowCount)
                }
                _ => cursor.skip(),
            })?;
        }
        "tunnel" => {
            cursor.object(|cursor, key| match key {
                "protocol" => out.name(cursor, F::TunnelProtocol, &enums::TUNNEL_PROTOCOL),
                "vni" => out.u32(cursor, F::TunnelVni),
                "IP" => fields(
                    cursor,
                    out,
                    &[
                        ("source", F::TunnelIpSource),
                        ("destination", F::TunnelIpDestination),
                    ],
                ),
                _ => cursor.skip(),
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// An object whose listed keys are strings stored as they are.
fn fields(cursor: &mut Cursor, out: &mut Out, keys: &[(&str, F)]) -> Result<()> {
    cursor.object(|cursor, key| match keys.iter().find(|(k, _)| *k == key) {
        Some((_, column)) => out.text(cursor, *column),
        None => cursor.skip(),
    })?;
    Ok(())
}

fn ip(cursor: &mut Cursor, out: &mut Out) -> Result<()> {
    cursor.object(|cursor, key| match key {
        "source" => out.text(cursor, F::IpSource),
        "destination" => out.text(cursor, F::IpDestination),
        "source_xlated" => out.text(cursor, F::IpSourceXlated),
        "ipVersion" => out.name(cursor, F::IpVersion, &enums::IP_VERSION),
        "encrypted" => out.boolean(cursor, F::IpEncrypted),
        _ => cursor.skip(),
    })?;
    Ok(())
}

/// The `Layer4` oneof, in the order `l4_protocol` names the first one set.
pub(crate) const LAYER4: [&str; 7] = ["TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", "VRRP", "IGMP"];

fn layer4(cursor: &mut Cursor, out: &mut Out) -> Result<()> {
    let mut present = [false; LAYER4.len()];
    cursor.object(|cursor, key| {
        let Some(kind) = LAYER4.iter().position(|k| *k == key) else {
            return cursor.skip();
        };
        present[kind] = match key {
            "TCP" => {
                let mut flags: Option<u16> = None;
                let present = cursor.object(|cursor, key| match key {
                    "source_port" => out.u32(cursor, F::SourcePort),
                    "destination_port" => out.u32(cursor, F::DestinationPort),
                    "flags" => {
                        let mut set = 0u16;
                        cursor.object(|cursor, flag| {
                            let bit = TCP_FLAG_NAMES.iter().position(|n| *n == flag);
                            if let (Some(true), Some(bit)) = (cursor.boolean()?, bit) {
                                set |= 1 << bit;
                            }
                            Ok(())
                        })?;
                        flags = Some(set);
                        Ok(())
                    }
                    _ => cursor.skip(),
                })?;
                if present {
                    let list = out.table.strings(out.column(F::TcpFlags));
                    for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
                        if flags.unwrap_or(0) & (1 << bit) != 0 {
                            list.push(name);
                        }
                    }
                    list.end();
                }
                present
            }
            "UDP" | "SCTP" => cursor.object(|cursor, key| match key {
                "source_port" => out.u32(cursor, F::SourcePort),
                "destination_port" => out.u32(cursor, F::DestinationPort),
                _ => cursor.skip(),
            })?,
            "ICMPv4" | "ICMPv6" => cursor.object(|cursor, key| match key {
                "type" => out.u32(cursor, F::IcmpType),
                "code" => out.u32(cursor, F::IcmpCode),
                _ => cursor.skip(),
            })?,
            // VRRP and IGMP have no columns of their own: only `l4_protocol` records them.
            _ => cursor.object(|cursor, _| cursor.skip())?,
        };
        Ok(())
    })?;
    if let Some(kind) = present.iter().position(|p| *p) {
        out.str(F::L4Protocol, LAYER4[kind]);
    }
    if present[0] || present[1] || present[4] {
        out.zero_u32(F::SourcePort);
        out.zero_u32(F::DestinationPort);
    }
    if present[2] || present[3] {
        out.zero_u32(F::IcmpType);
        out.zero_u32(F::IcmpCode);
    }
    Ok(())
}

/// The `Layer7` oneof, in the order `l7_protocol` names the first one set.
pub(crate) const LAYER7: [&str; 3] = ["http", "dns", "kafka"];

fn layer7(cursor: &mut Cursor, out: &mut Out) -> Result<()> {
    let mut present = [false; LAYER7.len()];
    cursor.object(|cursor, key| {
        match key {
            "type" => out.name(cursor, F::L7Type, &enums::L7_FLOW_TYPE)?,
            "latency_ns" => out.u64(cursor, F::L7LatencyNs)?,
            "http" => {
                present[0] = cursor.object(|cursor, key| match key {
                    "code" => out.u32(cursor, F::HttpCode),
                    "method" => out.text(cursor, F::HttpMethod),
                    "url" => out.text(cursor, F::HttpUrl),
                    "protocol" => out.text(cursor, F::HttpProtocol),
                    "headers" => headers(cursor, out),
                    _ => cursor.skip(),
                })?
            }
            "dns" => {
                present[1] = cursor.object(|cursor, key| match key {
                    "query" => out.text(cursor, F::DnsQuery),
                    "ips" => out.strings(cursor, F::DnsIps),
                    "ttl" => out.u32(cursor, F::DnsTtl),
                    "cnames" => out.strings(cursor, F::DnsCnames),
                    "observation_source" => out.text(cursor, F::DnsObservationSource),
                    "rcode" => out.u32(cursor, F::DnsRcode),
                    "qtypes" => out.strings(cursor, F::DnsQtypes),
                    "rrtypes" => out.strings(cursor, F::DnsRrtypes),
                    _ => cursor.skip(),
                })?
            }
            "kafka" => {
                present[2] = cursor.object(|cursor, key| match key {
                    "error_code" => out.i32(cursor, F::KafkaErrorCode),
                    "api_version" => out.i32(cursor, F::KafkaApiVersion),
                    "api_key" => out.text(cursor, F::KafkaApiKey),
                    "correlation_id" => out.i32(cursor, F::KafkaCorrelationId),
                    "topic" => out.text(cursor, F::KafkaTopic),
                    _ => cursor.skip(),
                })?
            }
            _ => cursor.skip()?,
        }
        Ok(())
    })?;
    if let Some(kind) = present.iter().position(|p| *p) {
        out.str(F::L7Protocol, LAYER7[kind]);
    }
    Ok(())
}

fn headers(cursor: &mut Cursor, out: &mut Out) -> Result<()> {
    let list = out.table.structs(out.column(F::HttpHeaders));
    let present = cursor.array(|cursor| {
        list.element();
        cursor
            .object(
                |cursor, key| match HEADER_FIELDS.iter().position(|f| *f == key) {
                    Some(field) => {
                        if let Some(text) = cursor.text()? {
                            list.field_str(field, &text);
                        }
                        Ok(())
                    }
                    None => cursor.skip(),
                },
            )
            .map(drop)
    })?;
    if present {
        list.end();
    }
    Ok(())
}

/// The columns of one side of a flow.
pub(crate) struct Side {
    pub id: F,
    pub identity: F,
    pub cluster_name: F,
    pub namespace: F,
    pub pod_name: F,
    pub labels: F,
    pub workload: F,
    pub workload_kind: F,
    pub service_name: F,
    pub service_namespace: F,
}

pub(crate) const SOURCE: Side = Side {
    id: F::SourceId,
    identity: F::SourceIdentity,
    cluster_name: F::SourceClusterName,
    namespace: F::SourceNamespace,
    pod_name: F::SourcePodName,
    labels: F::SourceLabels,
    workload: F::SourceWorkload,
    workload_kind: F::SourceWorkloadKind,
    service_name: F::SourceServiceName,
    service_namespace: F::SourceServiceNamespace,
};

pub(crate) const DESTINATION: Side = Side {
    id: F::DestinationId,
    identity: F::DestinationIdentity,
    cluster_name: F::DestinationClusterName,
    namespace: F::DestinationNamespace,
    pod_name: F::DestinationPodName,
    labels: F::DestinationLabels,
    workload: F::DestinationWorkload,
    workload_kind: F::DestinationWorkloadKind,
    service_name: F::DestinationServiceName,
    service_namespace: F::DestinationServiceNamespace,
};

/// An `Endpoint`; of its repeated `workloads`, the first is stored (the owner).
fn endpoint(cursor: &mut Cursor, out: &mut Out, side: &Side) -> Result<()> {
    cursor.object(|cursor, key| match key {
        "ID" => out.u32(cursor, side.id),
        "identity" => out.u32(cursor, side.identity),
        "cluster_name" => out.text(cursor, side.cluster_name),
        "namespace" => out.text(cursor, side.namespace),
        "pod_name" => out.text(cursor, side.pod_name),
        "labels" => out.strings(cursor, side.labels),
        "workloads" => {
            let mut first = true;
            cursor.array(|cursor| {
                if !first {
                    return cursor.skip();
                }
                first = false;
                fields(
                    cursor,
                    out,
                    &[("name", side.workload), ("kind", side.workload_kind)],
                )
            })?;
            Ok(())
        }
        _ => cursor.skip(),
    })?;
    Ok(())
}

fn service(cursor: &mut Cursor, out: &mut Out, side: &Side) -> Result<()> {
    fields(
        cursor,
        out,
        &[
            ("name", side.service_name),
            ("namespace", side.service_namespace),
        ],
    )
}

/// Reads a `LostEvent` into the lost-event table (columns at `at`). Returns whether it was
/// present, and its `first` time (the row's time when the envelope has none).
pub(crate) fn lost_event(
    cursor: &mut Cursor,
    table: &mut TableBuilder,
    at: &[usize],
) -> Result<(bool, Option<i64>)> {
    let column = |c: L| at[c as usize];
    let mut first = None;
    let present = cursor.object(|cursor, key| {
        match key {
            "source" => {
                if let Some(name) = enum_name(cursor, &enums::LOST_EVENT_SOURCE)? {
                    table.str(column(L::Source), &name);
                }
            }
            "num_events_lost" => {
                if let Some(v) = cursor.integer("an unsigned 64-bit integer")? {
                    table.u64(column(L::NumEventsLost), v);
                }
            }
            "cpu" => {
                if let Some(v) = cursor.integer("a 32-bit integer")? {
                    table.i32(column(L::Cpu), v);
                }
            }
            "first" => {
                first = timestamp(cursor)?;
                if let Some(ns) = first {
                    table.time(column(L::First), ns);
                }
            }
            "last" => {
                if let Some(ns) = timestamp(cursor)? {
                    table.time(column(L::Last), ns);
                }
            }
            _ => cursor.skip()?,
        }
        Ok(())
    })?;
    Ok((present, first))
}
