/* The layout of everything the kernel programs share with flowrec.
 *
 * recorder/src/ebpf/layout.rs mirrors these structs with #[repr(C)]; a test reads this
 * object's BTF and checks that both sides agree on every size and field offset, so a change
 * here that is not made there fails the build's tests, not a capture.
 */
#ifndef FLOWREC_FLOW_H
#define FLOWREC_FLOW_H

#include <linux/types.h>

/* Maximum flows held per map between two drains. */
#define FLOW_MAP_ENTRIES 65536

/* A flow: the 5-tuple as seen on the wire. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) so that one key type serves both families. */
struct flow_key {
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port; /* host order; 0 for ICMP */
	__u16 dst_port;
	__u8 protocol;  /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6, _SCTP, ... */
	__u8 ip_version; /* 4 or 6 */
	__u8 icmp_type;
	__u8 icmp_code;
};

/* What one CPU saw of a flow since the last drain (flowrec merges the CPUs' copies). */
struct flow_stats {
	__u64 first_seen_ns; /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u64 last_seen_ns;
	__u64 bytes;   /* IP bytes, headers included */
	__u64 packets;
	__u32 if_index;  /* interface it was first seen on (by this CPU) */
	__u32 tcp_flags; /* OR of the flags seen: FIN 0x1, SYN 0x2, RST 0x4, PSH 0x8, ACK 0x10,
	                    URG 0x20, ECE 0x40, CWR 0x80, NS 0x100 (32 bits: atomic OR) */
	__u8 direction;  /* DIRECTION_* of the first packet */
	__u8 _pad[7];
};

#define DIRECTION_INGRESS 0
#define DIRECTION_EGRESS 1

/* Indexes of the per-CPU loss counters. */
#define LOSS_MAP_FULL 0
#define LOSS_COUNTERS 1

#endif
