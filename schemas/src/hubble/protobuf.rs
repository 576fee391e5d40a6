//! Hubble's `GetFlowsResponse` as the Observer API sends it (protobuf, cilium v1.19.4 field
//! numbers) read straight into rows of the flat flow and lost-event schemas: the live source's
//! decoder, beside [`super::flow`] for the JSON the same API prints.
//!
//! **The same row either way.** A flow received live and the same flow exported as protojson
//! and imported must give the same row, so this module follows protojson's view of a message,
//! which is what [`super::flow`] was written against: a proto3 scalar at its zero value is
//! absent (protojson omits it; the wire never carries it either, but a zero that does come is
//! treated alike), an empty string is absent, an enum at zero is NULL and any other number
//! takes its name, or stays a number when this build does not know it (JSON import does the
//! same: a newer Cilium's value is kept, not refused). The presence rules of messages are
//! [`super::flow`]'s: a present TCP header means ports 0 when omitted, a present `event_type`
//! means sub-type 0, and so on. A `oneof` takes its last member, as protobuf decoders do.
//!
//! Nothing is allocated per flow: strings go from the received bytes into the column buffers.

use super::enums::{self, EnumNames};
use super::flow::{
    Out, Side, DESTINATION, F, HEADER_FIELDS, L, LAYER4, LAYER7, POLICY_FIELDS, SOURCE,
    TCP_FLAG_NAMES,
};
use super::wire::{Message, Result, Value, WireError};
use crate::table::TableBuilder;

/// Which member of `GetFlowsResponse.response_types` a response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Flow,
    LostEvents,
    /// `node_status`, or a member this build does not know: nothing to record.
    Other,
}

/// What a response said besides the row it wrote: what the caller needs to decide whether to
/// keep it (deduplication) and to fill the row's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub kind: ResponseKind,
    /// The envelope's `time`.
    pub time: Option<i64>,
    pub node_name: Option<&'a str>,
    /// The flow's own `time` and `uuid`.
    pub flow_time: Option<i64>,
    pub uuid: Option<&'a str>,
    /// The lost event's `first`.
    pub lost_first: Option<i64>,
}

/// Reads one `GetFlowsResponse` into the tables (rows left uncommitted: the caller commits the
/// table `kind` names, or discards both).
pub(crate) fn response<'a>(
    bytes: &'a [u8],
    flows: &mut Out,
    lost: &mut TableBuilder,
    lost_at: &[usize],
) -> Result<Envelope<'a>> {
    let mut envelope = Envelope {
        kind: ResponseKind::Other,
        time: None,
        node_name: None,
        flow_time: None,
        uuid: None,
        lost_first: None,
    };
    let mut message = Message::new(bytes);
    while let Some((field, value)) = message.next()? {
        match field {
            1 => {
                envelope.kind = ResponseKind::Flow;
                (envelope.flow_time, envelope.uuid) =
                    flow(value.bytes()?, flows).map_err(|e| e.within("flow"))?;
            }
            2 => envelope.kind = ResponseKind::Other,
            3 => {
                envelope.kind = ResponseKind::LostEvents;
                envelope.lost_first =
                    lost_event(value, lost, lost_at).map_err(|e| e.within("lost_events"))?;
            }
            1000 => envelope.node_name = non_empty(value.str().map_err(|e| e.within("node_name"))?),
            1001 => envelope.time = Some(timestamp(value).map_err(|e| e.within("time"))?),
            _ => {}
        }
    }
    Ok(envelope)
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Protobuf field names of `Flow`, for error paths.
const FLOW_FIELD_NAMES: &[(u32, &str)] = &[
    (1, "time"),
    (2, "verdict"),
    (3, "drop_reason"),
    (4, "ethernet"),
    (5, "IP"),
    (6, "l4"),
    (8, "source"),
    (9, "destination"),
    (10, "Type"),
    (11, "node_name"),
    (13, "source_names"),
    (14, "destination_names"),
    (15, "l7"),
    (16, "reply"),
    (19, "event_type"),
    (20, "source_service"),
    (21, "destination_service"),
    (22, "traffic_direction"),
    (23, "policy_match_type"),
    (24, "trace_observation_point"),
    (25, "drop_reason_desc"),
    (26, "is_reply"),
    (28, "interface"),
    (29, "proxy_port"),
    (30, "trace_context"),
    (31, "sock_xlate_point"),
    (32, "socket_cookie"),
    (33, "cgroup_id"),
    (34, "uuid"),
    (35, "auth_type"),
    (36, "trace_reason"),
    (37, "node_labels"),
    (38, "file"),
    (39, "tunnel"),
    (40, "ip_trace_id"),
    (41, "emitter"),
    (100000, "Summary"),
    (21001, "egress_allowed_by"),
    (21002, "ingress_allowed_by"),
    (21004, "egress_denied_by"),
    (21005, "ingress_denied_by"),
    (21006, "policy_log"),
    (21007, "aggregate"),
];

