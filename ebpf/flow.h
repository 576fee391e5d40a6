/* The layout of everything the kernel programs share with flowrec (prefixed fr_: the kernel
 * has its own struct flow_stats).
 *
 * recorder/src/ebpf/layout.rs mirrors these structs with #[repr(C)]; a test reads the compiled
 * object's BTF and checks that both sides agree on every size and field offset, so a change
 * here that is not made there fails the tests, not a capture.
 *
 * Included after vmlinux.h (the running kernel's types), which defines __u8 ... __u64.
 */
#ifndef FLOWREC_FLOW_H
#define FLOWREC_FLOW_H

/* Flows held per map between two drains (flowrec overrides it: --flow-map-entries). */
#define FLOW_MAP_ENTRIES 65536
/* Flows each CPU counts in its own slot, per flow map, before any reach the hash map: 2 to the
 * power FLOW_SLOT_BITS, the bits of the key's hash that index them. */
#define FLOW_SLOT_BITS 10
#define FLOW_SLOTS (1 << FLOW_SLOT_BITS)
/* Maximum TCP connections tracked at once by sock_ops. */
#define TCP_CONN_ENTRIES 65536

/* A flow: the 5-tuple as seen on the wire. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) so that one key type serves both families. */
struct fr_flow_key {
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
struct fr_flow_stats {
	__u64 first_seen_ns; /* CLOCK_MONOTONIC (see now_ns() in flowrec.bpf.c) */
	__u64 last_seen_ns;
	__u64 bytes;   /* IP bytes seen by tc, headers included */
	__u64 packets; /* packets seen by tc */
	__u32 if_index;  /* interface it was first seen on (by this CPU) */
	__u32 tcp_flags; /* OR of the flags seen: FIN 0x1, SYN 0x2, RST 0x4, PSH 0x8, ACK 0x10,
	                    URG 0x20, ECE 0x40, CWR 0x80, NS 0x100 (32 bits: atomic OR) */
	__u8 direction;  /* DIRECTION_* of the first packet */
	__u8 _pad[3];
	__u32 drop_reason; /* enum skb_drop_reason of the latest drop; 0: none */
	__u64 drop_packets; /* packets of this flow the kernel dropped (kfree_skb) */
	__u64 drop_bytes;   /* their IP bytes */
};

/* One of a CPU's flow slots: the flow that claimed it in this epoch, and its counters. */
struct fr_flow_slot {
	struct fr_flow_key key;
	__u32 epoch; /* flow_epoch when the flow claimed it */
	__u32 _pad;
	struct fr_flow_stats stats;
};

#define DIRECTION_INGRESS 0
#define DIRECTION_EGRESS 1
/* Only seen dropped, never on an attached interface. */
#define DIRECTION_UNKNOWN 2

/* One TCP connection as sock_ops saw it, keyed by the flow_key local -> remote. */
struct fr_tcp_conn {
	__u64 established_ns; /* CLOCK_MONOTONIC */
	__u64 closed_ns;      /* 0 while open */
	__u64 bytes_acked;    /* sent and acknowledged */
	__u64 bytes_received;
	__u32 srtt_us;        /* smoothed RTT */
	__u32 rtt_min_us;
	__u32 total_retrans;
	__u32 segs_in;
	__u32 segs_out;
	__u8 opened;          /* TCP_OPENED_* */
	__u8 state;           /* the kernel's TCP state (TCP_ESTABLISHED 1 ... TCP_CLOSE 7 ...) */
	__u8 _pad[2];
};

#define TCP_OPENED_ACTIVE 1
#define TCP_OPENED_PASSIVE 2

/* Indexes of the per-CPU loss counters. */
#define LOSS_FLOW_MAP_FULL 0 /* packets (or drops) not counted in any flow */
#define LOSS_CONN_MAP_FULL 1 /* TCP connections not tracked */
#define LOSS_COUNTERS 2

#endif
