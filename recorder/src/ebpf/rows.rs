//! Drained kernel flows -> rows of the one flow schema (`capture_source = 'ebpf'`).
//!
//! Column meanings follow Hubble's where they overlap, so one query serves both sources:
//! `l4_protocol` is TCP/UDP/ICMPv4/ICMPv6/SCTP, `tcp_flags` lists names in Hubble's order,
//! `traffic_direction` is INGRESS/EGRESS as seen on the interface. `time` is when the flow's
//! interval started (`flow_start`); `flow_end` is its last packet before the drain.
//!
//! `bytes`/`packets` count what the tc programs saw on the attached interfaces;
//! `dropped_packets` what the kernel dropped of the flow anywhere on the node. A flow with
//! drops is `DROPPED`, with the kernel's reason name in `drop_reason_desc` (`NO_SOCKET`, ...);
//! one only seen dropped (never on an attached interface) has `packets` 0 and direction
//! `TRAFFIC_DIRECTION_UNKNOWN`. The `tcp_*` columns are the flow's TCP connection's, as the
//! socket on this node saw it (see `connection_of`). With a pod inventory, each address that
//! belonged to a pod at the flow's start gets that pod's namespace, name, labels and workload.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arrow::array::RecordBatch;
use flow_schema::hubble::TCP_FLAG_NAMES;
use flow_schema::table::TableBuilder;
use flow_schema::{flow_schema, CaptureSource};

use super::drop_reasons::DropReasons;
use super::layout::{
    FlowKey, FlowMap, FlowStats, TcpConn, DIRECTION_EGRESS, DIRECTION_INGRESS, DIRECTION_UNKNOWN,
    TCP_OPENED_ACTIVE, TCP_OPENED_PASSIVE,
};
use super::Drained;
use crate::pods::{PodInfo, PodInventory};

/// Turns drained flows into record batches for one node.
pub struct FlowRows {
    node: String,
    columns: Columns,
    drop_reasons: DropReasons,
    /// foldhash: looked up for every drained flow.
    interface_names: HashMap<u32, String, foldhash::fast::RandomState>,
}

/// Declares `Columns`, the schema positions of the columns the eBPF source fills, resolved by
/// name once.
macro_rules! columns {
    ($($field:ident: $name:literal),* $(,)?) => {
        struct Columns {
            $($field: usize,)*
        }

        impl Columns {
            fn resolve() -> Columns {
                let schema = flow_schema();
                let at = |name: &str| {
                    schema
                        .index_of(name)
                        .unwrap_or_else(|_| panic!("column {name} is in the flow schema"))
                };
                Columns { $($field: at($name),)* }
            }
        }
    };
}

columns! {
    time: "time",
    capture_source: "capture_source",
    node_name: "node_name",
    verdict: "verdict",
    flow_type: "type",
    traffic_direction: "traffic_direction",
    ip_source: "ip_source",
    ip_destination: "ip_destination",
    ip_version: "ip_version",
    l4_protocol: "l4_protocol",
    source_port: "source_port",
    destination_port: "destination_port",
    tcp_flags: "tcp_flags",
    icmp_type: "icmp_type",
    icmp_code: "icmp_code",
    interface_index: "interface_index",
    interface_name: "interface_name",
    bytes: "bytes",
    packets: "packets",
    flow_start: "flow_start",
    flow_end: "flow_end",
    drop_reason_desc: "drop_reason_desc",
    drop_reason_kernel: "drop_reason_kernel",
    dropped_packets: "dropped_packets",
    tcp_srtt_us: "tcp_srtt_us",
    tcp_retransmits: "tcp_retransmits",
    tcp_rtt_min_us: "tcp_rtt_min_us",
    tcp_bytes_acked: "tcp_bytes_acked",
    tcp_bytes_received: "tcp_bytes_received",
    tcp_segs_in: "tcp_segs_in",
    tcp_segs_out: "tcp_segs_out",
    tcp_opened: "tcp_opened",
    tcp_state: "tcp_state",
    source_namespace: "source_namespace",
    source_pod_name: "source_pod_name",
    source_labels: "source_labels",
    source_workload: "source_workload",
    source_workload_kind: "source_workload_kind",
    destination_namespace: "destination_namespace",
    destination_pod_name: "destination_pod_name",
    destination_labels: "destination_labels",
    destination_workload: "destination_workload",
    destination_workload_kind: "destination_workload_kind",
}