/// A `Flow` into `out`; returns its `time` and `uuid`.
fn flow<'a>(bytes: &'a [u8], out: &mut Out) -> Result<(Option<i64>, Option<&'a str>)> {
    let mut message = Message::new(bytes);
    let (mut time, mut uuid) = (None, None);
    while let Some((field, value)) = message.next()? {
        let read = match field {
            1 => timestamp(value).map(|ns| {
                out.time(F::Time, ns);
                time = Some(ns);
            }),
            34 => value.str().map(|text| {
                uuid = non_empty(text);
                text_into(out, F::Uuid, text);
            }),
            _ => flow_field(&mut message, field, value, out),
        };
        read.map_err(
            |error| match FLOW_FIELD_NAMES.iter().find(|(number, _)| *number == field) {
                Some((_, name)) => error.within(name),
                None => error,
            },
        )?;
    }
    Ok((time, uuid))
}

fn flow_field(message: &mut Message, field: u32, value: Value, out: &mut Out) -> Result<()> {
    match field {
        2 => enumeration(out, F::Verdict, value, &enums::VERDICT)?,
        3 => uint32(out, F::DropReason, value)?,
        4 => strings_of(
            out,
            value,
            &[(1, F::EthernetSource), (2, F::EthernetDestination)],
        )?,
        5 => ip(out, value)?,
        6 => layer4(out, value)?,
        8 => endpoint(out, value, &SOURCE)?,
        9 => endpoint(out, value, &DESTINATION)?,
        10 => enumeration(out, F::Type, value, &enums::FLOW_TYPE)?,
        11 => text(out, F::NodeName, value)?,
        13 => strings(message, field, value, out, F::SourceNames)?,
        14 => strings(message, field, value, out, F::DestinationNames)?,
        15 => layer7(out, value)?,
        16 => boolean(out, F::Reply, value)?,
        19 => {
            let mut event_type = value.message()?;
            while let Some((field, value)) = event_type.next()? {
                match field {
                    1 => int32(out, F::EventType, value)?,
                    2 => int32(out, F::EventSubtype, value)?,
                    _ => {}
                }
            }
            if !out.is_set(F::EventSubtype) {
                out.table.i32(out.column(F::EventSubtype), 0);
            }
        }
        20 => service(out, value, &SOURCE)?,
        21 => service(out, value, &DESTINATION)?,
        22 => enumeration(out, F::TrafficDirection, value, &enums::TRAFFIC_DIRECTION)?,
        23 => uint32(out, F::PolicyMatchType, value)?,
        24 => enumeration(
            out,
            F::TraceObservationPoint,
            value,
            &enums::TRACE_OBSERVATION_POINT,
        )?,
        25 => enumeration(out, F::DropReasonDesc, value, &enums::DROP_REASON)?,
        26 => {
            // google.protobuf.BoolValue: present means a value, false included.
            let mut wrapper = value.message()?;
            let mut is_reply = false;
            while let Some((field, value)) = wrapper.next()? {
                if field == 1 {
                    is_reply = value.bool()?;
                }
            }
            out.table.bool(out.column(F::IsReply), is_reply);
        }
        28 => {
            let mut interface = value.message()?;
            while let Some((field, value)) = interface.next()? {
                match field {
                    1 => uint32(out, F::InterfaceIndex, value)?,
                    2 => text(out, F::InterfaceName, value)?,
                    _ => {}
                }
            }
        }
        29 => uint32(out, F::ProxyPort, value)?,
        30 => {
            let mut context = value.message()?;
            while let Some((field, value)) = context.next()? {
                if field == 1 {
                    strings_of(out, value, &[(1, F::TraceId)])?;
                }
            }
        }
        31 => enumeration(out, F::SockXlatePoint, value, &enums::SOCK_XLATE_POINT)?,
        32 => uint64(out, F::SocketCookie, value)?,
        33 => uint64(out, F::CgroupId, value)?,
        35 => enumeration(out, F::AuthType, value, &enums::AUTH_TYPE)?,
        36 => enumeration(out, F::TraceReason, value, &enums::TRACE_REASON)?,
        37 => strings(message, field, value, out, F::NodeLabels)?,
        38 => {
            let mut file = value.message()?;
            while let Some((field, value)) = file.next()? {
                match field {
                    1 => text(out, F::FileName, value)?,
                    2 => uint32(out, F::FileLine, value)?,
                    _ => {}
                }
            }
        }
        39 => tunnel(out, value)?,
        40 => {
            let mut trace = value.message()?;
            while let Some((field, value)) = trace.next()? {
                if field == 1 {
                    uint64(out, F::IpTraceId, value)?;
                }
            }
        }
        41 => strings_of(out, value, &[(1, F::EmitterName), (2, F::EmitterVersion)])?,
        100000 => text(out, F::Summary, value)?,
        21001 => policies(message, field, value, out, F::EgressAllowedBy)?,
        21002 => policies(message, field, value, out, F::IngressAllowedBy)?,
        21004 => policies(message, field, value, out, F::EgressDeniedBy)?,
        21005 => policies(message, field, value, out, F::IngressDeniedBy)?,
        21006 => strings(message, field, value, out, F::PolicyLog)?,
        21007 => {
            let mut aggregate = value.message()?;
            while let Some((field, value)) = aggregate.next()? {
                match field {
                    1 => uint32(out, F::AggregateIngressFlowCount, value)?,
                    2 => uint32(out, F::AggregateEgressFlowCount, value)?,
                    3 => uint32(out, F::AggregateUnknownDirectionFlowCount, value)?,
                    _ => {}
                }
            }
        }
        // debug_capture_point, extensions, and fields of newer releases: not stored.
        _ => {}
    }
    Ok(())
}

