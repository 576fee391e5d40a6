#!/usr/bin/env bash
# Memory of `flowrec run --source ebpf` draining a full flow map (issue 19, target 1; as root):
# the recorder, with its default flags (a 65,536-entry flow map, given: the default on up to 14
# CPUs; drained every 10 s or when 3/4 full), attached in one namespace while a sender there
# opens ROUNDS rounds of 65,535 new UDP flows (one datagram to every port of the peer, from a
# fresh source port each round), one round every 10 s. Prints the recorder's peak RSS (VmHWM,
# sampled until it exits), the kernel memory of its maps, its CPU seconds per 1M flow records
# (with and without its one-time startup), and the flows in the store.
# Usage: benches/ebpf-memory.sh [ROUNDS] (default 6); FLOWREC=PATH runs another recorder binary
# (an A/B pair); FLOWSQL=target/debug/flowsql counts the store with a debug build instead of
# building flowsql for release. Namespaces and veths are prefixed frtm and removed on exit, also
# on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
flowrec=${FLOWREC:-target/release/flowrec}
flowsql=${FLOWSQL:-target/release/flowsql}
[[ -x $flowrec && -x $flowsql ]] || cargo build --release --locked --quiet -p flowrec -p flowsql
a=frtm-a b=frtm-b end_a=frtmva end_b=frtmvb subnet=10.197.0
work=$(mktemp -d /tmp/flowrec-ebpf-memory.XXXXXX)
source benches/netns-pair.sh
source benches/process-probe.sh
recorder=
cleanup() {
  [[ -n "$recorder" ]] && kill "$recorder" 2>/dev/null && wait "$recorder" 2>/dev/null || true
  netns_pair_remove
  rm -rf "$work"
}
trap cleanup EXIT
netns_pair_create
# The peer does not answer closed ports (no ICMP storm to rate-limit).
in_b nft add table inet frtm
in_b nft add chain inet frtm input '{ type filter hook input priority 0; policy drop; }'

# nsenter execs the recorder: $! is the recorder itself.
nsenter --net="/run/netns/$a" "$flowrec" run --source ebpf --interfaces "$end_a" \
  --flow-map-entries 65536 --store "$work/store" --spool "$work/spool" \
  2>"$work/recorder.log" >/dev/null &
recorder=$!
wait_for "recording flows" "$work/recorder.log" 100
# What starting costs once (loading and verifying the programs, reading the kernel's BTF): a
# fixed ~0.1 s that a node agent pays per start, not per flow. Reported apart from the rest.
startup_cpu=$(cpu_seconds "$recorder")
maps_kib=$(kernel_maps_kib "$recorder")
peak_kib=0
sample() {
  local hwm
  hwm=$(vm_hwm_kib "$recorder")
  [[ -n $hwm && $hwm -gt $peak_kib ]] && peak_kib=$hwm
  return 0
}
for round in $(seq 1 "$rounds"); do
  in_a python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(1, 65536):
    s.sendto(b"x", ("10.197.0.2", port))
'
  echo "bench: round $round sent" >&2
  for _ in $(seq 1 50); do sample; sleep 0.2; done
done
cpu=$(cpu_seconds "$recorder")
kill -TERM "$recorder"
# The last segment is shipped at the stop: sampled (memory and CPU) until the recorder exits.
while kill -0 "$recorder" 2>/dev/null; do
  sample
  cpu=$(cpu_seconds "$recorder" 2>/dev/null || echo "$cpu")
  sleep 0.05
done
wait "$recorder" || { echo "bench: the recorder failed" >&2; cat "$work/recorder.log" >&2; exit 1; }
recorder=
stored=$("$flowsql" --store "$work/store" --format csv "select count(*) as n from flows" 2>/dev/null | tail -1)
echo "flow records sent        $((rounds * 65535)) UDP flows (+ what the kernel itself sends)"
echo "flows in the store       $stored"
echo "recorder peak RSS        $((peak_kib / 1024)) MiB"
echo "kernel maps              $((maps_kib / 1024)) MiB (charged to the same memory cgroup)"
awk -v c="$cpu" -v s="$startup_cpu" -v n="$stored" -v t="$((rounds * 10))" 'BEGIN {
  printf "recorder CPU             %.2f s, shipping included (%.2f s per 1M flow records)\n", c, c / n * 1e6
  printf "  of which startup       %.2f s once; after it %.2f s (%.2f s per 1M flow records, idle ticks of ~%d s included)\n", s, c - s, (c - s) / n * 1e6, t
}'
grep -E "drain|lost|received" "$work/recorder.log" | tail -3 | sed 's/^/recorder: /'