/// Positions of one endpoint's pod columns.
struct EndpointColumns {
    namespace: usize,
    pod_name: usize,
    labels: usize,
    workload: usize,
    workload_kind: usize,
}

impl Columns {
    fn endpoints(&self) -> [EndpointColumns; 2] {
        [
            EndpointColumns {
                namespace: self.source_namespace,
                pod_name: self.source_pod_name,
                labels: self.source_labels,
                workload: self.source_workload,
                workload_kind: self.source_workload_kind,
            },
            EndpointColumns {
                namespace: self.destination_namespace,
                pod_name: self.destination_pod_name,
                labels: self.destination_labels,
                workload: self.destination_workload,
                workload_kind: self.destination_workload_kind,
            },
        ]
    }
}

/// Writes the pod behind one end of a flow.
fn write_pod(table: &mut TableBuilder, columns: &EndpointColumns, pod: &PodInfo) {
    table.str(columns.namespace, &pod.namespace);
    table.str(columns.pod_name, &pod.name);
    let labels = table.strings(columns.labels);
    for label in pod.labels.iter() {
        labels.push(label);
    }
    labels.end();
    if let Some(workload) = &pod.workload {
        table.str(columns.workload, workload);
    }
    if let Some(kind) = &pod.workload_kind {
        table.str(columns.workload_kind, kind);
    }
}

/// Converts CLOCK_MONOTONIC nanoseconds (what the programs stamp) to Unix-epoch nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    /// Unix time minus monotonic time, sampled together.
    offset_ns: i64,
}

impl MonotonicClock {
    pub fn now() -> MonotonicClock {
        let mut monotonic = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a pointer to a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut monotonic) };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let monotonic_ns = monotonic.tv_sec * 1_000_000_000 + monotonic.tv_nsec;
        MonotonicClock {
            offset_ns: unix - monotonic_ns,
        }
    }

    pub fn unix_ns(self, monotonic_ns: u64) -> i64 {
        monotonic_ns as i64 + self.offset_ns
    }
}

impl FlowRows {
    /// Names interface `index` now, while it exists: a pod's veth may be gone by the drain
    /// that takes its last flows.
    pub fn name_interface(&mut self, index: u32, name: &str) {
        self.interface_names.insert(index, name.to_string());
    }

    /// Forgets interfaces that are gone (after a drain took their flows), so the names of a
    /// node's pods over months do not pile up.
    pub fn forget_interfaces(&mut self, indexes: &[u32]) {
        for index in indexes {
            self.interface_names.remove(index);
        }
    }

    pub fn new(node: String, drop_reasons: DropReasons) -> FlowRows {
        FlowRows {
            node,
            columns: Columns::resolve(),
            drop_reasons,
            interface_names: HashMap::default(),
        }
    }

