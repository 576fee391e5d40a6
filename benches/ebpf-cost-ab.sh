#!/usr/bin/env bash
# Two builds' tc programs against the empty-program floor, alternated in one run (as root):
#   bash benches/ebpf-cost-ab.sh ROUNDS BINARY_A BINARY_B [single|mix] [apart|together]
# Each round floods one way then the other (64-byte UDP, 5 s each, as `make bench-ebpf`) across
# the empty program, A's programs and B's, in an order that rotates from round to round, and
# reads each one's mean run time (kernel.bpf_stats_enabled). A flood's floor moves by several ns
# from one run to the next on these VMs, as much as most changes: so each build is compared with
# the floor of its own round, and the medians of those differences are printed with their range.
# `together`: A's and B's recorders are attached at once and see the same flood (the first
# started runs first; which one alternates by round): a neighbour that slows the machine for a
# while slows both, where apart it slows whichever flood it meets (the 10,000-flow mix swings
# 2x from flood to flood on these VMs). Each program still pays only its own cache misses.
# Namespaces, veths and the scratch folder are prefixed frtc and removed on exit.
set -euo pipefail
if (($# < 3 || $# > 5)) || ! [[ $1 =~ ^[1-9][0-9]*$ ]] ||
  [[ ! -f $2 || ! -x $2 || ! -f $3 || ! -x $3 ]]; then
  echo "usage: $0 ROUNDS BINARY_A BINARY_B [single|mix] [apart|together]" \
    "(ROUNDS >= 1, two recorder binaries)" >&2
  exit 2
fi
# Resolved before the cd below, so that relative paths are the caller's.
rounds=$1 bin_a=$(realpath "$2") bin_b=$(realpath "$3") kind=${4:-single} mode=${5:-apart}
cd "$(dirname "$0")/.."
[[ $kind == single || $kind == mix ]] || { echo "$0: the flood is single or mix, not $kind" >&2; exit 2; }
[[ $mode == apart || $mode == together ]] ||
  { echo "$0: the builds run apart or together, not $mode" >&2; exit 2; }
bash .ci/setup.sh
MIX_FLOWS=${MIX_FLOWS:-10000}
source benches/tc-floods.sh
tc_bench_start frtc
compile_programs

# The mean ns per run of the program NAME loaded last, or of ID (one number): other recorders
# on the machine (a test suite's) have programs of the same names.
mean_ns() {
  program_runs "$1" | sort -n | awk -v id="${2:-}" 'id == "" || $1 == id { ns = $4 } END { print ns }'
}

# flood WHO SIDE: one flood across the empty program (WHO = floor) or a build's programs; prints
# the program's mean ns per run.
flood() {
  local who=$1 side=$2 program=tc_egress
  [[ $side == INGRESS ]] && program=tc_ingress
  sysctl -qw kernel.bpf_stats_enabled=1
  if [[ $who == floor ]]; then
    # Only on the flooded side: the other one sees a few cold runs, which would be read too.
    local hook=egress; [[ $side == INGRESS ]] && hook=ingress
    attach_noop "$hook"
    send_flood "$kind" "$side"
    mean_ns noop
    detach_noop
  else
    start_recorder "$who"
    send_flood "$kind" "$side"
    mean_ns "$program"
    stop_recorder
  fi
  sysctl -qw kernel.bpf_stats_enabled=0
}

# together SIDE FIRST SECOND: one flood across both builds' programs (FIRST's run first); prints
# `WHO NS` for each.
together() {
  local side=$1 program=tc_egress who ids=()
  shift
  [[ $side == INGRESS ]] && program=tc_ingress
  sysctl -qw kernel.bpf_stats_enabled=1
  for who; do
    start_recorder "${binary[$who]}"
    ids+=("$(program_id "$program")")
  done
  if [[ ${ids[0]} == "${ids[1]}" ]]; then
    echo "$0: both recorders' $program is program ${ids[0]}" >&2
    exit 1
  fi
  send_flood "$kind" "$side"
  echo "$1 $(mean_ns "$program" "${ids[0]}")"
  echo "$2 $(mean_ns "$program" "${ids[1]}")"
  stop_recorder
  sysctl -qw kernel.bpf_stats_enabled=0
}

# note ROUND SIDE WHO NS: checks and keeps one reading.
note() {
  if ! is_reading "$4"; then
    echo "$0: round $1 $2 $3: no single reading of the program's run time ($4)" >&2
    exit 1
  fi
  echo "round $1 $2 $3: $4 ns/run" >&2
  echo "$1 $2 $3 $4" >>"$results"
}

results=$store/results
declare -A binary=([floor]=floor [A]=$bin_a [B]=$bin_b)
orders=("floor A B" "A B floor" "B floor A")
[[ $mode == together ]] && orders=("floor A" "B floor")
for ((round = 1; round <= rounds; round++)); do
  for side in EGRESS INGRESS; do
    for who in ${orders[$(((round - 1) % ${#orders[@]}))]}; do
      # In this shell, not a $(...) one: the EXIT trap must see the recorders it starts, and a
      # failure inside must stop the run.
      if [[ $who == floor || $mode == apart ]]; then
        flood "${binary[$who]}" "$side" >"$store/ns"
        note "$round" "$side" "$who" "$(<"$store/ns")"
      else
        if [[ $who == A ]]; then together "$side" A B; else together "$side" B A; fi >"$store/ns"
        while read -r who ns; do note "$round" "$side" "$who" "$ns"; done <"$store/ns"
      fi
    done
  done
done

python3 - "$results" "$bin_a" "$bin_b" "$kind" "$MIX_FLOWS" "$mode" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
ns = {(int(r), side, who): float(v) for r, side, who, v in rows}
names = {"A": sys.argv[2], "B": sys.argv[3]}
flood = "one flow" if sys.argv[4] == "single" else f"{sys.argv[5]} interleaved flows"
print(f"64-byte UDP floods of {flood}, {max(r for r, _, _ in ns)} rounds, builds {sys.argv[6]}; "
      "ns per packet above the floor of the same round:")
for side, program in (("EGRESS", "tc_egress"), ("INGRESS", "tc_ingress")):
    floors = [v for (r, s, w), v in ns.items() if s == side and w == "floor"]
    print(f"  {program}: floor median {statistics.median(floors):.1f} ({min(floors):.1f}-{max(floors):.1f})")
    for who in ("A", "B"):
        above = [v - ns[(r, s, "floor")] for (r, s, w), v in sorted(ns.items()) if s == side and w == who]
        print(f"    {who} {names[who]}: median {statistics.median(above):.1f} "
              f"({min(above):.1f} to {max(above):.1f}): " + " ".join(f"{x:.1f}" for x in above))
    if sys.argv[6] == "together":
        # The program that runs first pays for the packet's and the skb's lines that the second
        # then finds warm; the order alternates, so over an even number of rounds the mean of
        # B - A in the same flood leaves that out.
        rounds = sorted(r for (r, s, w) in ns if s == side and w == "A")
        diffs = [ns[(r, side, "B")] - ns[(r, side, "A")] for r in rounds]
        even = " (an odd number of rounds: A ran first once more)" if len(diffs) % 2 else ""
        print(f"    B - A in the same flood: mean {statistics.mean(diffs):+.1f}{even}: "
              + " ".join(f"{x:+.1f}" for x in diffs))
PY
