// SPDX-License-Identifier: GPL-2.0
/* flowrec's kernel programs, one object so that they share the flow maps:
 *
 *  - tc_ingress / tc_egress: every packet on an attached interface adds to its flow's
 *    counters in a per-CPU hash map, which flowrec drains every active timeout. A packet that
 *    crosses several attached interfaces counts once, on the flow's first interface.
 *  - on_kfree_skb (tp_btf/kfree_skb): a packet the kernel drops adds to the same flow's drop
 *    counters, with the kernel's drop reason (a number of `enum skb_drop_reason`, which
 *    flowrec names from the running kernel's BTF). Drops are seen node-wide, in every network
 *    namespace: a pod's packets are dropped in the pod's namespace, not on the host veth.
 *  - tcp_lifecycle (sockops, on a cgroup v2): each TCP connection of that cgroup's processes,
 *    from established to close, with the kernel's RTT, retransmit and byte counters, in a hash
 *    map that flowrec joins to the connection's flows.
 *
 * Per-CPU flow map: each CPU adds to its own copy of a flow's counters with plain arithmetic,
 * and flowrec merges the copies when it drains. Atomic adds on one shared entry cost more than
 * the rest of the program (measured: ~124 ns per packet with them).
 *
 * Flow slots: in front of each flow map, each CPU has FLOW_SLOTS slots (a per-CPU array)
 * indexed by a hash of the key. A flow that finds its slot free claims it for the epoch, and
 * its packets then cost an array access and a key comparison instead of a hash map lookup
 * (measured on a VM: ~80 instead of ~110 ns per packet, over a 59 ns floor). A flow whose slot
 * another flow holds goes to the hash map, as before. A slot is never evicted within an epoch,
 * so on a CPU a flow's tc counters are in its slot or in the hash map, never both; flowrec
 * merges slots with the hash map's copies like the copies of different CPUs.
 *
 * Two flow maps (each with its slots) and the epoch (`flow_epoch`, which flowrec writes): the
 * programs write to the map of the epoch's parity; flowrec advances the epoch and drains the
 * other map and slots, so no update is lost between reading an entry and deleting it. A slot
 * claimed in an older epoch is free: flowrec read it when that epoch ended. A packet that
 * finds the map full is counted in `losses`, never silently dropped from the accounting. The
 * tc programs never change a packet's fate: they return TCX_NEXT (-1, TC_ACT_UNSPEC for
 * clsact), so the next program or the default action decides.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "flow.h"

/* uapi macros, which vmlinux.h (types only) does not carry. */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10
#define IP_OFFSET_MASK 0x1fff
#define IPPROTO_ICMPV6 58

/* Timestamps are CLOCK_MONOTONIC nanoseconds. tc and sock_ops read the coarse clock (tick
 * resolution, 1-4 ms): the precise one costs ~28 ns per packet here, a quarter of the tc
 * program, for precision a flow record drained every few seconds does not need. Kernels
 * before 5.11 have no coarse clock: there flowrec sets `coarse_clock` to 0 before loading.
 * It is read-only data, so the verifier knows its value and drops the branch not taken (and
 * never sees a call to a helper the kernel lacks). The drop tracer may not call the coarse
 * clock: it reuses tc's reading of the tick when there is one (kept_or_precise_ns). */
const volatile __u8 coarse_clock = 1;

/* The coarse clock as this CPU last read it, and the jiffies it was read at. */
struct tick_clock {
	__u64 jiffies;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tick_clock);
} tick_clocks SEC(".maps");

/* The coarse clock only moves at a tick, when jiffies do, so each CPU reads it once per tick
 * and keeps it: bpf_jiffies64() is inlined to a load by the verifier, where the coarse clock's
 * helper call cost ~25 ns per packet (measured on a VM). At worst the kept value is one tick
 * old: a reader between the tick's jiffies update and its clock update keeps the old time for
 * that tick, the coarse clock's own resolution. The time is written before the jiffies, so a
 * program interrupting this one on the same CPU never pairs new jiffies with an old time. */
static __always_inline __u64 now_ns(void)
{
	if (!coarse_clock)
		return bpf_ktime_get_ns();
	__u32 zero = 0;
	struct tick_clock *kept = bpf_map_lookup_elem(&tick_clocks, &zero);
	if (!kept)
		return bpf_ktime_get_coarse_ns();
	__u64 jiffies = bpf_jiffies64();
	if (kept->jiffies != jiffies) {
		kept->ns = bpf_ktime_get_coarse_ns();
		asm volatile("" ::: "memory");
		kept->jiffies = jiffies;
	}
	return kept->ns;
}

