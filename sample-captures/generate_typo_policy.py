#!/usr/bin/env python3
"""Generates typo-policy-incident.jsonl.gz: the incident flowrec exists for, as Hubble would
have exported it (Cilium 1.19 jsonpb envelope: uuid, emitter, workloads, node_labels, policy
correlation fields).

Story (2026-11-24, UTC), namespace prod-app: frontend -> api-gateway:8080 -> user-service:80,
everyone resolving names through kube-system/coredns.
  08:00  normal traffic.
  09:05  CiliumNetworkPolicy api-access-policy (revision 12) is applied with a typo in its
         egress selector (app: user-servce): api-gateway -> user-service:80 is DROPPED with
         POLICY_DENIED, egress_denied_by naming the policy; the app only logs timeouts.
  09:47  fix (revision 13): forwarded again, egress_allowed_by api-access-policy.
  10:10  an L7 rule (revision 14) allows GET /get and denies POST /post; from then on Hubble
         sees HTTP between api-gateway and user-service (L7 visibility comes with the rule).
  11:00  end of capture.

Deterministic (fixed seed), so tests can rely on its counts only through independent
re-counting of the JSON, never through constants copied from this script.
Run: python3 sample-captures/generate_typo_policy.py  (rewrites the .jsonl.gz beside it)
"""
import gzip
import json
import os
import random
import uuid
import zlib
from datetime import datetime, timedelta, timezone

random.seed(20261124)
CLUSTER = "prod-cluster"
NS = "prod-app"
START = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
TYPO_AT = datetime(2026, 11, 24, 9, 5, tzinfo=timezone.utc)
FIX_AT = datetime(2026, 11, 24, 9, 47, tzinfo=timezone.utc)
L7_AT = datetime(2026, 11, 24, 10, 10, tzinfo=timezone.utc)
END = datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)
EMITTER = {"name": "Hubble", "version": "1.19.1+g4b2f1e9"}

NODES = {
    "worker-1": ["kubernetes.io/hostname=worker-1", "kubernetes.io/os=linux", "node.kubernetes.io/instance-type=m6i.xlarge", "topology.kubernetes.io/zone=eu-west-1a"],
    "worker-2": ["kubernetes.io/hostname=worker-2", "kubernetes.io/os=linux", "node.kubernetes.io/instance-type=m6i.xlarge", "topology.kubernetes.io/zone=eu-west-1b"],
}


def pod(app, name, ip, node, identity, ep_id, ns=NS, kind="Deployment", extra=()):
    labels = [f"k8s:app={app}", f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}",
              "k8s:io.cilium.k8s.policy.cluster=" + CLUSTER, f"k8s:io.cilium.k8s.policy.serviceaccount={app}",
              f"k8s:io.kubernetes.pod.namespace={ns}", *extra]
    return {"app": app, "name": name, "ip": ip, "node": node, "ns": ns,
            "endpoint": {"ID": ep_id, "identity": identity, "cluster_name": CLUSTER, "namespace": ns,
                         "labels": sorted(labels), "pod_name": name,
                         "workloads": [{"name": app, "kind": kind}]}}


FRONTEND = [pod("frontend", "frontend-6f8d9c7b5-k2x9p", "10.0.1.21", "worker-1", 48211, 1021, extra=("k8s:tier=web",)),
            pod("frontend", "frontend-6f8d9c7b5-q7m4t", "10.0.2.34", "worker-2", 48211, 2034, extra=("k8s:tier=web",))]
GATEWAY = [pod("api-gateway", "api-gateway-7d9f8b6c4-abcde", "10.0.1.45", "worker-1", 51873, 1045),
           pod("api-gateway", "api-gateway-7d9f8b6c4-fghij", "10.0.2.46", "worker-2", 51873, 2046)]
USERS = [pod("user-service", "user-service-5c7b9d8f6-lmnop", "10.0.2.77", "worker-2", 60412, 2077),
         pod("user-service", "user-service-5c7b9d8f6-qrstu", "10.0.1.78", "worker-1", 60412, 1078)]
COREDNS = [pod("kube-dns", "coredns-5d78c9869d-x4k2z", "10.0.1.10", "worker-1", 102, 1010, ns="kube-system")]
COREDNS[0]["endpoint"]["workloads"] = [{"name": "coredns", "kind": "Deployment"}]


def policy(revision):
    return [{"name": "api-access-policy", "namespace": NS, "kind": "CiliumNetworkPolicy", "revision": str(revision),
             "labels": ["k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
                        "k8s:io.cilium.k8s.policy.name=api-access-policy",
                        f"k8s:io.cilium.k8s.policy.namespace={NS}",
                        "k8s:io.cilium.k8s.policy.uid=3f0c1a52-8d4e-4b7a-9c61-2e5d7f9a0b13"]}]


def stable(text):
    """A hash that does not change between runs (Python's hash() does)."""
    return zlib.crc32(text.encode())


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond * 1000 + random.randint(0, 999):09d}Z"


lines = []