    /// One row per drained flow, with its TCP connection's counters when sock_ops saw it and
    /// the pods behind its addresses (at the flow's start) when `pods` knows them.
    pub fn batch(
        &mut self,
        drained: &Drained,
        clock: MonotonicClock,
        pods: Option<&PodInventory>,
    ) -> RecordBatch {
        let mut table = TableBuilder::new(flow_schema());
        let c = &self.columns;
        let endpoints = c.endpoints();
        let mut text = String::new();
        // In time order (a flow's row time is its first packet's): a drain comes out of the
        // kernel in hash order, and shipping would otherwise sort each batch again with a
        // `take` over every column (~8% of the recorder's CPU in a drain benchmark), where
        // ordering these references costs a few ms per 65k flows.
        let mut flows: Vec<&(FlowKey, FlowStats)> = drained.flows.iter().collect();
        flows.sort_by_key(|(_, stats)| stats.first_seen_ns);
        for (key, stats) in flows {
            let start = clock.unix_ns(stats.first_seen_ns);
            if let Some(pods) = pods {
                for (address, columns) in [&key.src_addr, &key.dst_addr].into_iter().zip(&endpoints)
                {
                    if let Some(pod) = pods.lookup(ip_addr(address, key.ip_version), start) {
                        write_pod(&mut table, columns, pod);
                    }
                }
            }
            table.time(c.time, start);
            table.time(c.flow_start, start);
            table.time(c.flow_end, clock.unix_ns(stats.last_seen_ns));
            table.str(c.capture_source, CaptureSource::Ebpf.as_str());
            table.str(c.node_name, &self.node);
            table.str(c.flow_type, "L3_L4");
            table.str(c.traffic_direction, direction_name(stats.direction));
            for (column, address) in [
                (c.ip_source, &key.src_addr),
                (c.ip_destination, &key.dst_addr),
            ] {
                address_text(address, key.ip_version, &mut text);
                table.str(column, &text);
            }
            table.str(
                c.ip_version,
                if key.ip_version == 6 { "IPv6" } else { "IPv4" },
            );
            let protocol = protocol_name(key.protocol, key.ip_version);
            table.str(c.l4_protocol, &protocol);
            match key.protocol as i32 {
                libc::IPPROTO_TCP | libc::IPPROTO_UDP | libc::IPPROTO_SCTP => {
                    table.u32(c.source_port, key.src_port.into());
                    table.u32(c.destination_port, key.dst_port.into());
                }
                libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => {
                    table.u32(c.icmp_type, key.icmp_type.into());
                    table.u32(c.icmp_code, key.icmp_code.into());
                }
                _ => {}
            }
            if key.protocol as i32 == libc::IPPROTO_TCP {
                let list = table.strings(c.tcp_flags);
                for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
                    if stats.tcp_flags & (1 << bit) != 0 {
                        list.push(name);
                    }
                }
                list.end();
                if let Some(conn) = connection_of(key, stats.direction, &drained.conns) {
                    table.u32(c.tcp_srtt_us, conn.srtt_us);
                    table.u32(c.tcp_retransmits, conn.total_retrans);
                    table.u32(c.tcp_rtt_min_us, conn.rtt_min_us);
                    table.u64(c.tcp_bytes_acked, conn.bytes_acked);
                    table.u64(c.tcp_bytes_received, conn.bytes_received);
                    table.u32(c.tcp_segs_in, conn.segs_in);
                    table.u32(c.tcp_segs_out, conn.segs_out);
                    table.str(c.tcp_opened, opened_name(conn.opened));
                    table.str(c.tcp_state, tcp_state_name(conn.state));
                }
            }
            table.u32(c.interface_index, stats.if_index);
            // A flow only seen dropped may have been dropped in another network namespace,
            // where this index names another interface (or none).
            if stats.direction != DIRECTION_UNKNOWN {
                let name = self
                    .interface_names
                    .entry(stats.if_index)
                    .or_insert_with(|| interface_name(stats.if_index));
                if !name.is_empty() {
                    table.str(c.interface_name, name);
                }
            }
            table.u64(c.bytes, stats.bytes);
            table.u64(c.packets, stats.packets);
            // Packets freed without a reason (NOT_SPECIFIED) are counted, but do not make the
            // flow DROPPED: the kernel frees some that way in normal operation.
            let dropped = stats.drop_packets > 0
                && Some(stats.drop_reason) != self.drop_reasons.unspecified();
            if stats.drop_packets > 0 {
                let reason = self.drop_reasons.name(stats.drop_reason);
                table.str(c.drop_reason_kernel, &reason);
                table.u64(c.dropped_packets, stats.drop_packets);
                if dropped {
                    table.str(c.drop_reason_desc, &reason);
                }
            }
            table.str(c.verdict, if dropped { "DROPPED" } else { "FORWARDED" });
            table.commit();
        }
        table.finish().expect("rows match the flow schema")
    }
}

