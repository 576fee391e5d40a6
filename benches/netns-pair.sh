# Sourced by the eBPF benchmarks: two network namespaces $a and $b joined by a veth pair
# ($end_a in $a at ${subnet}.1, $end_b in $b at ${subnet}.2, /24), both up; `in_a`/`in_b` run a
# command in one of them (nsenter, not `ip netns exec`: see ebpf-notes). `netns_pair_remove`
# deletes both (the veth goes with them); callers run it from their EXIT trap.
# Needs a, b, end_a, end_b and subnet set by the caller, with the caller's own name prefix.
netns_pair_create() {
  ip netns add "$a"; ip netns add "$b"
  ip link add "$end_a" type veth peer name "$end_b"
  ip link set "$end_a" netns "$a"; ip link set "$end_b" netns "$b"
  ip -n "$a" addr add "$subnet.1/24" dev "$end_a"; ip -n "$b" addr add "$subnet.2/24" dev "$end_b"
  local ns_end
  for ns_end in "$a:$end_a" "$b:$end_b"; do
    ip -n "${ns_end%%:*}" link set "${ns_end#*:}" up; ip -n "${ns_end%%:*}" link set lo up
  done
}
netns_pair_remove() {
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
in_a() { nsenter --net="/run/netns/$a" "$@"; }
in_b() { nsenter --net="/run/netns/$b" "$@"; }