struct flow_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, FLOW_MAP_ENTRIES);
	__type(key, struct fr_flow_key);
	__type(value, struct fr_flow_stats);
};

struct flow_map flows_0 SEC(".maps");
struct flow_map flows_1 SEC(".maps");

/* The epoch: the programs write to flows_0 / slots_0 when it is even, flows_1 / slots_1 when
 * it is odd. Global data in a section of its own, which the loader makes a one-entry array map
 * (".data.epoch") that flowrec writes: the programs read it with one load, where a lookup in an
 * array map of their own took a dozen instructions. */
__u32 flow_epoch SEC(".data.epoch") = 0;

struct slot_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_SLOTS);
	__type(key, __u32);
	__type(value, struct fr_flow_slot);
};

struct slot_map slots_0 SEC(".maps");
struct slot_map slots_1 SEC(".maps");

/* Flows created in flows_0 / flows_1 since each was last drained, per CPU: flowrec drains
 * early when the active map is nearly full, instead of losing the flows that would not fit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} flow_counts SEC(".maps");

/* Open (and just closed) TCP connections, keyed local -> remote. flowrec deletes an entry once
 * it has read it closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_CONN_ENTRIES);
	__type(key, struct fr_flow_key);
	__type(value, struct fr_tcp_conn);
} tcp_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

/* Keeps the BTF of the shared structs in the object even if unused by name, for the
 * layout test. */
struct fr_flow_key _fr_flow_key_btf __attribute__((unused));
struct fr_flow_stats _fr_flow_stats_btf __attribute__((unused));
struct fr_tcp_conn _fr_tcp_conn_btf __attribute__((unused));
struct fr_flow_slot _fr_flow_slot_btf __attribute__((unused));

static __always_inline void count_loss(__u32 index)
{
	__u64 *counter = bpf_map_lookup_elem(&losses, &index);
	if (counter)
		__sync_fetch_and_add(counter, 1);
}

/* A flow key as the five 8-byte words the programs build it in, hash it by and compare it by:
 * whole words, where field by field the key took ~15 stores of 1 to 4 bytes and loads that
 * straddle them. Little-endian, like every target the recorder loads on (x86_64, arm64). */
union flow_key_words {
	struct fr_flow_key key;
	__u64 w[5];
};
_Static_assert(sizeof(struct fr_flow_key) == sizeof(__u64[5]), "fr_flow_key is five words");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the key words are little-endian");

/* The addresses of an IPv4 flow (network order, as in the packet), IPv4-mapped
 * (::ffff:a.b.c.d): words 0 and 2 are 0, words 1 and 3 the mapped addresses' last 8 bytes. */
static __always_inline void set_ipv4_addresses(union flow_key_words *k, __u32 source,
					       __u32 destination)
{
	k->w[0] = 0;
	k->w[1] = 0xffff0000ULL | (__u64)source << 32;
	k->w[2] = 0;
	k->w[3] = 0xffff0000ULL | (__u64)destination << 32;
}

/* The addresses of an IPv6 flow, 16 bytes each, as in the packet: words 0-1 and 2-3. */
static __always_inline void set_ipv6_addresses(union flow_key_words *k, const void *source,
					       const void *destination)
{
	__builtin_memcpy(&k->w[0], source, 16);
	__builtin_memcpy(&k->w[2], destination, 16);
}

/* The L4 bits of the key's last word: the ports (host order) in its bytes 0-3, or the ICMP
 * type and code in its bytes 6 and 7 (fr_flow_key's src_port ... icmp_code). */
static __always_inline __u64 ports_bits(__u16 source, __u16 dest)
{
	return (__u64)bpf_ntohs(source) | (__u64)bpf_ntohs(dest) << 16;
}
static __always_inline __u64 icmp_bits(__u8 type, __u8 code)
{
	return (__u64)type << 48 | (__u64)code << 56;
}

/* The key's last word: the L4 bits with the protocol (byte 4) and the IP version (byte 5). */
static __always_inline __u64 last_word(__u8 protocol, __u8 ip_version, __u64 l4_bits)
{
	return l4_bits | (__u64)protocol << 32 | (__u64)ip_version << 40;
}

static __always_inline __u32 tcp_flag_bits(const __u8 *tcp)
{
	/* Byte 13 of the TCP header holds CWR..FIN; NS is the low bit of byte 12. */
	return (__u32)tcp[13] | ((__u32)(tcp[12] & 1) << 8);
}