/// `google.protobuf.Timestamp` as ns since the epoch.
fn timestamp(value: Value) -> Result<i64> {
    let mut message = value.message()?;
    let (mut seconds, mut nanos) = (0i64, 0i32);
    while let Some((field, value)) = message.next()? {
        match field {
            1 => seconds = value.i64()?,
            2 => nanos = value.i32()?,
            _ => {}
        }
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(WireError::new(format!(
            "a timestamp with {nanos} nanoseconds"
        )));
    }
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(nanos)))
        .ok_or_else(|| WireError::new(format!("a timestamp of {seconds} s, out of range")))
}

fn text_into(out: &mut Out, column: F, text: &str) {
    if !text.is_empty() {
        out.str(column, text);
    }
}

fn text(out: &mut Out, column: F, value: Value) -> Result<()> {
    text_into(out, column, value.str()?);
    Ok(())
}

/// A proto3 number: zero is absent (protojson omits it).
fn number<T: Default + PartialEq>(
    out: &mut Out,
    column: F,
    value: T,
    put: fn(&mut TableBuilder, usize, T),
) {
    if value != T::default() {
        put(out.table, out.column(column), value);
    }
}

fn uint32(out: &mut Out, column: F, value: Value) -> Result<()> {
    number(out, column, value.u32()?, TableBuilder::u32);
    Ok(())
}

