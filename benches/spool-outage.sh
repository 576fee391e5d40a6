#!/usr/bin/env bash
# After-an-outage benchmark (`make bench-outage`): what shipping a large spool costs in memory.
#
# Phase 1, the outage: `flowrec run --source file --follow` records a Hubble exporter file of N
# generated flows (flowgen: realistic flows over one hour) while its store is an S3 endpoint
# that refuses connections (127.0.0.1:9): every flow is recorded in the spool, nothing ships.
# When all N are recorded the recorder is stopped by two SIGTERMs (at once: its segments stay
# in the spool).
# Phase 2, the store is back: a new recorder on the same spool and file (it resumes at the
# spool's checkpoint, the file's end, so only the backlog moves) ships it to a local store; it is
# stopped once every flow has shipped. Both phases report seconds, CPU seconds and peak RSS
# (VmHWM, sampled until the process exits); the spool's size between them; the store is counted
# at the end.
# Usage: benches/spool-outage.sh [FLOWS] (default 5000000: a ~1.3 GiB spool from an 8 GiB
# file; a 10 GiB spool is ~40M flows and a 68 GB file).
# SOURCE=hubble records from test-hubble-server instead (as fast as the recorder takes them;
# both phases on the same server): no file, so a 10 GiB spool fits on this machine's disk:
# `SOURCE=hubble benches/spool-outage.sh 40000000`.
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-5000000}
bin=target/release
work=$(mktemp -d /tmp/flowrec-outage-bench.XXXXXX)
recorder_pid=
server_pid=
cleanup() {
  [[ -n $recorder_pid ]] && kill -9 "$recorder_pid" 2>/dev/null || true
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/process-probe.sh
# Starts the recorder with "$@", waits until it records, sets $metrics.
start_recorder() { # log args...
  local log=$1
  shift
  "$bin/flowrec" run --spool "$work/spool" --node-name bench-node \
    --metrics-addr 127.0.0.1:0 "$@" 2>"$log" &
  recorder_pid=$!
  wait_for "recording flows" "$log"
  metrics=$(sed -n 's|.*serving metrics on http://\([^/]*\)/.*|\1|p' "$log")
}
# Waits until metric $1 reaches $flows, then stops the recorder (a second SIGTERM with
# $3 = now: stop without waiting for the store); prints "seconds cpu rss_mib".
run_until() { # metric started_at [now]
  local hwm rss_kib=0 recorder_cpu=0 done_at
  until [[ "$(metric "$1")" == "$flows" ]]; do
    hwm=$(vm_hwm_kib "$recorder_pid")
    [[ -n $hwm && $hwm -gt $rss_kib ]] && rss_kib=$hwm
    recorder_cpu=$(cpu_seconds "$recorder_pid")
    sleep 0.2
  done
  done_at=$(now)
  kill -TERM "$recorder_pid"
  if [[ ${3:-} == now ]]; then sleep 0.5; kill -TERM "$recorder_pid" 2>/dev/null || true; fi
  sample_until_exit "$recorder_pid"
  wait "$recorder_pid" || true
  recorder_pid=
  awk -v a="$2" -v b="$done_at" -v c="$recorder_cpu" -v r="$rss_kib" \
    'BEGIN { printf "%.1f %s %d\n", b - a, c, r / 1024 }'
}

case ${SOURCE:=file} in
  file | hubble) ;;
  *) echo "bench: SOURCE=$SOURCE: file or hubble" >&2; exit 2 ;;
esac
if [[ $SOURCE == hubble ]]; then
  echo "bench: generating $flows flows in test-hubble-server" >&2
  start_hubble_server
  source_args=(--source hubble --hubble-server "unix://$work/hubble.sock")
else
  echo "bench: generating $flows flows into an exporter file" >&2
  "$bin/flowgen" --flows "$flows" --out "$work/flows.json"
  source_args=(--source file --follow "$work/flows.json")
fi

echo "bench: phase 1, recording with the store down" >&2
AWS_ENDPOINT_URL=http://127.0.0.1:9 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  start_recorder "$work/outage.log" "${source_args[@]}" --store s3://outage-bench/flows
read -r rec_s rec_cpu rec_rss < <(run_until flowrec_flows_recorded_total "$(now)" now)
spool_bytes=$(du -sb "$work/spool" | cut -f1)

echo "bench: phase 2, shipping the spool ($((spool_bytes / 1048576)) MiB)" >&2
started=$(now)
start_recorder "$work/ship.log" "${source_args[@]}" --store "$work/store"
read -r ship_s ship_cpu ship_rss < <(run_until flowrec_flows_shipped_total "$started")
stored=$("$bin/../debug/flowsql" --store "$work/store" --format csv \
  "select count(*) as n from flows" 2>/dev/null | tail -1 || echo "(target/debug/flowsql not built)")
files=$(find "$work/store" -name '*.parquet' | wc -l)

awk -v n="$flows" -v sb="$spool_bytes" -v rs="$rec_s" -v rc="$rec_cpu" -v rr="$rec_rss" \
  -v ss="$ship_s" -v sc="$ship_cpu" -v sr="$ship_rss" -v stored="$stored" -v files="$files" 'BEGIN {
  printf "flows                          %d\n", n
  printf "phase 1, store down: recorded  %.1f s  %.0f flows/s  CPU %s s  peak RSS %d MiB\n", rs, n / rs, rc, rr
  printf "spool after the outage         %.0f MiB (%.1f bytes/flow)\n", sb / 1048576, sb / n
  printf "phase 2, store back: shipped   %.1f s  %.0f flows/s  CPU %s s  peak RSS %d MiB\n", ss, n / ss, sc, sr
  printf "flows in the store             %s in %d files\n", stored, files
}'