/* The L4 bits of the key (ports_bits, icmp_bits) and the TCP flags from the `protocol` header
 * at `l4`, of which at most `end - l4` bytes may be read; returns the L4 header length (0 when
 * unknown or truncated: then the bits stay 0), used to count the headers of a GSO packet's
 * segments. */
static __always_inline __u32 parse_l4(__u8 protocol, void *l4, void *end, __u64 *l4_bits,
				      __u32 *flags)
{
	switch (protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > end)
			return 0;
		*l4_bits = ports_bits(tcp->source, tcp->dest);
		*flags = tcp_flag_bits(l4);
		return tcp->doff * 4;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		/* SCTP's common header starts with the two ports, like UDP's. */
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end)
			return 0;
		*l4_bits = ports_bits(udp->source, udp->dest);
		return protocol == IPPROTO_UDP ? sizeof(struct udphdr) : 12;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 *icmp = l4;
		if ((void *)(icmp + 2) > end)
			return 0;
		*l4_bits = icmp_bits(icmp[0], icmp[1]);
		return 8;
	}
	}
	return 0;
}

/* This CPU's copy of the flow's counters in `flows` (generation `generation`), created if
 * new; NULL when the map is full. */
static __always_inline struct fr_flow_stats *stats_in(void *flows, const struct fr_flow_key *key,
						      __u32 generation)
{
	struct fr_flow_stats *stats = bpf_map_lookup_elem(flows, key);
	if (stats)
		return stats;
	/* Creates the flow with every CPU's copy zeroed; another CPU may have just created it,
	 * which is fine: then this CPU's zeroed copy is there to add to. */
	struct fr_flow_stats zeroed = {};
	if (!bpf_map_update_elem(flows, key, &zeroed, BPF_NOEXIST)) {
		__u64 *created = bpf_map_lookup_elem(&flow_counts, &generation);
		if (created)
			*created += 1;
	}
	return bpf_map_lookup_elem(flows, key);
}

static __always_inline __u32 current_epoch(void)
{
	return *(volatile __u32 *)&flow_epoch;
}

/* This CPU's copy of the flow's counters in the active map, created if new; NULL when the map
 * is full. Each branch names its map as a constant: the verifier then inlines the hash lookup,
 * where one call with either map would go through the generic helper (measured: ~15 ns more
 * per packet). */
static __always_inline struct fr_flow_stats *flow_stats_for(const struct fr_flow_key *key)
{
	if (current_epoch() & 1)
		return stats_in(&flows_1, key, 1);
	return stats_in(&flows_0, key, 0);
}

/* A word's high half folded onto its low half: a multiply carries a difference only upwards, so
 * the high bits (an IPv4 address's last octet is a word's top byte) must reach the low ones
 * before each multiply, or flows that differ only there would share a quarter of the slots. */
static __always_inline __u64 fold(__u64 x)
{
	return x ^ (x >> 32);
}

/* The slot of a key: fold-multiply over its five words, the index from the top bits of the last
 * product, which every bit below them reaches. */
static __always_inline __u32 slot_index(const union flow_key_words *k)
{
	__u64 h = fold(k->w[0] ^ k->w[1]) * 0x9E3779B97F4A7C15ULL;
	h = fold(h ^ k->w[2] ^ k->w[3]) * 0xC2B2AE3D27D4EB4FULL;
	h = fold(h ^ k->w[4]) * 0x165667B19E3779F9ULL;
	return h >> (64 - FLOW_SLOT_BITS);
}

static __always_inline int same_key(const struct fr_flow_key *a, const union flow_key_words *b)
{
	const __u64 *x = (const __u64 *)a;
	return ((x[0] ^ b->w[0]) | (x[1] ^ b->w[1]) | (x[2] ^ b->w[2]) | (x[3] ^ b->w[3]) |
		(x[4] ^ b->w[4])) == 0;
}

/* This CPU's counters of the flow in epoch `epoch`: its slot in `slots` if it holds the slot
 * or the slot is free (then it claims it), else its copy in `flows`; NULL when that map is
 * full. */
