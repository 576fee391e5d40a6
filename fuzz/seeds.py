#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the bundled captures and
hand-made inputs. Run again after a capture changes; the seeds are committed.

Sources: ../sample-captures/hubble-samples (real Hubble exports, Apache-2.0, provenance in
that folder's README) and ../sample-captures/typo-policy-incident.jsonl.gz (generated)."""
import gzip, hashlib, json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(here, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)

# hubble_lines: every distinct kind of line of the captures (a few of each file).
samples = os.path.join(root, "sample-captures", "hubble-samples")
for name in sorted(os.listdir(samples)):
    if not name.endswith((".json", ".jsonl")):
        continue
    with open(os.path.join(samples, name), "rb") as f:
        lines = [l.rstrip(b"\n") for l in f if l.strip()]
    for line in lines[:8]:
        put("hubble_lines", line)
with gzip.open(os.path.join(root, "sample-captures", "typo-policy-incident.jsonl.gz"), "rb") as f:
    for i, line in enumerate(f):
        if i % 997 == 0:
            put("hubble_lines", line.rstrip(b"\n"))
        if i > 20000:
            break
put("hubble_lines", '{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":3,"cpu":1},"node_name":"n","time":"2026-11-26T10:00:00Z"}')
put("hubble_lines", '{"agent_event":{"type":"AGENT_STARTED"},"node_name":"n","time":"2026-11-26T10:00:00Z"}')

# flow_filter_json: what `--allowlist` takes.
for f in [
    {"verdict": ["DROPPED"]},
    {"source_pod": ["shop/api-gateway"], "destination_port": ["80"]},
    {"source_label": ["k8s:app=api-gateway"], "protocol": ["TCP"], "tcp_flags": [{"SYN": True}]},
    {"destination_ip": ["10.0.0.0/8"], "event_type": [{"type": 1, "sub_type": 133}]},
    {"http_status_code": ["5+"], "http_method": ["GET"], "http_path": ["/api/.*"]},
    {"dns_query": [".*\\.svc\\.cluster\\.local\\."], "node_name": ["kind-*"], "reply": [False]},
]:
    put("flow_filter_json", json.dumps(f))

# durations_and_sizes
for t in ["2h", "1h30m", "500ms", "7d", "1w", "90s", "256MiB", "1G", "64KiB", "4096"]:
    put("durations_and_sizes", t)

# store_objects: names, keys, control objects, footer key-values.
for t in [
    "flows/v1/date=2026-11-26/hour=10/kind-worker.hubble.20261126T100000000000000Z.3f2a.000000000001-0.parquet",
    "compacted.00000002.tl4rbh.0of1.parquet",
    "_commit.00000002.json",
    "flows_hourly/v1/date=2026-11-26/",
    '{"generation":"00000002.tl4rbh","replaces":["a.parquet"],"files":["compacted.00000002.tl4rbh.0of1.parquet"]}',
    '{"flows":{"keep_until":"2026-10-27T00:00:00Z"}}',
    "flowsql.schema_version=1\nflowsql.node=n1\nflowsql.source=hubble\nflowsql.min_time=2026-11-26T10:00:00Z\nflowsql.max_time=2026-11-26T10:59:59Z\nflowsql.rows=12",
]:
    put("store_objects", t)

# observer_protobuf: GetFlowsResponse messages, hand-encoded (proto field numbers from
# schemas/proto/observer/observer.proto and flow/flow.proto).
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload

def msg(number, body):
    return field(number, 2, body)

def text(number, s):
    return field(number, 2, s.encode())

timestamp = field(1, 0, 1795000000) + field(2, 0, 123456789)
flow = (msg(1, timestamp) + text(34, "uuid-1") + field(2, 0, 2) + field(3, 0, 133)
        + msg(5, text(1, "10.0.1.1") + text(2, "10.0.2.1") + field(3, 0, 1))
        + msg(8, text(3, "shop") + text(4, "k8s:app=api-gateway") + text(5, "api-gateway-7d9f"))
        + msg(9, text(3, "shop") + text(4, "k8s:app=user-servce") + text(5, "user-service-5c4b"))
        + field(10, 0, 1) + text(11, "kind-worker") + field(22, 0, 2))
put("observer_protobuf", msg(1, flow) + text(1000, "kind-worker") + msg(1001, timestamp))
put("observer_protobuf", msg(3, field(1, 0, 1) + field(2, 0, 7) + msg(3, field(1, 0, 1))) + msg(1001, timestamp))
put("observer_protobuf", msg(1, msg(1, timestamp) + field(2, 0, 1)))
# Every nested kind the decoder reads: TCP flags, HTTP headers, DNS lists, policies with
# labels, a BoolValue, event_type, interface, aggregate, tunnel.
tcp = msg(6, msg(1, field(1, 0, 40000) + field(2, 0, 80) + msg(3, field(2, 0, 1) + field(5, 0, 1))))
http = msg(15, field(1, 0, 2) + field(2, 0, 1500)
           + msg(101, field(1, 0, 200) + text(2, "GET") + text(3, "http://u:p@svc/a?token=x")
                 + text(4, "HTTP/1.1") + msg(5, text(1, "authorization") + text(2, "Bearer x"))
                 + msg(5, text(1, "accept"))))
dns = msg(15, field(1, 0, 1) + msg(100, text(1, "svc.cluster.local.") + text(2, "10.0.0.1")
          + text(2, "10.0.0.2") + field(3, 0, 30) + text(7, "A") + text(8, "A")))
policy = msg(21001, text(1, "allow-gw") + text(2, "shop") + text(3, "k8s:io.cilium.k8s.policy.name=allow-gw")
             + text(3, "k8s:io.cilium.k8s.policy.namespace=shop") + field(4, 0, 7) + text(5, "CiliumNetworkPolicy"))
extra = (msg(26, b"") + msg(19, field(1, 0, 4)) + msg(28, field(1, 0, 3) + text(2, "eth0"))
         + msg(21007, field(1, 0, 2)) + msg(39, field(1, 0, 1) + msg(2, text(1, "192.168.0.1")) + field(4, 0, 2))
         + text(13, "a.example.com") + text(13, "b.example.com") + text(100000, "TCP Flags: SYN"))
put("observer_protobuf", msg(1, msg(1, timestamp) + text(34, "u2") + tcp + policy + extra) + text(1000, "n1"))
put("observer_protobuf", msg(1, msg(1, timestamp) + text(34, "u3") + http) + msg(1001, timestamp))
put("observer_protobuf", msg(1, msg(1, timestamp) + text(34, "u4") + dns) + msg(1001, timestamp))
put("observer_protobuf", msg(2, field(1, 0, 1) + text(2, "n1")) + msg(1001, timestamp))

print("seeds written to", os.path.join(here, "seeds"), file=sys.stderr)

# spool_segment: real segments, committed: `flowrec run --source file --follow` over three lines
# of basic-sample-400-tcp-flows.json, SIGKILLed after 3 s; three-flows-with-checkpoint.seg by a
# recorder of before 2026-12 (every IPC buffer an LZ4 frame), three-flows-one-block.seg by one of
# after (an entry's IPC stream one LZ4 block). spool_record: their records, cut out of frames.
folder = os.path.join(here, "seeds", "spool_segment")
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    at = 8
    while at + 8 <= len(data):
        length, _crc = struct.unpack_from("<II", data, at)
        put("spool_record", data[at + 8 : at + 8 + length])
        at += 8 + length

# selectors_and_cidrs: first line a selector or CIDR, then labels or addresses.
for t in [
    "k8s:app=frontend,tier in (web, api)\nk8s:app=frontend\nk8s:tier=web\nreserved:world",
    "app,!db\nk8s:app=x",
    "tier notin (web)\nk8s:tier=db",
    "10.0.0.0/8\n10.244.1.5\n192.168.0.1\nfd00::1",
    "fd00::/8\nfd12::1",
    "1.2.3.4\n1.2.3.4",
]:
    put("selectors_and_cidrs", t)

# time_windows: --since, then --until on a second line.
for t in ["2h", "2026-11-24T09:00Z\n2026-11-24T10:00:00Z", "7d\nnow", "2026-11-24", "1h30m\n30m"]:
    put("time_windows", t)

# observe_flags: one flag per line, its first character picking the flag (its code modulo
# len(FLAGS) + 1 indexes hubble_api::observe_flags::FLAGS; the extra value is --not), the rest
# its value. FLAGS is read from the source so the seeds follow it.
import re
source = open(os.path.join(root, "schemas", "hubble-api", "src", "observe_flags.rs")).read()
names = re.findall(r'"([a-z0-9-]+)"', source[source.index("pub const FLAGS"):source.index("];", source.index("pub const FLAGS"))])
def flag(name, value):
    index = len(names) if name == "not" else names.index(name)
    return chr(index + (len(names) + 1) * 2) + value
for lines in [
    [("pod", "shop/api-gateway"), ("namespace", "shop")],
    [("from-pod", "shop/"), ("verdict", "DROPPED")],
    [("not", ""), ("label", "k8s:app=user-service"), ("port", "80")],
    [("ip", "10.0.0.0/8"), ("type", "trace:to-endpoint"), ("protocol", "tcp")],
    [("http-status", "5+"), ("drop-reason-desc", "POLICY_DENIED")],
]:
    usable = [(n, v) for n, v in lines if n == "not" or n in names]
    put("observe_flags", "\n".join(flag(n, v) for n, v in usable))

# parquet_footers: a store file, committed (seeds/parquet_footers/basic-sample-10-flows.parquet:
# `flowrec import` of sample-captures/hubble-samples/basic-sample-10-flows.json).

# report_spec: the bundled compliance spec, the example of the spec's documentation, and a few
# mistakes a user makes.
put("report_spec", open(os.path.join(root, "query", "examples", "compliance.yaml")).read())
doc = open(os.path.join(root, "query", "spec", "src", "report.rs")).read()
example = doc[doc.index("```yaml") + len("```yaml"):doc.index("```", doc.index("```yaml") + 7)]
put("report_spec", "\n".join(l[4:] if l.startswith("//! ") else "" for l in example.splitlines()))
for t in [
    "title: t\nchecks:\n- name: a\n  sql: select 1\n  max: 3\n",
    "checks:\n- name: x\n  no_flow_between: {from: a, to: b}\n",
    "checks:\n- name: e\n  recording_complete:\n",
    "checks:\n- name: w\n  egress_to_world: {allow: ['10.0.0.0/8', '*.example.com']}\n",
    "checks: [{name: &a x, sql: *a}]\n",
]:
    put("report_spec", t)

# policy_documents: the incident's policy revisions, and the shapes users write.
for name in sorted(os.listdir(os.path.join(root, "sample-captures", "policies"))):
    put("policy_documents", open(os.path.join(root, "sample-captures", "policies", name)).read())
for t in [
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}\n    - namespaceSelector: {matchLabels: {project: p}}\n      podSelector: {matchExpressions: [{key: role, operator: In, values: [a]}]}\n    ports: [{protocol: TCP, port: 6379, endPort: 6380}]\n",
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: cilium.io/v2\n  kind: CiliumClusterwideNetworkPolicy\n  metadata: {name: c}\n  specs:\n  - endpointSelector: {}\n    ingressDeny: [{fromEntities: [world]}]\n    egress: [{toFQDNs: [{matchPattern: '**.example.com'}], toPorts: [{ports: [{port: '443'}]}]}]\n",
    "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}\n  ingress: [{}]\n  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}], toPorts: [{ports: [{port: http}], rules: {http: [{method: GET, path: '/a.*', headers: ['X: y']}]}}]}]\n",
]:
    put("policy_documents", t)

