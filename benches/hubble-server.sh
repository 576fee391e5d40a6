# Sourced by the live-recording scripts (hubble-bench.sh, heap-profile.sh): a work folder
# removed on exit, the recorder and the test Hubble server stopped on exit, and
# `start_hubble_server` (process-probe.sh) serving $flows generated flows on $work/hubble.sock (at $RATE flows per
# second if set, else as fast as the client reads).
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