static __always_inline struct fr_flow_stats *slot_or_stats_in(void *slots, void *flows,
							      __u32 generation, __u32 epoch,
							      const union flow_key_words *k)
{
	__u32 index = slot_index(k);
	struct fr_flow_slot *slot = bpf_map_lookup_elem(slots, &index);
	if (!slot)
		return stats_in(flows, &k->key, generation);
	if (slot->epoch == epoch && slot->stats.first_seen_ns) {
		if (same_key(&slot->key, k))
			return &slot->stats;
		return stats_in(flows, &k->key, generation);
	}
	/* Free: never claimed, or claimed in an epoch flowrec has drained. */
	__builtin_memcpy(&slot->key, &k->key, sizeof(k->key));
	__builtin_memset(&slot->stats, 0, sizeof(slot->stats));
	slot->epoch = epoch;
	return &slot->stats;
}

/* tc's counters for the flow: its slot or its hash map copy (see "Flow slots" above). */
static __always_inline struct fr_flow_stats *tc_stats_for(const union flow_key_words *k)
{
	__u32 epoch = current_epoch();
	if (epoch & 1)
		return slot_or_stats_in(&slots_1, &flows_1, 1, epoch, k);
	return slot_or_stats_in(&slots_0, &flows_0, 0, epoch, k);
}

/* ---- tc: flow aggregation ---------------------------------------------------------------- */

static __always_inline void record(struct __sk_buff *skb, __u8 direction)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	union flow_key_words k;
	__u64 l4_bits = 0;
	__u32 flags = 0, headers;

	if ((void *)(eth + 1) > end)
		return;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return;
		set_ipv4_addresses(&k, ip->saddr, ip->daddr);
		headers = ip->ihl * 4;
		/* Only the first fragment carries the L4 header. */
		if (!(ip->frag_off & bpf_htons(IP_OFFSET_MASK)))
			headers += parse_l4(ip->protocol, (void *)ip + ip->ihl * 4, end, &l4_bits,
					    &flags);
		k.w[4] = last_word(ip->protocol, 4, l4_bits);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return;
		set_ipv6_addresses(&k, &ip6->saddr, &ip6->daddr);
		/* Extension headers are not walked: such flows are keyed by the first next-header. */
		headers = sizeof(struct ipv6hdr) +
			  parse_l4(ip6->nexthdr, ip6 + 1, end, &l4_bits, &flags);
		k.w[4] = last_word(ip6->nexthdr, 6, l4_bits);
	} else {
		return;
	}

	/* A GSO packet stands for `gso_segs` packets on the wire, each with its own headers: count
	 * what the wire carries, not what the stack batched. skb->len (not the IP length field,
	 * which BIG TCP leaves at 0) minus the Ethernet header is the IP bytes of the batch. */
	__u64 segments = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = skb->len - sizeof(struct ethhdr) + (segments - 1) * headers;
	__u64 now = now_ns();

	/* This CPU's counters: tc programs run with preemption off, so plain updates are safe. */
	struct fr_flow_stats *stats = tc_stats_for(&k);
	if (!stats) {
		count_loss(LOSS_FLOW_MAP_FULL);
		return;
	}
	if (!stats->first_seen_ns) {
		stats->first_seen_ns = now;
		stats->if_index = skb->ifindex;
		stats->direction = direction;
	} else if (stats->direction == DIRECTION_UNKNOWN) {
		/* Seen dropped first (on another path); the interface tells more. */
		stats->if_index = skb->ifindex;
		stats->direction = direction;
	} else if (stats->if_index != skb->ifindex) {
		/* A packet crossing several attached interfaces (pod veth, then the node's NIC) is
		 * counted once, on the interface where its flow was first seen. */
		return;
	}
	stats->bytes += bytes;
	stats->packets += segments;
	stats->tcp_flags |= flags;
	stats->last_seen_ns = now;
}

SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	record(skb, DIRECTION_INGRESS);
	return TCX_NEXT;
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	record(skb, DIRECTION_EGRESS);
	return TCX_NEXT;
}

/* ---- kfree_skb: drops with the kernel's reason --------------------------------------------- */

/* The time for a tracing program, which may not read the coarse clock (it may run where the
 * coarse clock's lock is held): this CPU's tick clock as tc last kept it if that was in this
 * tick (a dropped packet has mostly just crossed tc on this CPU), else the precise clock, which
 * costs a helper call. Both are CLOCK_MONOTONIC; the kept one is up to a tick behind, like
 * every tc time. Read-only: tc may interrupt this program, never the other way round. */
