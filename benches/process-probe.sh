# Sourced by the benchmark scripts: what they read of a running process and its metrics, and
# the test Hubble server they start.
now() { date +%s.%N; }
# A sample of the Prometheus exposition at http://$metrics/metrics.
metric() { curl -s "http://$metrics/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }
# Waits until `pattern` appears in `file` (default: 2 minutes), else prints the file and exits.
wait_for() { # pattern file [tenths of a second]
  for _ in $(seq 1 "${3:-1200}"); do grep -q "$1" "$2" && return 0; sleep 0.1; done
  echo "bench: no '$1' in $2:" >&2; cat "$2" >&2; exit 1
}
# User + system CPU seconds of a process so far.
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / tck }' "/proc/$1/stat"; }
# Peak resident memory so far (VmHWM, KiB); empty once the process has exited.
vm_hwm_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
# Samples process $1 until it exits (its VmHWM and CPU cannot be read after): raises $rss_kib
# to its peak resident memory (KiB) and sets $recorder_cpu to its CPU seconds last read.
sample_until_exit() { # pid
  local hwm
  while kill -0 "$1" 2>/dev/null; do
    hwm=$(vm_hwm_kib "$1")
    [[ -n $hwm && $hwm -gt $rss_kib ]] && rss_kib=$hwm
    recorder_cpu=$(cpu_seconds "$1" 2>/dev/null || echo "$recorder_cpu")
    sleep 0.02
  done
}
# The kernel memory of the BPF maps process $1 holds open (KiB; the memlock of each map fd in
# /proc/PID/fdinfo): allocated at load and charged to its memory cgroup, beside its RSS.
kernel_maps_kib() {
  local info total=0
  for info in /proc/"$1"/fdinfo/*; do
    grep -q '^map_type:' "$info" 2>/dev/null || continue
    total=$((total + $(sed -n 's/^memlock:[[:space:]]*//p' "$info")))
  done
  echo $((total / 1024))
}
# Context switches of every thread of process $1 so far (voluntary + involuntary).
context_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'
}
# Starts test-hubble-server on $work/hubble.sock with $flows generated flows (at $RATE flows per
# second if set) and waits until they are generated (default: 2 minutes); sets $server_pid.
start_hubble_server() { # [tenths of a second]
  target/release/test-hubble-server --unix "$work/hubble.sock" --generate "$flows" \
    ${RATE:+--rate "$RATE"} 2>"$work/server.log" &
  server_pid=$!
  wait_for " events on " "$work/server.log" "${1:-1200}"
}