fn uint64(out: &mut Out, column: F, value: Value) -> Result<()> {
    number(out, column, value.varint()?, TableBuilder::u64);
    Ok(())
}

fn int32(out: &mut Out, column: F, value: Value) -> Result<()> {
    number(out, column, value.i32()?, TableBuilder::i32);
    Ok(())
}

fn boolean(out: &mut Out, column: F, value: Value) -> Result<()> {
    if value.bool()? {
        out.table.bool(out.column(column), true);
    }
    Ok(())
}

fn enumeration(out: &mut Out, column: F, value: Value, names: &EnumNames) -> Result<()> {
    if let Some(name) = names.by_number(value.i32()?) {
        out.str(column, &name);
    }
    Ok(())
}

/// A message whose listed string fields are stored as they are.
fn strings_of(out: &mut Out, value: Value, fields: &[(u32, F)]) -> Result<()> {
    let mut message = value.message()?;
    while let Some((field, value)) = message.next()? {
        if let Some((_, column)) = fields.iter().find(|(number, _)| *number == field) {
            text(out, *column, value)?;
        }
    }
    Ok(())
}

/// A repeated string: `first` and the items of the same field right after it (encoders write a
/// repeated field's items together; items further on replace these, they are not appended).
fn strings(
    message: &mut Message,
    field: u32,
    first: Value,
    out: &mut Out,
    column: F,
) -> Result<()> {
    let list = out.table.strings(out.column(column));
    list.push(first.str()?);
    while message.next_is(field) {
        let (_, value) = message.next()?.expect("a field was peeked");
        list.push(value.str()?);
    }
    list.end();
    Ok(())
}

/// A run of `Policy` messages (see [`strings`] for runs).
fn policies(
    message: &mut Message,
    field: u32,
    first: Value,
    out: &mut Out,
    column: F,
) -> Result<()> {
    let at = |name: &str| {
        POLICY_FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("a field")
    };
    let (name, namespace, kind, revision, labels) = (
        at("name"),
        at("namespace"),
        at("kind"),
        at("revision"),
        at("labels"),
    );
    let list = out.table.structs(out.column(column));
    let mut value = first;
    loop {
        list.element();
        let mut policy = value.message()?;
        while let Some((number, value)) = policy.next()? {
            match number {
                1 | 2 | 5 => {
                    let text = value.str()?;
                    let field = match number {
                        1 => name,
                        2 => namespace,
                        _ => kind,
                    };
                    if !text.is_empty() {
                        list.field_str(field, text);
                    }
                }
                3 => {
                    let items = list.field_strings(labels);
                    items.push(value.str()?);
                    while policy.next_is(3) {
                        let (_, value) = policy.next()?.expect("a field was peeked");
                        items.push(value.str()?);
                    }
                    items.end();
                }
                4 => {
                    let v = value.varint()?;
                    if v != 0 {
                        list.field_u64(revision, v);
                    }
                }
                _ => {}
            }
        }
        if !message.next_is(field) {
            break;
        }
        value = message.next()?.expect("a field was peeked").1;
    }
    list.end();
    Ok(())
}

fn ip(out: &mut Out, value: Value) -> Result<()> {
    let mut message = value.message()?;
    while let Some((field, value)) = message.next()? {
        match field {
            1 => text(out, F::IpSource, value)?,
            2 => text(out, F::IpDestination, value)?,
            3 => enumeration(out, F::IpVersion, value, &enums::IP_VERSION)?,
            4 => boolean(out, F::IpEncrypted, value)?,
            5 => text(out, F::IpSourceXlated, value)?,
            _ => {}
        }
    }
    Ok(())
}