/// The TCP connection a flow belongs to, from the side of the recording node's socket: a
/// packet leaving through the interface (egress) was sent by the socket whose local end is the
/// source; one arriving (ingress) is for the socket whose local end is the destination. When
/// only the other end's socket is known (it ran in the watched cgroup, this one did not), that
/// one is used.
fn connection_of<'a>(
    key: &FlowKey,
    direction: u8,
    conns: &'a FlowMap<TcpConn>,
) -> Option<&'a TcpConn> {
    let reversed = FlowKey {
        src_addr: key.dst_addr,
        dst_addr: key.src_addr,
        src_port: key.dst_port,
        dst_port: key.src_port,
        ..*key
    };
    let (first, second) = if direction == DIRECTION_INGRESS {
        (&reversed, key)
    } else {
        (key, &reversed)
    };
    conns.get(first).or_else(|| conns.get(second))
}

fn direction_name(direction: u8) -> &'static str {
    match direction {
        DIRECTION_INGRESS => "INGRESS",
        DIRECTION_EGRESS => "EGRESS",
        _ => "TRAFFIC_DIRECTION_UNKNOWN",
    }
}

fn opened_name(opened: u8) -> &'static str {
    match opened {
        TCP_OPENED_ACTIVE => "ACTIVE",
        TCP_OPENED_PASSIVE => "PASSIVE",
        _ => "UNKNOWN",
    }
}

/// The kernel's TCP states (include/net/tcp_states.h, stable uapi numbering).
fn tcp_state_name(state: u8) -> &'static str {
    const NAMES: [&str; 14] = [
        "UNKNOWN",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
        "BOUND_INACTIVE",
    ];
    NAMES.get(state as usize).copied().unwrap_or("UNKNOWN")
}

