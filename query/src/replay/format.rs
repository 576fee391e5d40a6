//! `hubble observe` output formats for replayed flows, byte for byte as the hubble CLI prints
//! them with `--color never` (hubble/pkg/printer): `compact` (the default), `dict`, `table`,
//! and `json`/`jsonpb` (the `GetFlowsResponse` envelope, one per line, which `hubble observe
//! --input-file -` and `flowrec import` read back).
//!
//! The printer works on the `Flow` message, as Hubble's does, so every rule below is Hubble's:
//! hosts are pod, else service, else DNS names, else IP; identities 0-10 print as their
//! reserved names; the arrow follows `is_reply`; the type of a drop is the text of its reason.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use hubble_api::flow::{
    layer4, layer7, AuthType, DebugCapturePoint, Flow, L7FlowType, Policy, SocketTranslationPoint,
    TrafficDirection, Verdict,
};
use hubble_api::observe_flags::TRACE_POINTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per flow, as `hubble observe` prints by default
    Compact,
    /// One block of KEY: value lines per flow
    Dict,
    /// Aligned columns (printed when all flows are read)
    Table,
    /// The GetFlowsResponse envelope, one JSON object per line (same as jsonpb)
    Json,
    /// The GetFlowsResponse envelope, one JSON object per line
    Jsonpb,
}

/// How timestamps print (`--time-format`), as hubble names the layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    #[value(name = "StampMilli")]
    StampMilli,
    #[value(name = "RFC3339")]
    Rfc3339,
    #[value(name = "RFC3339Milli")]
    Rfc3339Milli,
    #[value(name = "RFC3339Micro")]
    Rfc3339Micro,
    #[value(name = "RFC3339Nano")]
    Rfc3339Nano,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub format: Format,
    pub time_format: TimeFormat,
    pub print_node_name: bool,
    pub print_policy_names: bool,
}

/// Writes flows in one format; `finish` flushes what a format holds back (the table).
pub struct FlowWriter<W: Write> {
    out: W,
    options: Options,
    written: usize,
    table: Vec<Vec<String>>,
}

impl<W: Write> FlowWriter<W> {
    pub fn new(out: W, options: Options) -> Self {
        FlowWriter {
            out,
            options,
            written: 0,
            table: Vec::new(),
        }
    }

    pub fn write(&mut self, flow: Flow) -> io::Result<()> {
        let o = self.options;
        match o.format {
            Format::Compact => writeln!(self.out, "{}", compact(&flow, &o))?,
            Format::Dict => {
                if self.written > 0 {
                    writeln!(self.out, "------------")?;
                }
                write!(self.out, "{}", dict(&flow, &o))?;
            }
            Format::Table => self.table.push(table_row(&flow, &o)),
            Format::Json | Format::Jsonpb => writeln!(self.out, "{}", jsonpb(flow))?,
        }
        self.written += 1;
        Ok(())
    }

