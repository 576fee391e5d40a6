// SPDX-License-Identifier: GPL-2.0
/* tc flow aggregation: every packet on an attached interface, in either direction, adds to
 * its flow's counters in a kernel hash map; flowrec drains the map every active timeout.
 *
 * The map is per-CPU: each CPU adds to its own copy of a flow's counters with plain
 * arithmetic, and flowrec merges the copies when it drains. Atomic adds on one shared entry
 * cost more than the rest of the program (measured: ~124 ns per packet with them).
 *
 * Two maps and a selector: the programs write to the map the selector names, flowrec flips
 * the selector and drains the other one, so no update is lost between reading an entry and
 * deleting it. A packet that finds the map full is counted in `losses`, never silently
 * dropped from the accounting. The programs never change a packet's fate: they return
 * TC_ACT_UNSPEC / TCX_NEXT (-1), so the next program or the default action decides.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow.h"

#define TC_NEXT -1

struct flow_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, FLOW_MAP_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
};

struct flow_map flows_0 SEC(".maps");
struct flow_map flows_1 SEC(".maps");

/* Which of flows_0 / flows_1 the programs write to. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} selector SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

/* Keeps the BTF of the shared structs in the object even if unused by name, for the
 * layout test. */
struct flow_key _flow_key_btf __attribute__((unused));
struct flow_stats _flow_stats_btf __attribute__((unused));

static __always_inline void count_loss(__u32 index)
{
	__u64 *counter = bpf_map_lookup_elem(&losses, &index);
	if (counter)
		*counter += 1;
}

static __always_inline __u32 tcp_flag_bits(const struct tcphdr *tcp)
{
	/* Byte 13 of the TCP header holds CWR..FIN; NS is the low bit of byte 12. */
	const __u8 *raw = (const __u8 *)tcp;
	return (__u32)raw[13] | ((__u32)(raw[12] & 1) << 8);
}

/* Fills the ports (or ICMP type/code) and TCP flags; returns the L4 header length (0 when
 * unknown or truncated), used to count the headers of a GSO packet's segments. */
static __always_inline __u32 parse_l4(struct flow_key *key, __u32 *flags, void *l4, void *end)
{
	switch (key->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > end)
			return 0;
		key->src_port = bpf_ntohs(tcp->source);
		key->dst_port = bpf_ntohs(tcp->dest);
		*flags = tcp_flag_bits(tcp);
		return tcp->doff * 4;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		/* SCTP's common header starts with the two ports, like UDP's. */
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end)
			return 0;
		key->src_port = bpf_ntohs(udp->source);
		key->dst_port = bpf_ntohs(udp->dest);
		return key->protocol == IPPROTO_UDP ? sizeof(struct udphdr) : 12;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 *icmp = l4;
		if ((void *)(icmp + 2) > end)
			return 0;
		key->icmp_type = icmp[0];
		key->icmp_code = icmp[1];
		return 8;
	}
	}
	return 0;
}

static __always_inline void record(struct __sk_buff *skb, __u8 direction)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_key key = {};
	__u32 flags = 0, headers = 0;

	if ((void *)(eth + 1) > end)
		return;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return;
		key.ip_version = 4;
		key.protocol = ip->protocol;
		key.src_addr[10] = 0xff;
		key.src_addr[11] = 0xff;
		key.dst_addr[10] = 0xff;
		key.dst_addr[11] = 0xff;
		__builtin_memcpy(&key.src_addr[12], &ip->saddr, 4);
		__builtin_memcpy(&key.dst_addr[12], &ip->daddr, 4);
		headers = ip->ihl * 4;
		/* Only the first fragment carries the L4 header. */
		if (!(ip->frag_off & bpf_htons(0x1fff)))
			headers += parse_l4(&key, &flags, (void *)ip + ip->ihl * 4, end);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return;
		key.ip_version = 6;
		key.protocol = ip6->nexthdr;
		__builtin_memcpy(key.src_addr, &ip6->saddr, 16);
		__builtin_memcpy(key.dst_addr, &ip6->daddr, 16);
		/* Extension headers are not walked: such flows are keyed by the first next-header. */
		headers = sizeof(struct ipv6hdr) + parse_l4(&key, &flags, ip6 + 1, end);
	} else {
		return;
	}

	/* A GSO packet stands for `gso_segs` packets on the wire, each with its own headers: count
	 * what the wire carries, not what the stack batched. skb->len (not the IP length field,
	 * which BIG TCP leaves at 0) minus the Ethernet header is the IP bytes of the batch. */
	__u64 segments = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = skb->len - sizeof(struct ethhdr) + (segments - 1) * headers;

	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&selector, &zero);
	void *flows = (active && *active) ? (void *)&flows_1 : (void *)&flows_0;
	__u64 now = bpf_ktime_get_boot_ns();

	/* This CPU's copy: tc programs run with preemption off, so plain updates are safe. */
	struct flow_stats *stats = bpf_map_lookup_elem(flows, &key);
	if (!stats) {
		/* Creates the flow with every CPU's copy zeroed; another CPU may have just created
		 * it, which is fine: then this CPU's zeroed copy is there to add to. */
		struct flow_stats zeroed = {};
		bpf_map_update_elem(flows, &key, &zeroed, BPF_NOEXIST);
		stats = bpf_map_lookup_elem(flows, &key);
	}
	if (stats) {
		if (!stats->packets) {
			stats->first_seen_ns = now;
			stats->if_index = skb->ifindex;
			stats->direction = direction;
		}
		stats->bytes += bytes;
		stats->packets += segments;
		stats->tcp_flags |= flags;
		stats->last_seen_ns = now;
		return;
	}
	count_loss(LOSS_MAP_FULL);
}

SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	record(skb, DIRECTION_INGRESS);
	return TC_NEXT;
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	record(skb, DIRECTION_EGRESS);
	return TC_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
