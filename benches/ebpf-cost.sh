#!/usr/bin/env bash
# Cost of the recorder's kernel programs (issue 3 benchmark; `make bench-ebpf`, as root):
#  1. per-packet run time of each program from kernel.bpf_stats_enabled (run_time_ns / run_cnt)
#     during 64-byte UDP floods each way: one flow at the highest rate iperf3 reaches here, and
#     MIX_FLOWS flows (default 10,000) interleaved round-robin; the recorder's loss counters,
#     and the datagrams sent vs recorded (flows lost).
#     An empty tc program measured the same way first gives the floor: the cost of the
#     measurement itself on this machine.
#  2. each tc program alone, without the network stack around it: BPF_PROG_TEST_RUN
#     (`bpftool prog run`) of one 64-byte UDP frame repeated TEST_RUNS times (default 10M),
#     against the empty program run the same way. With the flow in its slot and every line it
#     touches in cache, this is the program's own cost; the floods add what a packet pays for
#     the lines the stack evicted between two packets.
#  3. iperf3 TCP throughput between two namespaces without and with the recorder attached,
#     median of 5 runs each, alternating.
# Namespaces, veths and the pinned empty program (/sys/fs/bpf/frtb_noop) are prefixed frtb and
# removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
[[ -n ${FLOWREC:-} ]] || cargo build --release --locked --quiet -p flowrec
flowrec=${FLOWREC:-target/release/flowrec}
MIX_FLOWS=${MIX_FLOWS:-10000}
TEST_RUNS=${TEST_RUNS:-10000000}
noop_pin=/sys/fs/bpf/frtb_noop
source benches/tc-floods.sh
tc_bench_start frtb

tcp_gbits() {
  in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
  in_a iperf3 -c 10.198.0.2 -t 3 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}

# One flood (see send_flood) with a fresh recorder in a: every program's mean run time, the
# recorder's loss counters, and the datagrams sent vs recorded.
udp_flood() {
  local kind=$1 side=$2
  sysctl -qw kernel.bpf_stats_enabled=1
  start_recorder
  send_flood "$kind" "$side"
  # Every program's mean run time (the flood's side has millions of runs; the other side only
  # iperf3's control traffic, whose first, cold runs dominate).
  program_costs tc_ingress tc_egress on_kfree_skb tcp_lifecycle
  stop_recorder
  sysctl -qw kernel.bpf_stats_enabled=0
  echo "  $(tail -1 "$store/recorder.log")"
  # Flows lost: every datagram sent must be in the recorded flows' packets. iperf3 sends one
  # datagram of its own first (its UDP "connect"), outside its count.
  python3 - "$store" "$kind" "$side" "$MIX_FLOWS" <<'PY'
import duckdb, sys
store, kind, side, mix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sent = int(open(f"{store}/sent").read())
source = "10.198.0.1" if side == "EGRESS" else "10.198.0.2"
ports = f"and destination_port between 20000 and {20000 + mix - 1}" if kind == "mix" else ""
recorded, flows = duckdb.sql(f"""
    select coalesce(sum(packets), 0), count(distinct (source_port, destination_port))
    from read_parquet('{store}/flows/**/*.parquet')
    where cast(l4_protocol as varchar) = 'UDP' and ip_source = '{source}' {ports}
      and cast(traffic_direction as varchar) = '{side}'""").fetchall()[0]
expected = "+1 expected: iperf3's connect datagram" if kind == "single" else f"{mix} expected"
verdict = "none lost" if recorded >= sent else f"{sent - recorded} LOST"
print(f"  UDP datagrams sent {sent}, recorded {recorded} in {flows} flow(s) "
      f"({expected}): {verdict}")
PY
  rm -rf "$store/flows"
}

# The floor: an empty tc program (benches/noop.bpf.c) on both sides of a's end, the same
# floods (KIND: single or mix) both ways.
noop_floor() {
  local kind=$1
  attach_noop egress ingress
  sysctl -qw kernel.bpf_stats_enabled=1
  send_flood "$kind" EGRESS
  send_flood "$kind" INGRESS
  program_costs noop
  sysctl -qw kernel.bpf_stats_enabled=0
  detach_noop
}

echo "== floor: an empty tc program, the same floods both ways, 5 s each"
compile_noop
noop_floor single
noop_floor mix
echo "== per-packet cost: one flow, 64-byte UDP flood a -> b, 5 s (tc_egress)"
udp_flood single EGRESS
echo "== per-packet cost: one flow, 64-byte UDP flood b -> a, 5 s (tc_ingress)"
udp_flood single INGRESS
echo "== per-packet cost: $MIX_FLOWS flows interleaved, 64-byte UDP a -> b, 5 s (tc_egress)"
udp_flood mix EGRESS
echo "== per-packet cost: $MIX_FLOWS flows interleaved, 64-byte UDP b -> a, 5 s (tc_ingress)"
udp_flood mix INGRESS

echo "== each program alone: one 64-byte UDP frame, BPF_PROG_TEST_RUN x $TEST_RUNS, 3 rounds"
# 192.0.2.1:40000 -> 192.0.2.2:5201 (TEST-NET-1: no flow of the floods above).
python3 - "$store/frame" <<'PY'
import struct, sys
payload = b"x" * 22
udp = struct.pack("!HHHH", 40000, 5201, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
words = sum(struct.unpack("!10H", ip))
while words >> 16:
    words = (words & 0xFFFF) + (words >> 16)
ip = ip[:10] + struct.pack("!H", ~words & 0xFFFF) + ip[12:]
open(sys.argv[1], "wb").write(bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp)
PY
bpftool prog load "$store/noop.bpf.o" "$noop_pin" type classifier
# Mean ns per run of one program (ID, or `pinned PATH`), as bpftool prints it.
test_run_ns() {
  bpftool prog run "$@" data_in "$store/frame" repeat "$TEST_RUNS" | sed -n 's/.*duration (average): \([0-9]*\)ns.*/\1/p'
}
start_recorder
for program in tc_egress tc_ingress; do
  id=$(program_id "$program")
  for round in 1 2 3; do
    ns=$(test_run_ns id "$id") floor=$(test_run_ns pinned "$noop_pin")
    echo "  $program round $round: $ns ns/run, empty program $floor: $((ns - floor)) above"
  done
done
stop_recorder
rm -f "$noop_pin"

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
