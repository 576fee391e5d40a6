#!/usr/bin/env bash
# Two recorder builds compared on the live Hubble path (issue 19's CPU target): ROUNDS rounds,
# each running binary A then binary B against one test-hubble-server (the same FLOWS generated
# flows replayed to each client, unpaced; A B then B A), then the median and range of each one's
# CPU-seconds per 1M flows and peak RSS. One run of `hubble-bench.sh` spreads by ±10% on these
# VMs, more than most single changes: alternating the two builds in one session, against one
# server, is what tells them apart.
# Usage: benches/hubble-ab.sh ROUNDS BINARY_A BINARY_B [FLOWS] (default 1000000 flows), e.g.
#   git checkout -q OLD && cargo build --release -p flowrec && cp target/release/flowrec /tmp/a
#   git checkout -q main && cargo build --release -p flowrec && cp target/release/flowrec /tmp/b
#   bash benches/hubble-ab.sh 8 /tmp/a /tmp/b
# Build nothing while it runs: the figures are CPU time on a 2-core machine.
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
rounds=$1 flows=${4:-1000000}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench: ROUNDS must be a number above 0, not '$rounds'" >&2; exit 2; }
binaries=()
for binary in "$2" "$3"; do
  [[ -x $binary ]] || { echo "bench: $binary is not an executable" >&2; exit 2; }
  binaries+=("$(realpath "$binary")")
done
cd "$(dirname "$0")/.."
[[ -x target/release/test-hubble-server ]] || cargo build --release --locked --quiet -p flow-benches
work_prefix=flowrec-hubble-ab
source benches/hubble-server.sh
echo "bench: generating $flows flows in test-hubble-server" >&2
start_hubble_server
results=()
for round in $(seq 1 "$rounds"); do
  # A B, then B A: a drift of the machine over the session weighs on both sides alike.
  order="0 1"
  ((round % 2)) || order="1 0"
  for side in $order; do
    record_once "${binaries[side]}"
    per_million=$(awk -v c="$recorder_cpu" -v n="$flows" 'BEGIN { printf "%.2f", c / n * 1e6 }')
    echo "round $round ${binaries[side]}: $per_million CPU-seconds per 1M, $((rss_kib / 1024)) MiB" >&2
    results+=("$side $per_million $((rss_kib / 1024))")
  done
done
for side in 0 1; do
  printf '%s\n' "${results[@]}" | awk -v side="$side" -v name="${binaries[side]}" '
    BEGIN { n = 0 }
    $1 == side { cpu[n] = $2; rss[n] = $3; n++ }
    function median(a, n,   i, j, t) {
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
    }
    END {
      lo = cpu[0]; hi = cpu[0]; for (i = 1; i < n; i++) { if (cpu[i] < lo) lo = cpu[i]; if (cpu[i] > hi) hi = cpu[i] }
      printf "%s: CPU-seconds per 1M flows median %.2f (%.2f-%.2f), peak RSS median %d MiB, %d rounds\n", name, median(cpu, n), lo, hi, median(rss, n), n
    }'
done
