#!/usr/bin/env bash
# Cost of the recorder's kernel programs (issue 3 benchmark; `make bench-ebpf`, as root):
#  1. per-packet run time of each program from kernel.bpf_stats_enabled (run_time_ns / run_cnt)
#     during 64-byte UDP floods each way: one flow at the highest rate iperf3 reaches here, and
#     MIX_FLOWS flows (default 10,000) interleaved round-robin; ROUNDS rounds (default 3) of the
#     four floods, then the median of each. The floor is an empty tc program attached beside the
#     recorder on the flooded hook (clsact, which runs after the recorder's TCX programs from
#     Linux 6.6; before, both are clsact filters and the order is their priorities'), timed
#     on the same packets in the same flood: these VMs' floors move by several ns from one flood
#     to the next, as much as most changes, and a flood that runs slower for both programs does
#     not read as the recorder's cost. Each flood also prints the recorder's loss counters and
#     the datagrams sent vs recorded (flows lost). Each round then runs the same four floods
#     across the bound instead of the recorder (benches/flow-line.bpf.c: one line of per-flow
#     state per packet and nothing else), before the empty program: the least a recorder that
#     adds up each flow's key and counters in kernel maps (about a line per flow) pays here, the
#     yardstick for the 10,000-flow mix, whose lines are cold at every packet.
#  2. the drop tracer (on_kfree_skb) per dropped packet: one flow, every datagram dropped by
#     nftables, ROUNDS rounds.
#  3. each tc program alone, without the network stack around it: BPF_PROG_TEST_RUN
#     (`bpftool prog run`) of one 64-byte UDP frame repeated TEST_RUNS times (default 10M),
#     against the empty program run the same way. With the flow in its slot and every line it
#     touches in cache, this is the program's own cost; the floods add what a packet pays for
#     the lines the stack evicted between two packets.
#  4. iperf3 TCP throughput between two namespaces, TCP_RUNS rounds (default 9) of three 3 s
#     runs in an order that rotates: nothing attached, the empty program on both hooks, the
#     recorder; the median of each, and of each round's ratio to nothing attached. The empty
#     program's ratio is the control (through clsact: this bpftool cannot attach through TCX, as
#     the recorder does): on these VMs it swings as much as the recorder's.
# Namespaces, veths and the pinned empty program (/sys/fs/bpf/frtb_noop) are prefixed frtb and
# removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
MIX_FLOWS=${MIX_FLOWS:-10000}
TEST_RUNS=${TEST_RUNS:-10000000}
ROUNDS=${ROUNDS:-3}
TCP_RUNS=${TCP_RUNS:-9}
for knob in MIX_FLOWS TEST_RUNS ROUNDS TCP_RUNS; do
  if ! [[ ${!knob} =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: $knob must be a positive whole number, not '${!knob}'" >&2
    exit 2
  fi
done
bash .ci/setup.sh
[[ -n ${FLOWREC:-} ]] || cargo build --release --locked --quiet -p flowrec
flowrec=${FLOWREC:-target/release/flowrec}
noop_pin=/sys/fs/bpf/frtb_noop
source benches/tc-floods.sh
tc_bench_start frtb

tcp_gbits() {
  in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
  in_a iperf3 -c 10.198.0.2 -t 3 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}

# udp_flood KIND SIDE [ARM]: one flood (see send_flood) with the empty program on the flooded
# hook and, for ARM `recorder` (the default), a fresh recorder in a: every program's mean run
# time, the recorder's program above the empty one, the recorder's loss counters, and the
# datagrams sent vs recorded. For ARM `bound`, the per-flow bound (flow-line.bpf.c) instead of
# the recorder, before the empty program. Appends `ARM KIND SIDE PROGRAM_NS EMPTY_NS` to
# $store/costs.
udp_flood() {
  local kind=$1 side=$2 arm=${3:-recorder} hook=egress program=tc_egress
  [[ $side == INGRESS ]] && hook=ingress program=tc_ingress
  [[ $arm == bound ]] && program=flow_line
  attach_noop "$hook"
  sysctl -qw kernel.bpf_stats_enabled=1
  if [[ $arm == bound ]]; then attach_flow_line "$hook"; else start_recorder; fi
  send_flood "$kind" "$side"
  # Every program's mean run time (the flood's side has millions of runs; the other side only
  # iperf3's control traffic, whose first, cold runs dominate).
  program_runs tc_ingress tc_egress on_kfree_skb tcp_lifecycle flow_line noop >"$store/runs"
  [[ $arm == bound ]] || stop_recorder
  sysctl -qw kernel.bpf_stats_enabled=0
  detach_noop
  awk '{ printf "  %-14s %12d runs  %6.1f ns/run\n", $2, $3, $4 }' "$store/runs"
  local ns floor
  ns=$(awk -v p="$program" '$2 == p { print $4 }' "$store/runs")
  floor=$(awk '$2 == "noop" { print $4 }' "$store/runs")
  if ! is_reading "$ns" "$floor"; then
    echo "$0: no single reading of $program ($ns) and of the empty program ($floor)" >&2
    exit 1
  fi
  awk -v p="$program" -v a="$ns" -v b="$floor" \
    'BEGIN { printf "  %s: %.1f ns above the empty program on the same packets\n", p, a - b }'
  echo "$arm $kind $side $ns $floor" >>"$store/costs"
  [[ $arm == bound ]] && return
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

compile_programs
for ((round = 1; round <= ROUNDS; round++)); do
  echo "== round $round of $ROUNDS: one flow, 64-byte UDP flood a -> b, 5 s (tc_egress)"
  udp_flood single EGRESS
  echo "== round $round of $ROUNDS: one flow, 64-byte UDP flood b -> a, 5 s (tc_ingress)"
  udp_flood single INGRESS
  echo "== round $round of $ROUNDS: $MIX_FLOWS flows interleaved, 64-byte UDP a -> b, 5 s (tc_egress)"
  udp_flood mix EGRESS
  echo "== round $round of $ROUNDS: $MIX_FLOWS flows interleaved, 64-byte UDP b -> a, 5 s (tc_ingress)"
  udp_flood mix INGRESS
  echo "== round $round of $ROUNDS: the bound (one line of per-flow state per packet), the same four floods"
  for kind in single mix; do
    for side in EGRESS INGRESS; do
      echo "  -- $kind $side"
      udp_flood "$kind" "$side" bound
    done
  done
done
echo "== per packet above the empty program on the same packets, medians of $ROUNDS rounds (target <= 20 ns)"
python3 - "$store/costs" "$MIX_FLOWS" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for kind, name in (("single", "one flow"), ("mix", f"{sys.argv[2]} flows interleaved")):
    for side, program in (("EGRESS", "tc_egress"), ("INGRESS", "tc_ingress")):
        for arm, label in (("recorder", program), ("bound", "bound")):
            runs = [(float(r[3]), float(r[4])) for r in rows
                    if r[0] == arm and r[1] == kind and r[2] == side]
            above = [ns - floor for ns, floor in runs]
            print(f"  {name}, {label}: {statistics.median(above):.1f} above "
                  f"({' '.join(f'{x:.1f}' for x in above)}); program "
                  f"{statistics.median(ns for ns, _ in runs):.1f}, empty program "
                  f"{statistics.median(floor for _, floor in runs):.1f} ns/run")
print("  bound: one line of per-flow state per packet and nothing else (flow-line.bpf.c), the "
      "least a recorder adding up each flow's counters in kernel maps pays on this machine")
PY

echo "== the drop tracer: one flow of 64-byte UDP a -> b, every datagram dropped by nftables in b, 5 s, $ROUNDS rounds"
# One flow, so its counters stay in cache: what on_kfree_skb itself costs per dropped packet
# (bpf_stats' own cost included, as in the empty tc program's figure above). The mix floods
# above are dropped the same way and show it with cache misses.
for ((round = 1; round <= ROUNDS; round++)); do
  sysctl -qw kernel.bpf_stats_enabled=1
  start_recorder
  # A kernel without drop reasons (before 5.17) runs no drop tracer: `flowrec kernel` says why.
  if ! id=$(program_id on_kfree_skb 2>/dev/null); then
    echo "  skipped: the recorder runs no drop tracer on this kernel (see \`flowrec kernel\`)"
    stop_recorder
    break
  fi
  MIX_FLOWS=1 send_flood mix EGRESS
  program_runs on_kfree_skb | awk -v id="$id" -v sent="$(<"$store/sent")" -v round="$round" '
    $1 == id { printf "  round %d: on_kfree_skb %d runs for %d datagrams, %.1f ns/run\n", round, $3, sent, $4; found = 1 }
    END { if (!found) printf "  round %d: on_kfree_skb did not run (%d datagrams sent)\n", round, sent }'
  stop_recorder
  sysctl -qw kernel.bpf_stats_enabled=0
  rm -rf "$store/flows"
done

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

echo "== TCP throughput, $TCP_RUNS rounds of three 3 s runs: nothing attached, the empty program, the recorder"
# tcp_run ARM: one iperf3 run (Gbit/s) with nothing on a's end (none), the empty program on both
# of its hooks (empty), or a fresh recorder (recorder).
tcp_run() {
  case $1 in
    none) tcp_gbits ;;
    empty) attach_noop egress ingress; tcp_gbits; detach_noop ;;
    recorder) start_recorder; tcp_gbits; stop_recorder ;;
  esac
}
arms=(none empty recorder)
for ((run = 1; run <= TCP_RUNS; run++)); do
  # The order rotates from round to round: a machine that slows down or speeds up during a
  # round favours no arm.
  for ((i = 0; i < 3; i++)); do
    arm=${arms[$(((run + i) % 3))]}
    # In this shell, not a $(...) one: the EXIT trap must see the recorder it starts, and a
    # failed run must stop the bench.
    tcp_run "$arm" >"$store/gbits"
    gbits=$(<"$store/gbits")
    if ! is_reading "$gbits"; then
      echo "$0: iperf3 run $run ($arm) gave no throughput ('$gbits')" >&2
      exit 1
    fi
    echo "$run $arm $gbits" >>"$store/tcp"
  done
done
python3 - "$store/tcp" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    run, arm, gbits = line.split()
    runs.setdefault(arm, {})[int(run)] = float(gbits)
for arm in ("none", "empty", "recorder"):
    print(f"  {arm:<9}" + " ".join(f"{runs[arm][r]:6.2f}" for r in sorted(runs[arm])) + " Gbit/s")
none = statistics.median(runs["none"].values())
for arm in ("empty", "recorder"):
    ratios = [runs[arm][r] / runs["none"][r] for r in runs["none"]]
    print(f"  {arm}: median {statistics.median(runs[arm].values()):.2f} against {none:.2f} Gbit/s "
          f"with nothing: {100 * statistics.median(runs[arm].values()) / none:.1f}%; median of "
          f"the rounds' ratios {100 * statistics.median(ratios):.1f}%")
print("  target: the recorder >= 97% of nothing attached; the empty program shows what the hook "
      "alone and this machine's spread cost")
PY