/// The last member of a `oneof` among `members` (field numbers), and its value.
fn oneof<'a>(value: Value<'a>, members: &[u32]) -> Result<Option<(u32, Value<'a>)>> {
    let mut message = value.message()?;
    let mut last = None;
    while let Some((field, value)) = message.next()? {
        if members.contains(&field) {
            last = Some((field, value));
        }
    }
    Ok(last)
}

/// `Layer4`: its member's ports or ICMP type/code (0 when omitted: the message is present),
/// `tcp_flags` for TCP, and `l4_protocol` naming the member.
fn layer4(out: &mut Out, value: Value) -> Result<()> {
    let Some((member, value)) = oneof(value, &[1, 2, 3, 4, 5, 6, 7])? else {
        return Ok(());
    };
    let mut message = value.message()?;
    let mut flags = 0u16;
    while let Some((field, value)) = message.next()? {
        match (member, field) {
            (1 | 2 | 5, 1) => uint32(out, F::SourcePort, value)?,
            (1 | 2 | 5, 2) => uint32(out, F::DestinationPort, value)?,
            (1, 3) => {
                let mut set = value.message()?;
                while let Some((flag, value)) = set.next()? {
                    if (1..=TCP_FLAG_NAMES.len() as u32).contains(&flag) && value.bool()? {
                        flags |= 1 << (flag - 1);
                    }
                }
            }
            (3 | 4, 1) => uint32(out, F::IcmpType, value)?,
            (3 | 4, 2) => uint32(out, F::IcmpCode, value)?,
            _ => {}
        }
    }
    match member {
        1 | 2 | 5 => {
            out.zero_u32(F::SourcePort);
            out.zero_u32(F::DestinationPort);
        }
        3 | 4 => {
            out.zero_u32(F::IcmpType);
            out.zero_u32(F::IcmpCode);
        }
        _ => {}
    }
    if member == 1 {
        let list = out.table.strings(out.column(F::TcpFlags));
        for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
            if flags & (1 << bit) != 0 {
                list.push(name);
            }
        }
        list.end();
    }
    out.str(F::L4Protocol, LAYER4[member as usize - 1]);
    Ok(())
}

/// `Layer7`: type, latency, and its record (`dns` 100, `http` 101, `kafka` 102).
fn layer7(out: &mut Out, value: Value) -> Result<()> {
    let mut message = value.message()?;
    while let Some((field, value)) = message.next()? {
        match field {
            1 => enumeration(out, F::L7Type, value, &enums::L7_FLOW_TYPE)?,
            2 => uint64(out, F::L7LatencyNs, value)?,
            _ => {}
        }
    }
    let Some((member, value)) = oneof(value, &[100, 101, 102])? else {
        return Ok(());
    };
    let mut record = value.message()?;
    while let Some((field, value)) = record.next()? {
        match (member, field) {
            (101, 1) => uint32(out, F::HttpCode, value)?,
            (101, 2) => text(out, F::HttpMethod, value)?,
            (101, 3) => text(out, F::HttpUrl, value)?,
            (101, 4) => text(out, F::HttpProtocol, value)?,
            (101, 5) => headers(&mut record, value, out)?,
            (100, 1) => text(out, F::DnsQuery, value)?,
            (100, 2) => strings(&mut record, field, value, out, F::DnsIps)?,
            (100, 3) => uint32(out, F::DnsTtl, value)?,
            (100, 4) => strings(&mut record, field, value, out, F::DnsCnames)?,
            (100, 5) => text(out, F::DnsObservationSource, value)?,
            (100, 6) => uint32(out, F::DnsRcode, value)?,
            (100, 7) => strings(&mut record, field, value, out, F::DnsQtypes)?,
            (100, 8) => strings(&mut record, field, value, out, F::DnsRrtypes)?,
            (102, 1) => int32(out, F::KafkaErrorCode, value)?,
            (102, 2) => int32(out, F::KafkaApiVersion, value)?,
            (102, 3) => text(out, F::KafkaApiKey, value)?,
            (102, 4) => int32(out, F::KafkaCorrelationId, value)?,
            (102, 5) => text(out, F::KafkaTopic, value)?,
            _ => {}
        }
    }
    let protocol = match member {
        101 => "http",
        100 => "dns",
        _ => "kafka",
    };
    debug_assert!(LAYER7.contains(&protocol));
    out.str(F::L7Protocol, protocol);
    Ok(())
}