def emit(t, node, flow):
    node_name = f"{CLUSTER}/{node}"
    flow = {"time": ts(t), "uuid": str(uuid.UUID(int=random.getrandbits(128), version=4)), "emitter": EMITTER, **flow,
            "node_name": node_name, "node_labels": NODES[node]}
    lines.append((flow["time"], json.dumps({"flow": flow, "node_name": node_name, "time": flow["time"]},
                                           separators=(",", ":"))))


def tcp_flags(*names):
    return {n: True for n in names}


def l4_tcp(sport, dport, flags):
    return {"TCP": {"source_port": sport, "destination_port": dport, "flags": tcp_flags(*flags)}}


def summary_flags(flags):
    return "TCP Flags: " + ", ".join(flags)


def base(src, dst, sport, dport, flags, reply):
    a, b = (dst, src) if reply else (src, dst)
    return {"ethernet": {"source": "02:42:ac:11:00:%02x" % (stable(a["ip"]) % 256), "destination": "02:42:ac:11:00:%02x" % (stable(b["ip"]) % 256)},
            "IP": {"source": a["ip"], "destination": b["ip"], "ipVersion": "IPv4"},
            "l4": l4_tcp(sport if not reply else dport, dport if not reply else sport, flags),
            "source": a["endpoint"], "destination": b["endpoint"], "Type": "L3_L4", "is_reply": reply}


def connection(t, src, dst, dport, allowed_by=None, svc=None):
    """A short TCP connection as Hubble sees it on the source and destination nodes."""
    sport = random.randint(32768, 60999)
    out = base(src, dst, sport, dport, ["SYN"], False)
    verdict = {"verdict": "FORWARDED", "event_type": {"type": 5}, "traffic_direction": "EGRESS",
               "policy_match_type": 2, "Summary": summary_flags(["SYN"])}
    if allowed_by:
        verdict["egress_allowed_by"] = allowed_by
    if svc:
        out["destination_service"] = svc
    emit(t, src["node"], {**out, **verdict})
    steps = [(["SYN"], False, "TO_ENDPOINT", dst["node"], "INGRESS"), (["SYN", "ACK"], True, "TO_ENDPOINT", src["node"], "EGRESS"),
             (["ACK", "PSH"], False, "TO_ENDPOINT", dst["node"], "INGRESS"), (["ACK", "PSH"], True, "TO_ENDPOINT", src["node"], "EGRESS"),
             (["ACK", "FIN"], False, "TO_ENDPOINT", dst["node"], "INGRESS")]
    for i, (flags, reply, point, node, direction) in enumerate(steps):
        t += timedelta(microseconds=random.randint(80, 900))
        flow = base(src, dst, sport, dport, flags, reply)
        flow.update({"verdict": "FORWARDED", "event_type": {"type": 4}, "traffic_direction": direction,
                     "trace_observation_point": point, "trace_reason": "REPLY" if reply else ("NEW" if i == 0 else "ESTABLISHED"),
                     "interface": {"index": 30 + (stable(node) % 9), "name": "lxc" + ("%012x" % (stable(node + str(reply)) & 0xFFFFFFFFFFFF))[:12]},
                     "Summary": summary_flags(flags)})
        if svc and not reply:
            flow["destination_service"] = svc
        emit(t, node, flow)


def denied(t, src, dst, dport, revision, svc):
    """A SYN dropped by the typo'd policy, and the client's retransmissions."""
    sport = random.randint(32768, 60999)
    for retry in (0, 1, 3):
        when = t + timedelta(seconds=retry, microseconds=random.randint(0, 2000))
        flow = base(src, dst, sport, dport, ["SYN"], False)
        flow["destination_service"] = svc
        denied_by = policy(revision)
        emit(when, src["node"], {**flow, "verdict": "DROPPED", "drop_reason": 133, "drop_reason_desc": "POLICY_DENIED",
                                 "event_type": {"type": 5}, "traffic_direction": "EGRESS", "policy_match_type": 0,
                                 "egress_denied_by": denied_by, "Summary": summary_flags(["SYN"])})
        emit(when + timedelta(microseconds=15), src["node"], {**flow, "verdict": "DROPPED", "drop_reason": 133,
                                                              "drop_reason_desc": "POLICY_DENIED", "event_type": {"type": 1, "sub_type": 133},
                                                              "traffic_direction": "EGRESS", "egress_denied_by": denied_by,
                                                              "file": {"name": "bpf_lxc.c", "line": 1364},
                                                              "Summary": summary_flags(["SYN"])})


