#!/usr/bin/env bash
# Cost of the recorder's kernel programs (issue 3 benchmark; `make bench-ebpf`, as root):
#  1. per-packet run time of each program from kernel.bpf_stats_enabled (run_time_ns / run_cnt)
#     during a 64-byte UDP flood at the highest rate iperf3 reaches here; the recorder's loss
#     counters, and the datagrams sent vs recorded (flows lost);
#     An empty tc program measured the same way first gives the floor: the cost of the
#     measurement itself on this machine.
#  2. iperf3 TCP throughput between two namespaces without and with the recorder attached,
#     median of 5 runs each, alternating.
# Namespaces and veths are prefixed frtb and removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
cargo build --release --locked --quiet -p flowrec
flowrec=target/release/flowrec
a=frtb-a b=frtb-b end_a=frtbva end_b=frtbvb subnet=10.198.0 store=$(mktemp -d)
source benches/netns-pair.sh
recorder=
cleanup() {
  [[ -n "$recorder" ]] && kill "$recorder" 2>/dev/null && wait "$recorder" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  netns_pair_remove
  rm -rf "$store"
}
trap cleanup EXIT
netns_pair_create

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

# One 5 s flood of 64-byte UDP datagrams from a to b (iperf3 -R: from b to a), with a fresh
# recorder in a: the flood crosses its tc_egress (or tc_ingress) program.
udp_flood() {
  local reverse=$1 side=$2
  sysctl -qw kernel.bpf_stats_enabled=1
  start_recorder
  in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
  in_a iperf3 -c 10.198.0.2 -u -b 0 -l 64 -t 5 $reverse -J >"$store/udp.json"
  # Every program's mean run time (the flood's side has millions of runs; the other side only
  # iperf3's control traffic, whose first, cold runs dominate).
  bpftool prog show | grep -A1 -E "name (tc_ingress|tc_egress|on_kfree_skb|tcp_lifecycle) " \
    | grep -oE "name [a-z_]+|run_time_ns [0-9]+|run_cnt [0-9]+" | paste - - - \
    | awk '{ if ($6 > 0) printf "  %-14s %12d runs  %6.1f ns/run\n", $2, $6, $4 / $6 }'
  stop_recorder
  sysctl -qw kernel.bpf_stats_enabled=0
  echo "  $(tail -1 "$store/recorder.log")"
  # Flows lost: every datagram iperf3 sent must be in the recorded UDP flow's packets. iperf3
  # sends one datagram of its own first (its UDP "connect"), outside its count.
  python3 - "$store" "$side" <<'PY'
import duckdb, json, sys
store, side = sys.argv[1], sys.argv[2]
sent = json.load(open(f"{store}/udp.json"))["end"]["sum"]["packets"]
source = "10.198.0.1" if side == "EGRESS" else "10.198.0.2"
recorded, flows = duckdb.sql(f"""
    select coalesce(sum(packets), 0), count(distinct source_port)
    from read_parquet('{store}/flows/**/*.parquet')
    where cast(l4_protocol as varchar) = 'UDP' and ip_source = '{source}'
      and cast(traffic_direction as varchar) = '{side}'""").fetchall()[0]
verdict = "none lost" if recorded >= sent else f"{sent - recorded} LOST"
print(f"  UDP datagrams sent {sent}, recorded {recorded} in {flows} flow(s) "
      f"(+1 expected: iperf3's connect datagram): {verdict}")
PY
  rm -rf "$store/flows"
}

# The floor: an empty tc program (benches/noop.bpf.c) on both sides of a's end, same floods.
noop_floor() {
  clang-19 -target bpf -O2 -g -I"/usr/include/$(uname -m)-linux-gnu" \
    -c benches/noop.bpf.c -o "$store/noop.bpf.o"
  in_a tc qdisc add dev "$end_a" clsact
  in_a tc filter add dev "$end_a" egress bpf da obj "$store/noop.bpf.o" sec classifier
  in_a tc filter add dev "$end_a" ingress bpf da obj "$store/noop.bpf.o" sec classifier
  sysctl -qw kernel.bpf_stats_enabled=1
  for reverse in "" -R; do
    in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
    in_a iperf3 -c 10.198.0.2 -u -b 0 -l 64 -t 5 $reverse >/dev/null
  done
  bpftool prog show name noop | grep -oE "run_time_ns [0-9]+|run_cnt [0-9]+" | paste - - \
    | awk '{ printf "  noop (one per side) %10d runs  %6.1f ns/run\n", $4, $2 / $4 }'
  sysctl -qw kernel.bpf_stats_enabled=0
  in_a tc qdisc del dev "$end_a" clsact
}

echo "== floor: an empty tc program, 64-byte UDP floods both ways, 5 s each"
noop_floor
echo "== per-packet cost: 64-byte UDP flood a -> b, 5 s (tc_egress)"
udp_flood "" EGRESS
echo "== per-packet cost: 64-byte UDP flood b -> a, 5 s (tc_ingress)"
udp_flood -R INGRESS

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
print("runs without:", " ".join(f"{x:.2f}" for x in without), "Gbit/s")
print("runs with:   ", " ".join(f"{x:.2f}" for x in with_), "Gbit/s")
print(f"median without {a:.2f} Gbit/s, with {b:.2f} Gbit/s: {100 * b / a:.1f}% (target >= 97%)")
PY