/// A run of `HTTPHeader` messages (field 5 of `HTTP`).
fn headers(record: &mut Message, first: Value, out: &mut Out) -> Result<()> {
    let (key, value_at) = (0, 1);
    debug_assert_eq!(HEADER_FIELDS, ["key", "value"]);
    let list = out.table.structs(out.column(F::HttpHeaders));
    let mut value = first;
    loop {
        list.element();
        let mut header = value.message()?;
        while let Some((field, value)) = header.next()? {
            if let 1 | 2 = field {
                let text = value.str()?;
                if !text.is_empty() {
                    list.field_str(if field == 1 { key } else { value_at }, text);
                }
            }
        }
        if !record.next_is(5) {
            break;
        }
        value = record.next()?.expect("a field was peeked").1;
    }
    list.end();
    Ok(())
}

/// An `Endpoint`; of its repeated `workloads`, the first is stored (the owner).
fn endpoint(out: &mut Out, value: Value, side: &Side) -> Result<()> {
    let mut message = value.message()?;
    let mut first_workload = true;
    while let Some((field, value)) = message.next()? {
        match field {
            1 => uint32(out, side.id, value)?,
            2 => uint32(out, side.identity, value)?,
            3 => text(out, side.namespace, value)?,
            4 => strings(&mut message, field, value, out, side.labels)?,
            5 => text(out, side.pod_name, value)?,
            6 if first_workload => {
                first_workload = false;
                strings_of(out, value, &[(1, side.workload), (2, side.workload_kind)])?;
            }
            7 => text(out, side.cluster_name, value)?,
            _ => {}
        }
    }
    Ok(())
}

fn service(out: &mut Out, value: Value, side: &Side) -> Result<()> {
    strings_of(
        out,
        value,
        &[(1, side.service_name), (2, side.service_namespace)],
    )
}

fn tunnel(out: &mut Out, value: Value) -> Result<()> {
    let mut message = value.message()?;
    while let Some((field, value)) = message.next()? {
        match field {
            1 => enumeration(out, F::TunnelProtocol, value, &enums::TUNNEL_PROTOCOL)?,
            2 => strings_of(
                out,
                value,
                &[(1, F::TunnelIpSource), (2, F::TunnelIpDestination)],
            )?,
            4 => uint32(out, F::TunnelVni, value)?,
            _ => {}
        }
    }
    Ok(())
}

/// A `LostEvent` into the lost-event table (columns at `at`); returns its `first` time.
fn lost_event(value: Value, table: &mut TableBuilder, at: &[usize]) -> Result<Option<i64>> {
    let column = |c: L| at[c as usize];
    let mut message = value.message()?;
    let mut first = None;
    while let Some((field, value)) = message.next()? {
        match field {
            1 => {
                if let Some(name) = enums::LOST_EVENT_SOURCE.by_number(value.i32()?) {
                    table.str(column(L::Source), &name);
                }
            }
            2 => {
                let v = value.varint()?;
                if v != 0 {
                    table.u64(column(L::NumEventsLost), v);
                }
            }
            3 => {
                // google.protobuf.Int32Value: present means a value, 0 included.
                let mut wrapper = value.message()?;
                let mut cpu = 0;
                while let Some((field, value)) = wrapper.next()? {
                    if field == 1 {
                        cpu = value.i32()?;
                    }
                }
                table.i32(column(L::Cpu), cpu);
            }
            4 => {
                let ns = timestamp(value)?;
                first = Some(ns);
                table.time(column(L::First), ns);
            }
            5 => table.time(column(L::Last), timestamp(value)?),
            _ => {}
        }
    }
    Ok(first)
}
