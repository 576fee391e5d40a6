#!/usr/bin/env python3
"""A stand-in Kubernetes API server for the `flowrec run --kube` tests: the pods list and watch
of the real protocol (what `kubectl get --raw '/api/v1/pods?limit=2'` and
`kubectl get --raw '/api/v1/pods?watch=1&resourceVersion=N'` return), played from a scenario.

    kube-api-server.py SCENARIO.json PORT_FILE

SCENARIO: {"pace": SECONDS (between watch events; default 0.05),
           "lists": [{"resourceVersion": "100", "items": [Pod, ...]}, ...],
           "watches": {"100": {"events": [{"type": "ADDED", "object": Pod}, ...],
                               "then": "close" | "gone" | "hold"}, ...}}
- GET /api/v1/pods: the current list (the first, then the next one after each 410 served),
  paginated by `limit` with `continue` tokens, as the API server does.
- GET /api/v1/pods?watch=...&resourceVersion=RV: the events of watches[RV], one JSON object per
  line of a chunked response, then: "close" ends the response (a dropped connection: the
  client resumes from the last resourceVersion it saw, a BOOKMARK's included), "gone" sends
  the ERROR event of an expired resourceVersion (code 410: the client must list again),
  "hold" keeps the stream open. An unknown resourceVersion is "gone" at once.
Each request is logged on stderr as `REQUEST <path>`; the chosen port is written to PORT_FILE.
"""
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

scenario = json.load(open(sys.argv[1]))
state = {"list": 0}
lock = threading.Lock()

GONE = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version",
        "reason": "Expired",
        "code": 410,
    },
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        sys.stderr.write("REQUEST %s\n" % self.path)
        sys.stderr.flush()
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path != "/api/v1/pods":
            return self.send_json(404, {"kind": "Status", "code": 404, "message": "not found"})
        if query.get("watch") in ("true", "1"):
            return self.watch(query.get("resourceVersion", ""))
        with lock:
            current = scenario["lists"][min(state["list"], len(scenario["lists"]) - 1)]
        items = current["items"]
        limit = int(query.get("limit", "0") or 0) or len(items) or 1
        start = int(query.get("continue", "0") or 0)
        page = items[start:start + limit]
        rest = start + limit < len(items)
        self.send_json(200, {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": current["resourceVersion"],
                **({"continue": str(start + limit)} if rest else {}),
            },
            "items": page,
        })

    def watch(self, version):
        script = scenario["watches"].get(version, {"events": [], "then": "gone"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in script["events"]:
                time.sleep(scenario.get("pace", 0.05))
                self.chunk(event)
            if script["then"] == "gone":
                with lock:
                    state["list"] += 1
                self.chunk(GONE)
            elif script["then"] == "hold":
                while True:
                    time.sleep(0.5)
                    self.wfile.write(b"")
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