# field_masks: the hubble CLI's default mask (one path per line), and a few others.
put("field_masks", "\n".join(["time", "verdict", "ethernet", "IP", "l4", "source.identity",
    "source.namespace", "source.pod_name", "destination.identity", "destination.namespace",
    "destination.pod_name", "Type", "node_name", "l7", "event_type", "source_service",
    "destination_service", "is_reply", "Summary", "ip_trace_id"]))
for t in ["time\nverdict", "source", "l4.TCP.flags.SYN", "source_names", "", "nope", "uuid.x"]:
    put("field_masks", t)

# kernel_btf: BTF blobs shaped like a kernel's (native byte order): an int, structs, pointers,
# the drop reason enum, the kfree_skb tracepoint (2 arguments before 5.17, 4 from 6.11), the
# helper and attach type enums the recorder looks for. (A real vmlinux BTF is ~6 MB: too big.)
def btf(kfree_skb_args, reasons=True):
    words, strings = [], bytearray(b"\0")
    def name(s):
        if not s:
            return 0
        at = len(strings)
        strings.extend(s.encode() + b"\0")
        return at
    ids = [0]
    def add(n, kind, vlen, size_or_type, extra=()):
        words.extend([name(n), (kind << 24) | vlen, size_or_type, *extra])
        ids[0] += 1
        return ids[0]
    add("int", 1, 0, 4, [32])
    skb = add("", 2, 0, add("sk_buff", 4, 0, 0))
    void = add("", 2, 0, 0)
    sock = add("", 2, 0, add("sock", 4, 0, 0))
    variants = [("SKB_NOT_DROPPED_YET", 0), ("SKB_CONSUMED", 1), ("SKB_DROP_REASON_NOT_SPECIFIED", 2), ("SKB_DROP_REASON_NO_SOCKET", 3)]
    words_enum = []
    for v, value in variants:
        words_enum += [name(v), value]
    reason = add("skb_drop_reason" if reasons else "other", 6, len(variants), 4, words_enum)
    args = [void, skb, void, reason, sock][: kfree_skb_args + 1]
    params = []
    for a in args:
        params += [0, a]
    proto = add("", 13, len(args), 0, params)
    add("btf_trace_kfree_skb", 8, 0, add("", 2, 0, proto))
    helpers = []
    for v, value in [("BPF_FUNC_ktime_get_ns", 5), ("BPF_FUNC_ktime_get_coarse_ns", 160)]:
        helpers += [name(v), value]
    add("bpf_func_id", 6, 2, 4, helpers)
    e64 = [name("BPF_TCX_INGRESS"), 46, 0]
    add("bpf_attach_type", 19, 1, 8, e64)
    body = struct.pack("=%dI" % len(words), *words)
    header = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + body + bytes(strings)
for args, reasons in [(2, False), (3, True), (4, True)]:
    put("kernel_btf", btf(args, reasons))
