#!/usr/bin/env bash
# Where the recorder's memory goes (`make heap-profile`): a heap profile of `flowrec run
# --source hubble` (default flags) recording FLOWS generated flows from test-hubble-server, as
# `make bench-hubble` does, under valgrind's massif.
#
# massif sees `malloc`, not mimalloc (the recorder's allocator maps its own memory), so the
# recorder is built with the `system-allocator` feature into target/prof. What it shows is the
# live heap by allocation site at its peak, which does not depend on the allocator; what an
# allocator keeps on top of it (freed memory not yet returned, fragmentation) is the difference
# with the VmHWM that `make bench-hubble` prints. The recording runs ~30x slower under valgrind,
# so the rate, and with it what waits between threads, is lower than in production.
# Usage: benches/heap-profile.sh [FLOWS] (default 300000). Writes target/prof/massif.out and
# prints the peak heap by allocation site (benches/massif-summary.py; ms_print's whole view in
# target/prof/massif.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-300000}
command -v valgrind >/dev/null || apt-get install -y -qq valgrind
CARGO_TARGET_DIR=target/prof cargo build --release --quiet -p flowrec --features system-allocator
cargo build --release --quiet -p flow-benches --bin test-hubble-server
work_prefix=flowrec-heap
source benches/hubble-server.sh
start_hubble_server 3000
valgrind --tool=massif --massif-out-file=target/prof/massif.out --threshold=0.2 \
  target/prof/release/flowrec run --source hubble --hubble-server "unix://$work/hubble.sock" \
  --store "$work/store" --spool "$work/spool" --node-name bench-node \
  --metrics-addr 127.0.0.1:0 2>"$work/recorder.log" &
recorder_pid=$!
wait_for "recording flows" "$work/recorder.log" 3000
metrics=$(sed -n 's|.*serving metrics on http://\([^/]*\)/.*|\1|p' "$work/recorder.log")
until [[ "$(metric flowrec_flows_recorded_total)" == "$flows" ]]; do sleep 0.5; done
kill -TERM "$recorder_pid"
wait "$recorder_pid" || { echo "heap-profile: the recorder failed" >&2; cat "$work/recorder.log" >&2; exit 1; }
recorder_pid=
grep -E "received [0-9]+ flows" "$work/recorder.log" | sed 's/^flowrec: /summary: /' >&2
ms_print --threshold=2 target/prof/massif.out > target/prof/massif.txt
python3 benches/massif-summary.py target/prof/massif.out 1
echo "heap-profile: target/prof/massif.txt" >&2
