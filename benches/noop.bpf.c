// SPDX-License-Identifier: GPL-2.0
/* The cheapest tc program there is: the baseline of `make bench-ebpf`. Its run_time_ns /
 * run_cnt under kernel.bpf_stats_enabled is what the measurement itself costs on a machine
 * (the kernel times every run with two clock reads), the floor under any program's number. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int noop(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC: the packet goes on as if nothing were attached */
}

char LICENSE[] SEC("license") = "GPL";