fn ip_addr(bytes: &[u8; 16], version: u8) -> IpAddr {
    if version == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// An address as Hubble writes it (`Ipv4Addr`'s and `Ipv6Addr`'s `Display`), into `out`.
/// IPv4 is written digit by digit: the `Display` impl through `core::fmt`, and a `String`
/// per address, were ~6% of an eBPF drain's CPU (two addresses a flow).
fn address_text(bytes: &[u8; 16], version: u8, out: &mut String) {
    out.clear();
    if version != 4 {
        use std::fmt::Write;
        let _ = write!(out, "{}", ip_addr(bytes, version));
        return;
    }
    for (i, &octet) in bytes[12..].iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// Hubble's names for the protocols it knows; the IANA number for any other.
fn protocol_name(protocol: u8, version: u8) -> Cow<'static, str> {
    match protocol as i32 {
        libc::IPPROTO_TCP => Cow::Borrowed("TCP"),
        libc::IPPROTO_UDP => Cow::Borrowed("UDP"),
        libc::IPPROTO_SCTP => Cow::Borrowed("SCTP"),
        libc::IPPROTO_ICMP if version == 4 => Cow::Borrowed("ICMPv4"),
        libc::IPPROTO_ICMPV6 => Cow::Borrowed("ICMPv6"),
        other => Cow::Owned(other.to_string()),
    }
}

/// The interface's name in this network namespace, or "" if it is gone.
fn interface_name(index: u32) -> String {
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;

    fn key(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> FlowKey {
        let mut key = FlowKey {
            src_port,
            dst_port,
            protocol: libc::IPPROTO_TCP as u8,
            ip_version: 4,
            ..FlowKey::default()
        };
        key.src_addr[10..12].copy_from_slice(&[0xff, 0xff]);
        key.src_addr[12..].copy_from_slice(&src);
        key.dst_addr[10..12].copy_from_slice(&[0xff, 0xff]);
        key.dst_addr[12..].copy_from_slice(&dst);
        key
    }

    fn text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
        let column = arrow::compute::cast(
            batch.column_by_name(name).unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let column = column.as_string::<i32>();
        column.is_valid(row).then(|| column.value(row).to_string())
    }

    fn reasons() -> DropReasons {
        crate::ebpf::drop_reasons::tests::running_kernel()
    }

    #[test]
    fn a_drained_tcp_flow_becomes_a_row_like_hubble_s() {
        let stats = FlowStats {
            first_seen_ns: 1_000,
            last_seen_ns: 2_000,
            bytes: 4_242,
            packets: 7,
            if_index: 1,
            tcp_flags: 0x01 | 0x02 | 0x10,
            direction: DIRECTION_EGRESS,
            ..FlowStats::default()
        };
        let drained = Drained {
            flows: vec![(key([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80), stats)],
            conns: FlowMap::default(),
        };
        let clock = MonotonicClock { offset_ns: 10 };
        let batch = FlowRows::new("node-1".into(), reasons()).batch(&drained, clock, None);
        assert_eq!(batch.num_rows(), 1);
        let text = |name: &str| text(&batch, name, 0).unwrap_or_default();
        assert_eq!(text("ip_source"), "10.0.0.1");
        assert_eq!(text("ip_destination"), "10.0.0.2");
        assert_eq!(text("l4_protocol"), "TCP");
        assert_eq!(text("traffic_direction"), "EGRESS");
        assert_eq!(text("verdict"), "FORWARDED");
        assert_eq!(text("capture_source"), "ebpf");
        assert_eq!(text("node_name"), "node-1");
        assert_eq!(text("destination_port"), "80");
        assert_eq!(text("time"), text("flow_start"));
        let flags = batch.column_by_name("tcp_flags").unwrap().as_list::<i32>();
        let flags: Vec<_> = flags
            .value(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(String::from)
            .collect();
        assert_eq!(flags, ["FIN", "SYN", "ACK"]);
        let bytes = batch
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(bytes.value(0), 4_242);
        assert!(batch.column_by_name("icmp_type").unwrap().is_null(0));
        assert!(batch.column_by_name("tcp_srtt_us").unwrap().is_null(0));
        assert!(batch.column_by_name("drop_reason_desc").unwrap().is_null(0));
    }

    /// Every IPv4 octet value, and IPv6, read as `Display` writes them.
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut text = String::new();
        for octet in 0..=255u8 {
            let v4 = [octet, 255 - octet, octet / 3, 7];
            let mut bytes = [0u8; 16];
            bytes[10..12].copy_from_slice(&[0xff, 0xff]);
            bytes[12..].copy_from_slice(&v4);
            address_text(&bytes, 4, &mut text);
            assert_eq!(text, Ipv4Addr::from(v4).to_string());
        }
        let v6: Ipv6Addr = "fd00::1:2".parse().unwrap();
        address_text(&v6.octets(), 6, &mut text);
        assert_eq!(text, "fd00::1:2");
    }

    /// A drain comes in the kernel's hash order; its rows come in time order, each still
    /// with its own flow's columns.
    #[test]
    fn a_drain_s_rows_come_in_time_order() {
        let flow = |port, first_seen_ns| {
            let stats = FlowStats {
                first_seen_ns,
                last_seen_ns: first_seen_ns + 5,
                packets: 1,
                direction: DIRECTION_EGRESS,
                ..FlowStats::default()
            };
            (key([10, 0, 0, 1], port, [10, 0, 0, 2], 80), stats)
        };
        let drained = Drained {
            flows: vec![flow(1, 300), flow(2, 100), flow(3, 200), flow(4, 100)],
            conns: FlowMap::default(),
        };
        let clock = MonotonicClock { offset_ns: 0 };
        let batch = FlowRows::new("node-1".into(), reasons()).batch(&drained, clock, None);
        let ends = batch.column_by_name("flow_end").unwrap();
        let ends = ends.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let rows: Vec<(String, i64)> = (0..batch.num_rows())
            .map(|row| (text(&batch, "source_port", row).unwrap(), ends.value(row)))
            .collect();
        let expected = [("2", 105), ("4", 105), ("3", 205), ("1", 305)]
            .map(|(port, end)| (port.to_string(), end));
        assert_eq!(rows, expected);
    }

    #[test]
    fn both_directions_carry_the_local_socket_s_counters() {
        let client = key([10, 0, 0, 2], 40000, [10, 0, 0, 1], 80);
        let server = key([10, 0, 0, 1], 80, [10, 0, 0, 2], 40000);
        let conn = |srtt_us, opened| TcpConn {
            srtt_us,
            total_retrans: 2,
            opened,
            state: 7,
            ..TcpConn::default()
        };
        // Both ends on this node: the row takes the socket on the recorded side of the
        // interface (here, the server's), whichever direction the flow has.
        let conns = FlowMap::from_iter([
            (server, conn(111, TCP_OPENED_PASSIVE)),
            (client, conn(222, TCP_OPENED_ACTIVE)),
        ]);
        let seen = |direction| FlowStats {
            first_seen_ns: 1,
            last_seen_ns: 2,
            packets: 1,
            direction,
            ..FlowStats::default()
        };
        let drained = Drained {
            flows: vec![
                (client, seen(DIRECTION_INGRESS)),
                (server, seen(DIRECTION_EGRESS)),
            ],
            conns,
        };
        let batch =
            FlowRows::new("n".into(), reasons()).batch(&drained, MonotonicClock::now(), None);
        for row in 0..2 {
            assert_eq!(text(&batch, "tcp_srtt_us", row).as_deref(), Some("111"));
            assert_eq!(text(&batch, "tcp_retransmits", row).as_deref(), Some("2"));
            assert_eq!(text(&batch, "tcp_opened", row).as_deref(), Some("PASSIVE"));
            assert_eq!(text(&batch, "tcp_state", row).as_deref(), Some("CLOSE"));
        }
        // Only the client's socket known: it is used.
        let drained = Drained {
            flows: vec![(client, seen(DIRECTION_INGRESS))],
            conns: FlowMap::from_iter([(client, conn(222, TCP_OPENED_ACTIVE))]),
        };
        let batch =
            FlowRows::new("n".into(), reasons()).batch(&drained, MonotonicClock::now(), None);
        assert_eq!(text(&batch, "tcp_srtt_us", 0).as_deref(), Some("222"));
    }

    #[test]
    fn a_flow_with_drops_is_dropped_with_the_kernel_s_reason_name() {
        let dropped = FlowStats {
            first_seen_ns: 1,
            last_seen_ns: 2,
            direction: DIRECTION_UNKNOWN,
            if_index: 4242,
            drop_reason: 3,
            drop_packets: 2,
            drop_bytes: 120,
            ..FlowStats::default()
        };
        let drained = Drained {
            flows: vec![(key([10, 0, 0, 2], 40000, [10, 0, 0, 1], 81), dropped)],
            conns: FlowMap::default(),
        };
        let batch =
            FlowRows::new("n".into(), reasons()).batch(&drained, MonotonicClock::now(), None);
        assert_eq!(text(&batch, "verdict", 0).as_deref(), Some("DROPPED"));
        assert_eq!(
            text(&batch, "drop_reason_desc", 0).as_deref(),
            Some("NO_SOCKET")
        );
        assert_eq!(
            text(&batch, "drop_reason_kernel", 0).as_deref(),
            Some("NO_SOCKET")
        );
        assert_eq!(text(&batch, "dropped_packets", 0).as_deref(), Some("2"));
        assert_eq!(text(&batch, "packets", 0).as_deref(), Some("0"));
        assert_eq!(
            text(&batch, "traffic_direction", 0).as_deref(),
            Some("TRAFFIC_DIRECTION_UNKNOWN")
        );
        assert_eq!(
            text(&batch, "interface_name", 0),
            None,
            "not named across namespaces"
        );
    }
}