    /// A lost-events record, among the flows as Hubble prints them.
    pub fn write_lost(&mut self, lost: &LostEvents) -> io::Result<()> {
        let o = self.options;
        let node = lost.node_name.as_str();
        let summary = lost.summary(o.time_format);
        let time = stamp(lost.time, o.time_format);
        match o.format {
            Format::Compact => writeln!(
                self.out,
                "{time} EVENTS LOST: {} CPU({}) {}{}",
                lost.source,
                lost.cpu.unwrap_or(0),
                lost.num_events_lost,
                lost.span(o.time_format)
            )?,
            Format::Dict => {
                if self.written > 0 {
                    writeln!(self.out, "------------")?;
                }
                writeln!(self.out, "  TIMESTAMP: {time}")?;
                if o.print_node_name {
                    writeln!(self.out, "       NODE: {node}")?;
                }
                writeln!(
                    self.out,
                    "     SOURCE: {}\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: {summary}",
                    lost.source
                )?;
            }
            Format::Table => {
                let mut row = vec![time];
                if o.print_node_name {
                    row.push(node.to_owned());
                }
                row.extend([
                    lost.source.clone(),
                    "-".into(),
                    "EVENTS LOST".into(),
                    "-".into(),
                    summary,
                ]);
                self.table.push(row);
            }
            Format::Json | Format::Jsonpb => writeln!(self.out, "{}", lost.jsonpb())?,
        }
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        if self.options.format == Format::Table && !self.table.is_empty() {
            let mut header = vec!["TIMESTAMP".to_owned()];
            if self.options.print_node_name {
                header.push("NODE".into());
            }
            header
                .extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(String::from));
            self.table.insert(0, header);
            write!(self.out, "{}", align(&self.table))?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Go's tabwriter with padding 3: every column but the last as wide as its widest cell + 3.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] + 3 - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    }
    text
}

pub fn compact(flow: &Flow, o: &Options) -> String {
    let node = if o.print_node_name {
        format!(" [{}]", flow.node_name)
    } else {
        String::new()
    };
    let (mut src, mut dst) = hosts(flow);
    let mut src_id = identity(flow.source.as_ref().map_or(0, |e| e.identity));
    let mut dst_id = identity(flow.destination.as_ref().map_or(0, |e| e.identity));
    let arrow = match flow.is_reply.map(|r| r.value) {
        None => "<>",
        Some(false) => "->",
        Some(true) => {
            std::mem::swap(&mut src, &mut dst);
            std::mem::swap(&mut src_id, &mut dst_id);
            "<-"
        }
    };
    escape(&format!(
        "{}{node}: {src} {src_id} {arrow} {dst} {dst_id} {} {} ({})",
        time(flow, o.time_format),
        flow_type(flow),
        verdict(flow, o.print_policy_names),
        summary(flow),
    ))
}

pub fn dict(flow: &Flow, o: &Options) -> String {
    let (src, dst) = hosts(flow);
    let mut text = format!("  TIMESTAMP: {}\n", time(flow, o.time_format));
    if o.print_node_name {
        text.push_str(&format!("       NODE: {}\n", flow.node_name));
    }
    text.push_str(&format!(
        "     SOURCE: {src}\nDESTINATION: {dst}\n       TYPE: {}\n    VERDICT: {}\n    SUMMARY: {}\n",
        flow_type(flow),
        verdict(flow, o.print_policy_names),
        summary(flow)
    ));
    escape(&text)
}

fn table_row(flow: &Flow, o: &Options) -> Vec<String> {
    let (src, dst) = hosts(flow);
    let mut row = vec![time(flow, o.time_format)];
    if o.print_node_name {
        row.push(flow.node_name.clone());
    }
    row.extend([
        src,
        dst,
        flow_type(flow),
        verdict(flow, o.print_policy_names),
        summary(flow),
    ]);
    row.into_iter().map(|cell| escape(&cell)).collect()
}

/// The envelope Hubble streams, as its CLI prints it (Go's protojson through encoding/json):
/// `{"flow":{…},"node_name":…,"time":…}`, proto field names in declaration order, times in UTC
/// with `Z`, and `<`, `>`, `&` escaped.
pub fn jsonpb(mut flow: Flow) -> String {
    let time = flow.time.take().and_then(rfc3339);
    let body = serde_json::to_string(&flow).expect("a Flow serializes");
    let mut text = String::with_capacity(body.len() + 100);
    text.push_str(r#"{"flow":{"#);
    // `time` is the Flow's first field.
    if let Some(time) = &time {
        text.push_str(&format!(r#""time":"{time}""#));
        if body.len() > 2 {
            text.push(',');
        }
    }
    text.push_str(&body[1..]);
    if !flow.node_name.is_empty() {
        text.push_str(r#","node_name":"#);
        text.push_str(&serde_json::to_string(&flow.node_name).expect("a string serializes"));
    }
    if let Some(time) = &time {
        text.push_str(&format!(r#","time":"{time}""#));
    }
    text.push('}');
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A protobuf Timestamp as protojson writes it: UTC, `Z`, 0, 3, 6 or 9 fraction digits.
fn rfc3339(t: pbjson_types::Timestamp) -> Option<String> {
    let time = DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A `LostEvent` record (a row of `lost_events`): events Hubble (or the recorder, while
/// disconnected) could not deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct LostEvents {
    pub time: Option<pbjson_types::Timestamp>,
    pub node_name: String,
    pub source: String,
    pub num_events_lost: u64,
    pub cpu: Option<i32>,
    pub first: Option<pbjson_types::Timestamp>,
    pub last: Option<pbjson_types::Timestamp>,
}

impl LostEvents {
    fn span(&self, format: TimeFormat) -> String {
        match (self.first, self.last) {
            (None, None) => String::new(),
            (first, last) => format!(
                " (first: {}, last: {})",
                stamp(first, format),
                stamp(last, format)
            ),
        }
    }

    fn summary(&self, format: TimeFormat) -> String {
        format!(
            "CPU({}) - {}{}",
            self.cpu.unwrap_or(0),
            self.num_events_lost,
            self.span(format)
        )
    }

    /// `{"lost_events":{…},"node_name":…,"time":…}`, as hubble prints it.
    fn jsonpb(&self) -> String {
        let mut fields = vec![format!(
            r#""source":{}"#,
            serde_json::to_string(&self.source).expect("a string serializes")
        )];
        if self.num_events_lost > 0 {
            fields.push(format!(r#""num_events_lost":"{}""#, self.num_events_lost));
        }
        if let Some(cpu) = self.cpu {
            fields.push(format!(r#""cpu":{cpu}"#));
        }
        for (name, t) in [("first", self.first), ("last", self.last)] {
            if let Some(t) = t.and_then(rfc3339) {
                fields.push(format!(r#""{name}":"{t}""#));
            }
        }
        let mut text = format!(r#"{{"lost_events":{{{}}}"#, fields.join(","));
        if !self.node_name.is_empty() {
            text.push_str(&format!(
                r#","node_name":{}"#,
                serde_json::to_string(&self.node_name).expect("a string serializes")
            ));
        }
        if let Some(t) = self.time.and_then(rfc3339) {
            text.push_str(&format!(r#","time":"{t}""#));
        }
        text.push('}');
        text
    }
}

/// ESC and CR would drive the terminal: printed visibly, as hubble does.
fn escape(text: &str) -> String {
    if !text.contains(['\x1b', '\r']) {
        return text.to_owned();
    }
    text.replace('\x1b', "^[").replace('\r', "\\r")
}

fn time(flow: &Flow, format: TimeFormat) -> String {
    stamp(flow.time, format)
}

fn stamp(t: Option<pbjson_types::Timestamp>, format: TimeFormat) -> String {
    let Some(t) = t else {
        return "N/A".into();
    };
    let Some(time) = DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32) else {
        return "N/A".into();
    };
    match format {
        TimeFormat::StampMilli => time.format("%b %e %H:%M:%S%.3f").to_string(),
        TimeFormat::Rfc3339 => time.to_rfc3339_opts(SecondsFormat::Secs, true),
        TimeFormat::Rfc3339Milli => trimmed(time.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()),
        TimeFormat::Rfc3339Micro => trimmed(time.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        TimeFormat::Rfc3339Nano => trimmed(time.format("%Y-%m-%dT%H:%M:%S%.9f").to_string()),
    }
}

/// Go's `.999` layouts drop trailing zeros (and the dot when nothing is left).
fn trimmed(text: String) -> String {
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}Z")
}

/// Source and destination as `ns/pod:port`, `ns/service:port`, `name1,name2:port` or `ip:port`.
fn hosts(flow: &Flow) -> (String, String) {
    let Some(ip) = &flow.ip else {
        return match &flow.ethernet {
            Some(e) => (e.source.clone(), e.destination.clone()),
            None => (String::new(), String::new()),
        };
    };
    let (source_port, destination_port) = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(p)) => (p.source_port, p.destination_port),
        Some(layer4::Protocol::Udp(p)) => (p.source_port, p.destination_port),
        Some(layer4::Protocol::Sctp(p)) => (p.source_port, p.destination_port),
        _ => (0, 0),
    };
    let host = |endpoint: Option<&hubble_api::flow::Endpoint>,
                service: Option<&hubble_api::flow::Service>,
                names: &[String],
                ip: &str,
                port: u32| {
        let mut namespace = endpoint.map_or("", |e| e.namespace.as_str());
        if let Some(service) = service {
            namespace = &service.namespace;
        }
        let join = |name: &str| {
            if namespace.is_empty() {
                name.to_owned()
            } else {
                format!("{namespace}/{name}")
            }
        };
        let name = match (endpoint, service) {
            (Some(e), _) if !e.pod_name.is_empty() => join(&e.pod_name),
            (_, Some(s)) if !s.name.is_empty() => join(&s.name),
            _ if !names.is_empty() => names.join(","),
            _ => ip.to_owned(),
        };
        match (port, name.contains(':')) {
            (0, _) => name,
            (port, true) => format!("[{name}]:{port}"),
            (port, false) => format!("{name}:{port}"),
        }
    };
    (
        host(
            flow.source.as_ref(),
            flow.source_service.as_ref(),
            &flow.source_names,
            &ip.source,
            source_port,
        ),
        host(
            flow.destination.as_ref(),
            flow.destination_service.as_ref(),
            &flow.destination_names,
            &ip.destination,
            destination_port,
        ),
    )
}

fn identity(id: u32) -> String {
    match hubble_api::observe_flags::RESERVED_IDENTITIES.get(id as usize) {
        Some(name) => format!("({name})"),
        None => format!("(ID:{id})"),
    }
}

const POLICY_MATCH: [&str; 5] = ["none", "L3-Only", "L3-L4", "L4-Only", "all"];

fn flow_type(flow: &Flow) -> String {
    if let Some(l7) = &flow.l7 {
        let kind = L7FlowType::try_from(l7.r#type).map_or("unknown_l7_type".to_owned(), |t| {
            t.as_str_name().to_lowercase()
        });
        return match &l7.record {
            Some(layer7::Record::Http(_)) => format!("http-{kind}"),
            Some(layer7::Record::Dns(dns)) => format!("dns-{kind} {}", dns.observation_source),
            Some(layer7::Record::Kafka(_)) => format!("kafka-{kind}"),
            None => format!("l7-{kind}"),
        };
    }
    let Some(event) = &flow.event_type else {
        return "UNKNOWN".into();
    };
    let sub = event.sub_type;
    match event.r#type {
        4 => usize::try_from(sub)
            .ok()
            .and_then(|s| TRACE_POINTS.get(s))
            .map_or_else(|| sub.to_string(), |p| (*p).to_owned()),
        1 => drop_reason_text(sub),
        5 => {
            let direction = TrafficDirection::try_from(flow.traffic_direction)
                .map_or("TRAFFIC_DIRECTION_UNKNOWN", |d| d.as_str_name());
            let matched = POLICY_MATCH
                .get(flow.policy_match_type as usize)
                .copied()
                .unwrap_or("unknown");
            format!("policy-verdict:{matched} {direction}")
        }
        3 => DebugCapturePoint::try_from(flow.debug_capture_point).map_or_else(
            |_| flow.debug_capture_point.to_string(),
            |p| p.as_str_name().to_owned(),
        ),
        7 => {
            let point = if sub != 0 { sub } else { flow.sock_xlate_point };
            match point {
                1 => "pre-xlate-fwd".into(),
                2 => "post-xlate-fwd".into(),
                3 => "pre-xlate-rev".into(),
                4 => "post-xlate-rev".into(),
                other => SocketTranslationPoint::try_from(other)
                    .map_or_else(|_| other.to_string(), |p| p.as_str_name().to_owned()),
            }
        }
        _ => "UNKNOWN".into(),
    }
}

fn verdict(flow: &Flow, policy_names: bool) -> String {
    let verdict = Verdict::try_from(flow.verdict).unwrap_or(Verdict::Unknown);
    let name = verdict.as_str_name();
    let is_policy_verdict = flow.event_type.as_ref().is_some_and(|e| e.r#type == 5);
    if !is_policy_verdict {
        return name.to_owned();
    }
    let (renamed, allowed) = match verdict {
        Verdict::Forwarded | Verdict::Redirected => ("ALLOWED", true),
        Verdict::Dropped | Verdict::Error => ("DENIED", false),
        Verdict::Audit => ("AUDITED", false),
        _ => return name.to_owned(),
    };
    if !policy_names {
        return renamed.to_owned();
    }
    let egress = flow.traffic_direction == TrafficDirection::Egress as i32;
    let policies: &[Policy] = match (allowed, egress) {
        (true, true) => &flow.egress_allowed_by,
        (true, false) => &flow.ingress_allowed_by,
        (false, true) => &flow.egress_denied_by,
        (false, false) => &flow.ingress_denied_by,
    };
    let names: Vec<String> = policies
        .iter()
        .filter(|p| !p.name.is_empty() && !p.kind.is_empty())
        .map(|p| format!("{} ({})", p.name, p.kind))
        .collect();
    if names.is_empty() {
        renamed.to_owned()
    } else {
        format!("{renamed} BY {}", names.join(", "))
    }
}

fn summary(flow: &Flow) -> String {
    let mut text = String::new();
    if let Some(id) = flow.ip_trace_id.filter(|t| t.trace_id > 0) {
        text.push_str(&format!("IP Trace ID: {}; ", id.trace_id));
    }
    text.push_str(&flow.summary);
    let auth = AuthType::try_from(flow.auth_type).unwrap_or(AuthType::Disabled);
    if auth != AuthType::Disabled {
        text.push_str(&format!("; Auth: {}", auth.as_str_name()));
    }
    text
}

/// The datapath's text for a drop reason code (pkg/monitor/api/drop.go).
fn drop_reason_text(code: i32) -> String {
    DROP_REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| code.to_string(), |(_, text)| (*text).to_owned())
}

const DROP_REASONS: &[(i32, &str)] = &[
    (0, "Success"),
    (2, "Invalid packet"),
    (3, "Interface"),
    (4, "Interface Decrypted"),
    (5, "LB, sock cgroup: No backend slot entry found"),
    (6, "LB, sock cgroup: No backend entry found"),
    (7, "LB, sock cgroup: Reverse entry update failed"),
    (8, "LB, sock cgroup: Reverse entry stale"),
    (9, "Fragmented packet"),
    (10, "Fragmented packet entry update failed"),
    (11, "Missed tail call to custom program"),
    (130, "Invalid source mac"),
    (131, "Invalid destination mac"),
    (132, "Invalid source ip"),
    (133, "Policy denied"),
    (134, "Invalid packet"),
    (135, "CT: Truncated or invalid header"),
    (136, "Fragmentation needed"),
    (137, "CT: Unknown L4 protocol"),
    (138, "CT: Can't create entry from packet"),
    (139, "Unsupported L3 protocol"),
    (140, "Missed tail call"),
    (141, "Error writing to packet"),
    (142, "Unknown L4 protocol"),
    (143, "Unknown ICMPv4 code"),
    (144, "Unknown ICMPv4 type"),
    (145, "Unknown ICMPv6 code"),
    (146, "Unknown ICMPv6 type"),
    (147, "Error retrieving tunnel key"),
    (148, "Error retrieving tunnel options"),
    (149, "Invalid Geneve option"),
    (150, "Unknown L3 target address"),
    (151, "Stale or unroutable IP"),
    (152, "No matching local container found"),
    (153, "Error while correcting L3 checksum"),
    (154, "Error while correcting L4 checksum"),
    (155, "CT: Map insertion failed"),
    (156, "Invalid IPv6 extension header"),
    (157, "IP fragmentation not supported"),
    (158, "Service backend not found"),
    (160, "No tunnel/encapsulation endpoint (datapath BUG!)"),
    (161, "NAT 46/64 not enabled"),
    (162, "Reached EDT rate-limiting drop horizon"),
    (163, "Unknown connection tracking state"),
    (164, "Local host is unreachable"),
    (165, "No configuration available to perform policy decision"),
    (166, "Unsupported L2 protocol"),
    (167, "No mapping for NAT masquerade"),
    (168, "Unsupported protocol for NAT masquerade"),
    (169, "FIB lookup failed"),
    (170, "Encapsulation traffic is prohibited"),
    (171, "Invalid identity"),
    (172, "Unknown sender"),
    (173, "NAT not needed"),
    (174, "Is a ClusterIP"),
    (175, "First logical datagram fragment not found"),
    (176, "Forbidden ICMPv6 message"),
    (177, "Denied by LB src range check"),
    (178, "Socket lookup failed"),
    (179, "Socket assign failed"),
    (180, "Proxy redirection not supported for protocol"),
    (181, "Policy denied by denylist"),
    (182, "VLAN traffic disallowed by VLAN filter"),
    (183, "Incorrect VNI from VTEP"),
    (184, "Failed to update or lookup TC buffer"),
    (185, "No SID was found for the IP address"),
    (186, "SRv6 state was removed during tail call"),
    (187, "L3 translation from IPv4 to IPv6 failed (NAT46)"),
    (188, "L3 translation from IPv6 to IPv4 failed (NAT64)"),
    (189, "Authentication required"),
    (190, "No conntrack map found"),
    (191, "No nat map found"),
    (192, "Invalid ClusterID"),
    (193, "Unsupported packet protocol for DSR encapsulation"),
    (194, "No egress gateway found"),
    (195, "Traffic is unencrypted"),
    (196, "TTL exceeded"),
    (197, "No node ID found"),
    (198, "Rate limited"),
];
