# Sourced by the live-recording scripts (hubble-bench.sh, hubble-ab.sh, heap-profile.sh): a work
# folder removed on exit, the recorder and the test Hubble server stopped on exit,
# `start_hubble_server` (process-probe.sh) serving $flows generated flows on $work/hubble.sock (at
# $RATE flows per second if set, else as fast as the client reads), and `record_once`.
# Needs $flows and $work_prefix; sets $work and $server_pid; $recorder_pid is the caller's.
source benches/process-probe.sh
work=$(mktemp -d "/tmp/$work_prefix.XXXXXX")
server_pid=
recorder_pid=
cleanup() {
  [[ -n $recorder_pid ]] && kill "$recorder_pid" 2>/dev/null || true
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Runs recorder binary $1 against the server until it has recorded all $flows flows, stops it
# with SIGTERM and waits until it has shipped them and exited (into a fresh $work/store and
# $work/spool). Sets start, recorded, shipped (times), rss_kib (VmHWM, sampled until the exit),
# recorder_cpu (seconds, sampled likewise) and switches (context switches while recording).
# PERF_DATA=FILE records the recorder's profile with `perf record -g` into FILE.
record_once() { # recorder-binary
  rm -rf "$work/store" "$work/spool"
  "$1" run --source hubble --hubble-server "unix://$work/hubble.sock" \
    --store "$work/store" --spool "$work/spool" --node-name bench-node \
    --metrics-addr 127.0.0.1:0 2>"$work/recorder.log" &
  recorder_pid=$!
  local perf_pid=
  if [[ -n ${PERF_DATA:-} ]]; then
    perf record -F 999 -g -o "$PERF_DATA" -p "$recorder_pid" 2>"$work/perf.log" &
    perf_pid=$!
  fi
  wait_for "recording flows" "$work/recorder.log"
  start=$(now)
  metrics=$(sed -n 's|.*serving metrics on http://\([^/]*\)/.*|\1|p' "$work/recorder.log")
  recorder_cpu=0
  until [[ "$(metric flowrec_flows_recorded_total)" == "$flows" ]]; do
    kill -0 "$recorder_pid" 2>/dev/null \
      || { echo "bench: the recorder exited early:" >&2; cat "$work/recorder.log" >&2; exit 1; }
    sleep 0.05
  done
  recorded=$(now)
  # While recording: threads that exit at the stop take their counts with them.
  switches=$(context_switches "$recorder_pid")
  rss_kib=0
  kill -TERM "$recorder_pid"
  sample_until_exit "$recorder_pid"
  wait "$recorder_pid" || { echo "bench: the recorder failed" >&2; cat "$work/recorder.log" >&2; exit 1; }
  shipped=$(now)
  recorder_pid=
  [[ -n $perf_pid ]] && wait "$perf_pid" || true
}
