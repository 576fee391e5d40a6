#!/usr/bin/env bash
# Cost of the recorder's kernel programs (issue 3 benchmark; `make bench-ebpf`, as root):
#  1. per-packet run time of each program from kernel.bpf_stats_enabled (run_time_ns / run_cnt)
#     during a 64-byte UDP flood at the highest rate iperf3 reaches here; the recorder's loss
#     counters, and the datagrams sent vs recorded (flows lost);
#  2. iperf3 TCP throughput between two namespaces without and with the recorder attached,
#     median of 5 runs each, alternating.
# Namespaces and veths are prefixed frtb and removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
cargo build --release --locked --quiet -p flowrec
flowrec=target/release/flowrec
a=frtb-a b=frtb-b end_a=frtbva end_b=frtbvb store=$(mktemp -d)
recorder=
cleanup() {
  [[ -n "$recorder" ]] && kill "$recorder" 2>/dev/null && wait "$recorder" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$store"
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add "$end_a" type veth peer name "$end_b"
ip link set "$end_a" netns "$a"; ip link set "$end_b" netns "$b"
ip -n "$a" addr add 10.198.0.1/24 dev "$end_a"; ip -n "$b" addr add 10.198.0.2/24 dev "$end_b"
for ns_end in "$a:$end_a" "$b:$end_b"; do
  ip -n "${ns_end%%:*}" link set "${ns_end#*:}" up; ip -n "${ns_end%%:*}" link set lo up
done
in_a() { nsenter --net="/run/netns/$a" "$@"; }
in_b() { nsenter --net="/run/netns/$b" "$@"; }

start_recorder() {
  # nsenter execs the recorder: $! is the recorder itself, so the kill below reaches it.
  nsenter --net="/run/netns/$a" "$flowrec" run --source ebpf --interfaces "$end_a" \
    --active-timeout 10s --store "$store" 2>"$store/recorder.log" >/dev/null &
  recorder=$!
  sleep 1
}
stop_recorder() {
  kill -TERM "$recorder"; wait "$recorder"; recorder=
}
tcp_gbits() {
  in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
  in_a iperf3 -c 10.198.0.2 -t 3 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}

echo "== per-packet cost: 64-byte UDP flood, 5 s"
sysctl -qw kernel.bpf_stats_enabled=1
start_recorder
in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
in_a iperf3 -c 10.198.0.2 -u -b 0 -l 64 -t 5 -J >"$store/udp.json"
# Every program's mean run time; tc_egress is the flood's side (tc_ingress sees the replies).
bpftool prog show | grep -A1 -E "name (tc_ingress|tc_egress|on_kfree_skb|tcp_lifecycle) " \
  | grep -oE "name [a-z_]+|run_time_ns [0-9]+|run_cnt [0-9]+" | paste - - - \
  | awk '{ if ($6 > 0) printf "%-14s %12d runs  %6.1f ns/run\n", $2, $6, $4 / $6 }'
stop_recorder
sysctl -qw kernel.bpf_stats_enabled=0
tail -1 "$store/recorder.log"
# Flows lost: every datagram iperf3 sent must be in the recorded UDP flow's packets.
python3 - "$store" <<'PY'
import duckdb, json, sys
store = sys.argv[1]
sent = json.load(open(f"{store}/udp.json"))["end"]["sum"]["packets"]
recorded, flows = duckdb.sql(f"""
    select coalesce(sum(packets), 0), count(distinct source_port)
    from read_parquet('{store}/flows/**/*.parquet')
    where cast(l4_protocol as varchar) = 'UDP' and ip_source = '10.198.0.1'
      and cast(traffic_direction as varchar) = 'EGRESS'""").fetchone()
print(f"UDP datagrams sent {sent}, recorded {recorded} in {flows} flow(s): "
      f"{'none lost' if recorded == sent else f'{sent - recorded} LOST'}")
PY

echo "== TCP throughput, median of 5, without / with the recorder"
without=() with=()
for _ in 1 2 3 4 5; do
  without+=("$(tcp_gbits)")
  start_recorder; with+=("$(tcp_gbits)"); stop_recorder
done
python3 - "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
without = [float(x) for x in sys.argv[1].split()]
with_ = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(without), statistics.median(with_)
print(f"without {a:.2f} Gbit/s, with {b:.2f} Gbit/s: {100 * b / a:.1f}% (target >= 97%)")
PY
