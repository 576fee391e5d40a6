//! Drained kernel flows -> rows of the one flow schema (`capture_source = 'ebpf'`).
//!
//! Column meanings follow Hubble's where they overlap, so one query serves both sources:
//! `l4_protocol` is TCP/UDP/ICMPv4/ICMPv6/SCTP, `tcp_flags` lists names in Hubble's order,
//! `traffic_direction` is INGRESS/EGRESS as seen on the interface. `time` is when the flow's
//! interval started (`flow_start`); `flow_end` is its last packet before the drain.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use arrow::array::RecordBatch;
use flow_schema::hubble::TCP_FLAG_NAMES;
use flow_schema::table::TableBuilder;
use flow_schema::{flow_schema, CaptureSource};

use super::layout::{FlowKey, FlowStats, DIRECTION_EGRESS};

/// Turns drained flows into record batches for one node.
pub struct FlowRows {
    node: String,
    columns: Columns,
    interface_names: HashMap<u32, String>,
}

/// Schema positions of the columns the eBPF source fills.
struct Columns {
    time: usize,
    capture_source: usize,
    node_name: usize,
    verdict: usize,
    flow_type: usize,
    traffic_direction: usize,
    ip_source: usize,
    ip_destination: usize,
    ip_version: usize,
    l4_protocol: usize,
    source_port: usize,
    destination_port: usize,
    tcp_flags: usize,
    icmp_type: usize,
    icmp_code: usize,
    interface_index: usize,
    interface_name: usize,
    bytes: usize,
    packets: usize,
    flow_start: usize,
    flow_end: usize,
}

impl Columns {
    fn resolve() -> Columns {
        let schema = flow_schema();
        let at = |name: &str| {
            schema
                .index_of(name)
                .unwrap_or_else(|_| panic!("column {name} is in the flow schema"))
        };
        Columns {
            time: at("time"),
            capture_source: at("capture_source"),
            node_name: at("node_name"),
            verdict: at("verdict"),
            flow_type: at("type"),
            traffic_direction: at("traffic_direction"),
            ip_source: at("ip_source"),
            ip_destination: at("ip_destination"),
            ip_version: at("ip_version"),
            l4_protocol: at("l4_protocol"),
            source_port: at("source_port"),
            destination_port: at("destination_port"),
            tcp_flags: at("tcp_flags"),
            icmp_type: at("icmp_type"),
            icmp_code: at("icmp_code"),
            interface_index: at("interface_index"),
            interface_name: at("interface_name"),
            bytes: at("bytes"),
            packets: at("packets"),
            flow_start: at("flow_start"),
            flow_end: at("flow_end"),
        }
    }
}

/// Converts CLOCK_BOOTTIME nanoseconds (what the programs stamp) to Unix-epoch nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Unix time minus boot time, sampled together.
    offset_ns: i64,
}

impl BootClock {
    pub fn now() -> BootClock {
        let mut boot = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a pointer to a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut boot) };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let boot_ns = boot.tv_sec * 1_000_000_000 + boot.tv_nsec;
        BootClock {
            offset_ns: unix - boot_ns,
        }
    }

    pub fn unix_ns(self, boot_ns: u64) -> i64 {
        boot_ns as i64 + self.offset_ns
    }
}

impl FlowRows {
    pub fn new(node: String) -> FlowRows {
        FlowRows {
            node,
            columns: Columns::resolve(),
            interface_names: HashMap::new(),
        }
    }

    /// One row per drained flow.
    pub fn batch(&mut self, flows: &[(FlowKey, FlowStats)], clock: BootClock) -> RecordBatch {
        let mut table = TableBuilder::new(flow_schema());
        let c = &self.columns;
        for (key, stats) in flows {
            let start = clock.unix_ns(stats.first_seen_ns);
            table.time(c.time, start);
            table.time(c.flow_start, start);
            table.time(c.flow_end, clock.unix_ns(stats.last_seen_ns));
            table.str(c.capture_source, CaptureSource::Ebpf.as_str());
            table.str(c.node_name, &self.node);
            table.str(c.verdict, "FORWARDED");
            table.str(c.flow_type, "L3_L4");
            table.str(
                c.traffic_direction,
                if stats.direction == DIRECTION_EGRESS {
                    "EGRESS"
                } else {
                    "INGRESS"
                },
            );
            table.str(c.ip_source, &address(&key.src_addr, key.ip_version));
            table.str(c.ip_destination, &address(&key.dst_addr, key.ip_version));
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
            }
            table.u32(c.interface_index, stats.if_index);
            let name = self
                .interface_names
                .entry(stats.if_index)
                .or_insert_with(|| interface_name(stats.if_index));
            if !name.is_empty() {
                table.str(c.interface_name, name);
            }
            table.u64(c.bytes, stats.bytes);
            table.u64(c.packets, stats.packets);
            table.commit();
        }
        table.finish().expect("rows match the flow schema")
    }
}

fn address(bytes: &[u8; 16], version: u8) -> String {
    if version == 4 {
        Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]).to_string()
    } else {
        Ipv6Addr::from(*bytes).to_string()
    }
}

/// Hubble's names for the protocols it knows; the IANA number for any other.
fn protocol_name(protocol: u8, version: u8) -> String {
    match protocol as i32 {
        libc::IPPROTO_TCP => "TCP".into(),
        libc::IPPROTO_UDP => "UDP".into(),
        libc::IPPROTO_SCTP => "SCTP".into(),
        libc::IPPROTO_ICMP if version == 4 => "ICMPv4".into(),
        libc::IPPROTO_ICMPV6 => "ICMPv6".into(),
        other => other.to_string(),
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

    #[test]
    fn a_drained_tcp_flow_becomes_a_row_like_hubble_s() {
        let mut key = FlowKey {
            src_port: 40000,
            dst_port: 80,
            protocol: libc::IPPROTO_TCP as u8,
            ip_version: 4,
            ..FlowKey::default()
        };
        key.src_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        key.dst_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        let stats = FlowStats {
            first_seen_ns: 1_000,
            last_seen_ns: 2_000,
            bytes: 4_242,
            packets: 7,
            if_index: 1,
            tcp_flags: 0x01 | 0x02 | 0x10,
            direction: DIRECTION_EGRESS,
            _pad: [0; 7],
        };
        let clock = BootClock { offset_ns: 10 };
        let batch = FlowRows::new("node-1".into()).batch(&[(key, stats)], clock);
        assert_eq!(batch.num_rows(), 1);
        let text = |name: &str| {
            let column = arrow::compute::cast(
                batch.column_by_name(name).unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            column.as_string::<i32>().value(0).to_string()
        };
        assert_eq!(text("ip_source"), "10.0.0.1");
        assert_eq!(text("ip_destination"), "10.0.0.2");
        assert_eq!(text("l4_protocol"), "TCP");
        assert_eq!(text("traffic_direction"), "EGRESS");
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
    }
}
