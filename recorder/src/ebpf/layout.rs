//! The kernel/user-space event layout, mirrored from `ebpf/flow.h` (the one definition on the
//! C side). `layout_matches_the_compiled_programs` checks every size and offset against the
//! BTF of the compiled object.

/// A map keyed by flow. foldhash, not the standard SipHash: a drain consults one per drained
/// flow (its slot copies, its TCP connection), and SipHash over the 40-byte key was 3% of a
/// drain's CPU in `benches/ebpf-memory.sh`. The 5-tuples are chosen by remote peers; what keeps
/// a crafted set of them from degrading the map is foldhash's per-process random seed, and the
/// kernel map's size bounds how many one drain holds.
pub type FlowMap<V> = std::collections::HashMap<FlowKey, V, foldhash::fast::RandomState>;

/// `struct fr_flow_key`: a flow's 5-tuple. IPv4 addresses are IPv4-mapped IPv6 addresses.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Host order; 0 for ICMP.
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub ip_version: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// `struct fr_flow_stats`: what was seen of a flow since the last drain.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// CLOCK_MONOTONIC nanoseconds (tick resolution from tc and sock_ops).
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// IP bytes, headers included.
    pub bytes: u64,
    pub packets: u64,
    pub if_index: u32,
    /// OR of the TCP flags seen; bits as in the TCP header (FIN 0x1 … CWR 0x80), NS 0x100.
    pub tcp_flags: u32,
    /// `DIRECTION_*` of the first packet.
    pub direction: u8,
    pub _pad: [u8; 3],
    /// `enum skb_drop_reason` of the latest drop (named from the kernel's BTF); 0: none.
    pub drop_reason: u32,
    /// Packets of this flow the kernel dropped, and their IP bytes.
    pub drop_packets: u64,
    pub drop_bytes: u64,
}

/// `struct fr_flow_slot`: one of a CPU's flow slots, held by the flow that claimed it in
/// `epoch`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub key: FlowKey,
    /// The epoch (`flow_epoch`) when the flow claimed the slot.
    pub epoch: u32,
    pub _pad: u32,
    pub stats: FlowStats,
}

/// `struct fr_tcp_conn`: one TCP connection as sock_ops saw it, keyed local -> remote.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpConn {
    /// CLOCK_MONOTONIC nanoseconds (tick resolution from tc and sock_ops).
    pub established_ns: u64,
    /// 0 while the connection is open.
    pub closed_ns: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub srtt_us: u32,
    pub rtt_min_us: u32,
    pub total_retrans: u32,
    pub segs_in: u32,
    pub segs_out: u32,
    /// `TCP_OPENED_ACTIVE` or `TCP_OPENED_PASSIVE`.
    pub opened: u8,
    /// The kernel's TCP state number (1 ESTABLISHED ... 7 CLOSE ...).
    pub state: u8,
    pub _pad: [u8; 2],
}

pub const DIRECTION_INGRESS: u8 = 0;
pub const DIRECTION_EGRESS: u8 = 1;
/// Only seen dropped, never on an attached interface.
pub const DIRECTION_UNKNOWN: u8 = 2;
pub const TCP_OPENED_ACTIVE: u8 = 1;
pub const TCP_OPENED_PASSIVE: u8 = 2;
/// Indexes of the counters in the `losses` per-CPU array.
pub const LOSS_FLOW_MAP_FULL: u32 = 0;
pub const LOSS_CONN_MAP_FULL: u32 = 1;

// SAFETY: plain `#[repr(C)]` structs of integers and byte arrays, with explicit padding: every
// bit pattern is a valid value, as `aya::Pod` requires for copying them out of BPF maps.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowStats {}
unsafe impl aya::Pod for TcpConn {}
unsafe impl aya::Pod for FlowSlot {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Struct sizes and member byte offsets from `bpftool btf dump` of the compiled object.
    fn btf_struct(name: &str) -> (usize, Vec<(String, usize)>) {
        let object = concat!(env!("OUT_DIR"), "/flowrec.bpf.o");
        let output = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", object])
            .output()
            .expect("bpftool is installed by .ci/setup.sh");
        assert!(output.status.success(), "bpftool btf dump failed");
        let text = String::from_utf8(output.stdout).unwrap();
        let header = format!("STRUCT '{name}' size=");
        let mut lines = text.lines().skip_while(|l| !l.contains(&header));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("no struct {name} in the BTF"));
        let size = first
            .split("size=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let members = lines
            .take_while(|l| l.starts_with('\t'))
            .map(|l| {
                let member = l.trim().split('\'').nth(1).unwrap().to_string();
                let bits: usize = l.split("bits_offset=").nth(1).unwrap().parse().unwrap();
                (member, bits / 8)
            })
            .collect();
        (size.parse().unwrap(), members)
    }

    /// Checks one struct's size and member offsets against the BTF.
    macro_rules! same_layout {
        ($c:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
            let (size, members) = btf_struct($c);
            assert_eq!(size, size_of::<$rust>(), "size of struct {}", $c);
            let rust: Vec<(String, usize)> =
                vec![$((stringify!($field).to_string(), offset_of!($rust, $field))),*];
            assert_eq!(members, rust, "members of struct {}", $c);
        }};
    }

    #[test]
    fn layout_matches_the_compiled_programs() {
        same_layout!(
            "fr_flow_key",
            FlowKey,
            [src_addr, dst_addr, src_port, dst_port, protocol, ip_version, icmp_type, icmp_code]
        );
        same_layout!(
            "fr_flow_stats",
            FlowStats,
            [
                first_seen_ns,
                last_seen_ns,
                bytes,
                packets,
                if_index,
                tcp_flags,
                direction,
                _pad,
                drop_reason,
                drop_packets,
                drop_bytes
            ]
        );
        same_layout!("fr_flow_slot", FlowSlot, [key, epoch, _pad, stats]);
        same_layout!(
            "fr_tcp_conn",
            TcpConn,
            [
                established_ns,
                closed_ns,
                bytes_acked,
                bytes_received,
                srtt_us,
                rtt_min_us,
                total_retrans,
                segs_in,
                segs_out,
                opened,
                state,
                _pad
            ]
        );
    }
}