static __always_inline __u64 kept_or_precise_ns(void)
{
	__u32 zero = 0;
	struct tick_clock *kept = bpf_map_lookup_elem(&tick_clocks, &zero);
	if (kept) {
		/* In the order opposite to now_ns's writes (time, then jiffies): a tc run between
		 * the two loads can only pair the jiffies read with a newer time, never an older. */
		__u64 jiffies = *(volatile __u64 *)&kept->jiffies;
		asm volatile("" ::: "memory");
		__u64 ns = *(volatile __u64 *)&kept->ns;
		if (jiffies == bpf_jiffies64())
			return ns;
	}
	return bpf_ktime_get_ns();
}

/* The 5-tuple of a kernel skb from its network header; the IP length of the packet, or 0 when
 * it is not IP or its IP header is not in the skb's linear data.
 *
 * `skb` is a BTF pointer (tp_btf): its fields are plain loads, relocated by CO-RE (vmlinux.h's
 * structs preserve their access index) and guarded by the verifier's exception table, where a
 * BPF_CORE_READ is a helper call each. The packet's bytes are not BTF (skb->head is a char *):
 * one bpf_probe_read_kernel takes the IP header and what follows it, up to a TCP header after
 * an IPv6 one. That read stays inside the head's allocation (the skb's shared info, a few
 * hundred bytes, follows its data), but only the bytes before skb->tail are the packet's: a
 * header that ends past it (a truncated packet, or an L4 header in the paged part of a packet
 * dropped before the stack pulled it) is not read, and the flow then has no ports. */
static __always_inline __u32 key_from_skb(struct sk_buff *skb, union flow_key_words *k)
{
	unsigned char *head = skb->head;
	__u32 network = skb->network_header, tail = skb->tail;
	__u16 protocol = skb->protocol;
	__u8 headers[sizeof(struct ipv6hdr) + sizeof(struct tcphdr)] = {};
	__u32 length, flags = 0;
	__u64 l4_bits = 0;

	if (protocol != bpf_htons(ETH_P_IP) && protocol != bpf_htons(ETH_P_IPV6))
		return 0;
	/* network_header is ~0 when unset (a 16-bit field). */
	if (network == (__u16)~0U || network >= tail || tail - network < sizeof(struct iphdr))
		return 0;
	if (bpf_probe_read_kernel(headers, sizeof(headers), head + network))
		return 0;
	/* Bytes of `headers` that are the packet's. */
	__u32 linear = tail - network < sizeof(headers) ? tail - network : sizeof(headers);
	if (protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)headers;
		__u8 l4_protocol = ip->protocol;
		set_ipv4_addresses(k, ip->saddr, ip->daddr);
		length = bpf_ntohs(ip->tot_len);
		__u32 ip_header = ip->ihl * 4;
		if (ip->frag_off & bpf_htons(IP_OFFSET_MASK)) {
			/* Only the first fragment carries the L4 header. */
		} else if (ip_header == sizeof(struct iphdr)) {
			parse_l4(l4_protocol, headers + sizeof(struct iphdr), headers + linear,
				 &l4_bits, &flags);
		} else {
			/* Options: the L4 header is further on, read on its own. */
			__u32 l4_offset = network + ip_header;
			if (l4_offset < tail &&
			    !bpf_probe_read_kernel(headers, sizeof(struct tcphdr), head + l4_offset)) {
				__u32 l4_linear = tail - l4_offset < sizeof(struct tcphdr)
							  ? tail - l4_offset
							  : sizeof(struct tcphdr);
				parse_l4(l4_protocol, headers, headers + l4_linear, &l4_bits, &flags);
			}
		}
		k->w[4] = last_word(l4_protocol, 4, l4_bits);
		return length;
	}
	struct ipv6hdr *ip6 = (void *)headers;
	if (linear < sizeof(struct ipv6hdr))
		return 0;
	set_ipv6_addresses(k, &ip6->saddr, &ip6->daddr);
	length = sizeof(struct ipv6hdr) + bpf_ntohs(ip6->payload_len);
	parse_l4(ip6->nexthdr, headers + sizeof(struct ipv6hdr), headers + linear, &l4_bits, &flags);
	k->w[4] = last_word(ip6->nexthdr, 6, l4_bits);
	return length;
}

/* Whether `reason` says the packet was not dropped: SKB_NOT_DROPPED_YET and SKB_CONSUMED,
 * where the running kernel has them (relocated: the numbers are its own; 5.17 and 5.18 have
 * neither, and their 0 is NOT_SPECIFIED, a drop). */
