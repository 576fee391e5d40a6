# Sourced by the tc benchmarks (ebpf-cost.sh, ebpf-cost-ab.sh): their namespaces, the recorders
# started in $a on $end_a (each with its spool in the scratch folder), the floods, and each
# program's mean run time from kernel.bpf_stats_enabled. Needs MIX_FLOWS (and $flowrec for
# start_recorder's default).
source benches/netns-pair.sh
source benches/process-probe.sh

# tc_bench_start PREFIX: the namespace pair PREFIX-a / PREFIX-b joined by the veths PREFIXva /
# PREFIXvb (10.198.0.1 / .2), a scratch folder $store, and an EXIT trap that stops the recorders,
# turns bpf_stats off and removes all of them (and $noop_pin, when the caller pins one).
tc_bench_start() {
  a=$1-a b=$1-b end_a=$1va end_b=$1vb subnet=10.198.0 store=$(mktemp -d) recorders=()
  trap tc_bench_cleanup EXIT
  netns_pair_create
}
# The empty tc program (benches/noop.bpf.c), the floor, and the per-flow bound
# (benches/flow-line.bpf.c), compiled into $store/noop.bpf.o and $store/flow-line.bpf.o.
compile_programs() {
  local program
  for program in noop flow-line; do
    clang-19 -target bpf -O2 -g -I"/usr/include/$(uname -m)-linux-gnu" \
      -c "benches/$program.bpf.c" -o "$store/$program.bpf.o"
  done
}
tc_bench_cleanup() {
  local pid
  for pid in "${recorders[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  [[ -z ${noop_pin:-} ]] || rm -f "$noop_pin"
  netns_pair_remove
  rm -rf "$store"
}

# start_recorder [BINARY] (default $flowrec): one more recorder attached to $end_a (through
# TCX, after those already running: its tc programs run after theirs), with its own spool; the
# first logs to $store/recorder.log, the next ones to recorder-N.log. Returns once it records.
start_recorder() {
  local n=${#recorders[@]} log=$store/recorder.log
  ((n == 0)) || log=$store/recorder-$n.log
  # nsenter execs the recorder: $! is the recorder itself, so the kill below reaches it.
  nsenter --net="/run/netns/$a" "${1:-$flowrec}" run --source ebpf --interfaces "$end_a" \
    --active-timeout 10s --store "$store" --spool "$store/spool-$n" 2>"$log" >/dev/null &
  recorders+=($!)
  wait_for "recording flows" "$log" 100
}
# Stops every recorder started; their spools go with them.
stop_recorder() {
  local pid
  for pid in "${recorders[@]}"; do kill -TERM "$pid"; done
  for pid in "${recorders[@]}"; do wait "$pid"; done
  recorders=()
  rm -rf "$store"/spool-*
}
# Whether each argument is one reading: a decimal number, nothing else.
is_reading() {
  local value
  for value; do [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || return 1; done
}
# `ID NAME RUNS NS_PER_RUN` of each loaded program named NAME... that has run (bpf_stats).
program_runs() {
  bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    name, runs, ns = p.get("name"), p.get("run_cnt", 0), p.get("run_time_ns", 0)
    if name in sys.argv[1:] and runs > 0:
        print(p["id"], name, runs, "%.1f" % (ns / runs))
' "$@"
}
# The id of the program NAME loaded last, run or not.
program_id() {
  bpftool -j prog show | python3 -c '
import json, sys
print(max(p["id"] for p in json.load(sys.stdin) if p.get("name") == sys.argv[1]))' "$1"
}
# attach_noop HOOK...: the empty program on a's end, on each hook (egress, ingress);
# detach_noop removes it (and the bound, when attached).
attach_noop() {
  in_a tc qdisc add dev "$end_a" clsact
  local hook
  for hook; do
    in_a tc filter add dev "$end_a" "$hook" bpf da obj "$store/noop.bpf.o" sec classifier
  done
}
# attach_flow_line HOOK: the per-flow bound on a's end, before the empty program (pref 1: the
# empty program's filter has the default, higher one), after attach_noop.
attach_flow_line() {
  in_a tc filter add dev "$end_a" "$1" pref 1 bpf da obj "$store/flow-line.bpf.o" sec classifier
}
detach_noop() {
  in_a tc qdisc del dev "$end_a" clsact
}

# A 5 s flood of 64-byte UDP datagrams, one way: `single` is one flow (iperf3 at the highest
# rate it reaches; -R: from b to a), `mix` is MIX_FLOWS flows interleaved (datagrams sent
# round-robin to as many ports of the peer, which drops them silently). SIDE: EGRESS floods
# from a to b, across a's tc_egress; INGRESS from b to a, across its tc_ingress.
send_flood() {
  local kind=$1 side=$2
  local from=in_a to=in_b peer=10.198.0.2
  [[ $side == INGRESS ]] && from=in_b to=in_a peer=10.198.0.1
  if [[ $kind == single ]]; then
    local reverse=; [[ $side == INGRESS ]] && reverse=-R
    in_b iperf3 -s -1 -D >/dev/null; sleep 0.3
    in_a iperf3 -c 10.198.0.2 -u -b 0 -l 64 -t 5 $reverse -J \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum"]["packets"])' \
      >"$store/sent"
    return
  fi
  $to nft add table inet frtb
  $to nft add chain inet frtb input '{ type filter hook input priority 0; policy accept; }'
  $to nft add rule inet frtb input udp dport 20000-$((20000 + MIX_FLOWS - 1)) drop
  # 36 bytes of payload: 64-byte frames, like iperf3's -l 64 ones above. On one CPU (the last
  # this shell may use): a sender the scheduler moves halfway counts its flows in both CPUs'
  # slots and maps, a different flood from one run to the next.
  local cpu
  cpu=$(taskset -pc $$ | sed 's/.*: //' | awk -F'[,-]' '{ print $NF }')
  $from taskset -c "$cpu" python3 - "$peer" "$MIX_FLOWS" >"$store/sent" <<'PY'
import socket, sys, time
peer, flows = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ports = [(peer, 20000 + i) for i in range(flows)]
end, sent = time.monotonic() + 5, 0
while time.monotonic() < end:
    for port in ports:
        s.sendto(b"x" * 36, port)
    sent += flows
print(sent)
PY
  $to nft delete table inet frtb
}
