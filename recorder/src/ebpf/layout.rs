//! The kernel/user-space event layout, mirrored from `ebpf/flow.h` (the one definition on the
//! C side). `layout_matches_the_compiled_programs` checks every size and offset against the
//! BTF of the compiled object.

/// `struct flow_key`: a flow's 5-tuple. IPv4 addresses are IPv4-mapped IPv6 addresses.
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

/// `struct flow_stats`: what was seen of a flow since the last drain.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// CLOCK_BOOTTIME nanoseconds.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// IP bytes, headers included.
    pub bytes: u64,
    pub packets: u64,
    pub if_index: u32,
    /// OR of the TCP flags seen; bits as in the TCP header (FIN 0x1 … CWR 0x80), NS 0x100.
    pub tcp_flags: u32,
    /// `DIRECTION_INGRESS` or `DIRECTION_EGRESS` of the first packet.
    pub direction: u8,
    pub _pad: [u8; 7],
}

pub const DIRECTION_INGRESS: u8 = 0;
pub const DIRECTION_EGRESS: u8 = 1;
/// Index of the "map full" counter in the `losses` per-CPU array.
pub const LOSS_MAP_FULL: u32 = 0;

// SAFETY: plain `#[repr(C)]` structs of integers and byte arrays, with explicit padding: every
// bit pattern is a valid value, as `aya::Pod` requires for copying them out of BPF maps.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowStats {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Struct sizes and member byte offsets from `bpftool btf dump` of the compiled object.
    fn btf_struct(name: &str) -> (usize, Vec<(String, usize)>) {
        let object = concat!(env!("OUT_DIR"), "/tc_flow.bpf.o");
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

    #[test]
    fn layout_matches_the_compiled_programs() {
        let (size, members) = btf_struct("flow_key");
        assert_eq!(size, size_of::<FlowKey>());
        let rust = [
            ("src_addr", offset_of!(FlowKey, src_addr)),
            ("dst_addr", offset_of!(FlowKey, dst_addr)),
            ("src_port", offset_of!(FlowKey, src_port)),
            ("dst_port", offset_of!(FlowKey, dst_port)),
            ("protocol", offset_of!(FlowKey, protocol)),
            ("ip_version", offset_of!(FlowKey, ip_version)),
            ("icmp_type", offset_of!(FlowKey, icmp_type)),
            ("icmp_code", offset_of!(FlowKey, icmp_code)),
        ];
        let rust: Vec<(String, usize)> = rust.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(members, rust, "struct flow_key");

        let (size, members) = btf_struct("flow_stats");
        assert_eq!(size, size_of::<FlowStats>());
        let rust = [
            ("first_seen_ns", offset_of!(FlowStats, first_seen_ns)),
            ("last_seen_ns", offset_of!(FlowStats, last_seen_ns)),
            ("bytes", offset_of!(FlowStats, bytes)),
            ("packets", offset_of!(FlowStats, packets)),
            ("if_index", offset_of!(FlowStats, if_index)),
            ("tcp_flags", offset_of!(FlowStats, tcp_flags)),
            ("direction", offset_of!(FlowStats, direction)),
            ("_pad", offset_of!(FlowStats, _pad)),
        ];
        let rust: Vec<(String, usize)> = rust.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(members, rust, "struct flow_stats");
    }
}