static __always_inline int not_a_drop(__u32 reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED))
		return reason <= bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED);
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_NOT_DROPPED_YET))
		return reason <= bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (not_a_drop(reason))
		return 0;
	union flow_key_words k;
	__u32 length = key_from_skb(skb, &k);
	if (!length)
		return 0;
	struct fr_flow_stats *stats = flow_stats_for(&k.key);
	if (!stats) {
		count_loss(LOSS_FLOW_MAP_FULL);
		return 0;
	}
	__u64 now = kept_or_precise_ns();
	/* Unlike tc, this may run preemptible (migration is disabled, so the copy stays this
	 * CPU's): the counters use atomic adds, the rest is informational. */
	if (!stats->first_seen_ns) {
		struct net_device *dev = skb->dev;
		stats->first_seen_ns = now;
		stats->if_index = dev ? dev->ifindex : 0;
		stats->direction = DIRECTION_UNKNOWN;
	}
	/* Some kernel paths free packets without a reason in normal operation (a segment for a
	 * TIME_WAIT socket): a specific reason seen for the flow is never hidden by one of those. */
	if (reason != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED) ||
	    !stats->drop_reason)
		stats->drop_reason = reason;
	__sync_fetch_and_add(&stats->drop_packets, 1);
	__sync_fetch_and_add(&stats->drop_bytes, length);
	if (now > stats->last_seen_ns)
		stats->last_seen_ns = now;
	return 0;
}

/* ---- sock_ops: TCP connection lifecycle ----------------------------------------------------- */

static __always_inline void conn_key(struct bpf_sock_ops *skops, union flow_key_words *k)
{
	/* local_port is in host order; remote_port holds the port in network order in its upper
	 * 16 bits. */
	__u64 ports = (__u64)(__u16)skops->local_port |
		      (__u64)(__u16)bpf_ntohl(skops->remote_port) << 16;
	if (skops->family == AF_INET) {
		set_ipv4_addresses(k, skops->local_ip4, skops->remote_ip4);
		k->w[4] = last_word(IPPROTO_TCP, 4, ports);
		return;
	}
	__u32 local[4] = {skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2],
			  skops->local_ip6[3]};
	__u32 remote[4] = {skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
			   skops->remote_ip6[3]};
	set_ipv6_addresses(k, local, remote);
	/* A dual-stack socket talking IPv4 has IPv4-mapped addresses: on the wire it is IPv4. */
	__u8 version = (local[0] == 0 && local[1] == 0 && local[2] == bpf_htonl(0xffff)) ? 4 : 6;
	k->w[4] = last_word(IPPROTO_TCP, version, ports);
}

static __always_inline void conn_counters(struct bpf_sock_ops *skops, struct fr_tcp_conn *conn)
{
	conn->srtt_us = skops->srtt_us >> 3; /* the kernel keeps it in 1/8 us */
	conn->rtt_min_us = skops->rtt_min;
	conn->total_retrans = skops->total_retrans;
	conn->segs_in = skops->segs_in;
	conn->segs_out = skops->segs_out;
	conn->bytes_acked = skops->bytes_acked;
	conn->bytes_received = skops->bytes_received;
}

SEC("sockops")
int tcp_lifecycle(struct bpf_sock_ops *skops)
{
	union flow_key_words k;
	struct fr_tcp_conn *conn;
	__u32 op = skops->op;

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		/* Ask for the callbacks that follow the connection: state changes (close) and
		 * retransmits. Neither fires per packet. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_STATE_CB_FLAG |
							 BPF_SOCK_OPS_RETRANS_CB_FLAG);
		struct fr_tcp_conn fresh = {
			.established_ns = now_ns(),
			.opened = op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? TCP_OPENED_ACTIVE
									 : TCP_OPENED_PASSIVE,
			.state = TCP_ESTABLISHED,
		};
		conn_counters(skops, &fresh);
		conn_key(skops, &k);
		if (bpf_map_update_elem(&tcp_conns, &k.key, &fresh, BPF_ANY))
			count_loss(LOSS_CONN_MAP_FULL);
		break;
	}
	case BPF_SOCK_OPS_STATE_CB:
	case BPF_SOCK_OPS_RETRANS_CB:
		conn_key(skops, &k);
		conn = bpf_map_lookup_elem(&tcp_conns, &k.key);
		if (!conn)
			break;
		conn_counters(skops, conn);
		if (op == BPF_SOCK_OPS_STATE_CB) {
			conn->state = skops->args[1];
			if (skops->args[1] == TCP_CLOSE)
				conn->closed_ns = now_ns();
		}
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