def dns(t, src, name):
    dnssrv = COREDNS[0]
    sport = random.randint(32768, 60999)
    query = {"query": name, "qtypes": ["A"], "observation_source": "proxy"}
    req = {"ethernet": {"source": "02:42:ac:11:00:01", "destination": "02:42:ac:11:00:02"},
           "IP": {"source": src["ip"], "destination": dnssrv["ip"], "ipVersion": "IPv4"},
           "l4": {"UDP": {"source_port": sport, "destination_port": 53}},
           "source": src["endpoint"], "destination": dnssrv["endpoint"], "Type": "L7",
           "destination_service": {"name": "kube-dns", "namespace": "kube-system"},
           "l7": {"type": "REQUEST", "dns": query}, "event_type": {"type": 129}, "traffic_direction": "EGRESS",
           "is_reply": False, "verdict": "FORWARDED", "Summary": f"DNS Query {name} A"}
    emit(t, src["node"], req)
    answer_ip = {"user-service": USERS[0]["ip"], "api-gateway": GATEWAY[0]["ip"]}[name.split(".")[0]]
    resp = dict(req)
    resp.update({"IP": {"source": dnssrv["ip"], "destination": src["ip"], "ipVersion": "IPv4"},
                 "l4": {"UDP": {"source_port": 53, "destination_port": sport}},
                 "source": dnssrv["endpoint"], "destination": src["endpoint"], "is_reply": True,
                 "source_service": {"name": "kube-dns", "namespace": "kube-system"},
                 "l7": {"type": "RESPONSE", "latency_ns": str(random.randint(150_000, 900_000)),
                        "dns": {**query, "ips": [answer_ip], "ttl": 30, "rrtypes": ["A"]}},
                 "Summary": f"DNS Answer \"{answer_ip}\" TTL: 30 (Proxy {name} A)"})
    resp.pop("destination_service")
    emit(t + timedelta(microseconds=random.randint(200, 900)), src["node"], resp)


def http(t, src, dst, method, path, allowed):
    sport = random.randint(32768, 60999)
    url = f"http://user-service.{NS}.svc.cluster.local{path}"
    req = base(src, dst, sport, 80, ["PSH", "ACK"], False)
    req.pop("l4")
    req["l4"] = {"TCP": {"source_port": sport, "destination_port": 80}}
    req.update({"Type": "L7", "event_type": {"type": 129}, "traffic_direction": "EGRESS",
                "destination_service": {"name": "user-service", "namespace": NS},
                "l7": {"type": "REQUEST", "http": {"method": method, "url": url, "protocol": "HTTP/1.1",
                                                   "headers": [{"key": "User-Agent", "value": "api-gateway/2.3"},
                                                               {"key": "X-Request-Id", "value": str(uuid.UUID(int=random.getrandbits(128), version=4))}]}},
                "verdict": "FORWARDED" if allowed else "DROPPED",
                "Summary": f"HTTP/1.1 {method} {url}"})
    req["egress_allowed_by" if allowed else "egress_denied_by"] = policy(14)
    emit(t, src["node"], req)
    latency = random.randint(900_000, 25_000_000) if allowed else random.randint(50_000, 200_000)
    code = 200 if allowed else 403
    resp = base(src, dst, sport, 80, ["PSH", "ACK"], True)
    resp.pop("l4")
    resp["l4"] = {"TCP": {"source_port": 80, "destination_port": sport}}
    resp.update({"Type": "L7", "event_type": {"type": 129}, "traffic_direction": "EGRESS", "verdict": "FORWARDED",
                 "source_service": {"name": "user-service", "namespace": NS},
                 "l7": {"type": "RESPONSE", "latency_ns": str(latency),
                        "http": {"code": code, "method": method, "url": url, "protocol": "HTTP/1.1"}},
                 "Summary": f"HTTP/1.1 {code} {latency // 1_000_000}ms ({method} {url})"})
    emit(t + timedelta(microseconds=latency // 1000), src["node"], resp)


USER_SVC = {"name": "user-service", "namespace": NS}
GW_SVC = {"name": "api-gateway", "namespace": NS}
t = START
while t < END:
    fe = random.choice(FRONTEND)
    gw = random.choice(GATEWAY)
    us = random.choice(USERS)
    if random.random() < 0.25:
        dns(t, fe, f"api-gateway.{NS}.svc.cluster.local.")
    connection(t, fe, gw, 8080, svc=GW_SVC)
    t2 = t + timedelta(milliseconds=random.randint(2, 40))
    if random.random() < 0.25:
        dns(t2, gw, f"user-service.{NS}.svc.cluster.local.")
    if t < TYPO_AT:
        connection(t2, gw, us, 80, svc=USER_SVC)
    elif t < FIX_AT:
        denied(t2, gw, us, 80, 12, USER_SVC)
    elif t < L7_AT:
        connection(t2, gw, us, 80, allowed_by=policy(13), svc=USER_SVC)
    else:
        connection(t2, gw, us, 80, allowed_by=policy(14), svc=USER_SVC)
        if random.random() < 0.8:
            http(t2 + timedelta(milliseconds=3), gw, us, "GET", "/get", True)
        else:
            http(t2 + timedelta(milliseconds=3), gw, us, "POST", "/post", False)
    t += timedelta(seconds=random.uniform(6, 14))

lines.sort()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typo-policy-incident.jsonl.gz")
with gzip.GzipFile(out, "wb", mtime=0) as f:
    for _, line in lines:
        f.write(line.encode() + b"\n")
print(f"wrote {len(lines)} lines to {out}")
