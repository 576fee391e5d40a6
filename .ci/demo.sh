#!/usr/bin/env bash
# The demo (README: `make demo`): builds flowrec and flowsql, imports the bundled sample capture
# (the typo'd-policy incident) into the default local store, and answers the motivating question:
# which flows were dropped, between which pods, by which policy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
cargo build --workspace --locked --quiet
bin=target/debug
store="${FLOW_STORE:-./flowstore}"
export FLOW_STORE="$store"

if [ -d "$store/flows/v1/date=2026-11-24" ]; then
  echo "== the sample capture is already in $store (remove that folder to import it again)"
else
  echo "== flowrec import sample-captures/typo-policy-incident.jsonl.gz"
  "$bin/flowrec" import --node-name demo-node sample-captures/typo-policy-incident.jsonl.gz
fi

echo
echo "== which flows were dropped, between which pods, by which policy?"
"$bin/flowsql" "
  select source_namespace || '/' || source_workload as source,
         destination_namespace || '/' || destination_workload || ':' || destination_port as destination,
         drop_reason_desc, egress_denied_by[1]['name'] as policy,
         count(*) as flows, min(time) as first_seen, max(time) as last_seen
  from flows
  where verdict = 'DROPPED'
  group by 1, 2, 3, 4
  order by flows desc"

echo
echo "== the pods involved, in the first minutes of the incident"
"$bin/flowsql" --since 2026-11-24T09:05Z --until 2026-11-24T09:07Z "
  select time, source_pod_name, destination_pod_name, destination_port, tcp_flags, drop_reason_desc
  from flows where verdict='DROPPED' and event_type = 1 order by time limit 5"

echo
echo "== the same minutes as hubble observe would have printed them (flowsql replay)"
"$bin/flowsql" --since 2026-11-24T09:05Z --until 2026-11-24T09:07Z replay \
  -n prod-app -t policy-verdict --verdict DROPPED --print-policy-names --first 3

echo
echo "== what did the policy change break? (flowsql regressions: allowed in the hour before, denied since)"
"$bin/flowsql" regressions --baseline 1h --window 2026-11-24T09:00Z..2026-11-24T09:47Z
