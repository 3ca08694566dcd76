#!/usr/bin/env python3
"""Load script (a bench, not a test): `airlock serve` while 1,000 idle connections and 100
slow-header connections are held open, against the same run without them.

Measures, from another client on its own keep-alive connection:
  - GET /health latency (p50, p99),
  - a proxied chat completion through the gateway minus the same request sent directly to the
    upstream (added latency, p50 and p99),
first without the attack, then with it. The attack connections come from 127.0.0.2 and up (50 per
address, under the default per-address cap of 64); header_timeout_s is raised so that they stay
open for the whole measurement (the worst case for the server). The upstream is a small Python
HTTP server answering a fixed completion (test double).

Usage: bench/serve_attack.py [--airlock build/airlock] [--requests 400] [--idle 1000] [--slow 100]
Raises its own open-file limit (inherited by the server) as far as the hard limit allows.
"""
import argparse
import http.client
import http.server
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPLY = json.dumps({
    "id": "x", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 42."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}).encode()
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "What is 6 x 7?"}]
                   }).encode()  # bytes: http.client sends headers and body in one segment


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # One write: headers and body in separate segments would meet delayed ACKs.
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(REPLY), REPLY))

    def log_message(self, *args):
        pass


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def timed(conn, method, path, body=None, headers=None):
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {resp.status}")
    return elapsed


def measure(gw_port, up_port, key, n):
    gw = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
    up = http.client.HTTPConnection("127.0.0.1", up_port, timeout=30)
    auth = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    plain = {"Content-Type": "application/json"}
    for _ in range(20):  # warm-up
        timed(gw, "GET", "/health")
        timed(gw, "POST", "/v1/chat/completions", BODY, auth)
        timed(up, "POST", "/v1/chat/completions", BODY, plain)
    health, via, direct = [], [], []
    for _ in range(n):
        health.append(timed(gw, "GET", "/health"))
        via.append(timed(gw, "POST", "/v1/chat/completions", BODY, auth))
        direct.append(timed(up, "POST", "/v1/chat/completions", BODY, plain))
    ms = 1000.0
    return {
        "health_p50_ms": percentile(health, 50) * ms,
        "health_p99_ms": percentile(health, 99) * ms,
        "added_p50_ms": (percentile(via, 50) - percentile(direct, 50)) * ms,
        "added_p99_ms": (percentile(via, 99) - percentile(direct, 99)) * ms,
    }


def attack(port, idle, slow, stop):
    socks = []
    for i in range(idle + slow):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + i // 50), 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    slow_socks = socks[idle:]
    for s in slow_socks:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    n = 0
    while not stop.wait(2.0):  # one more header line every 2 s, never the end of the headers
        n += 1
        for s in slow_socks:
            try:
                s.sendall(b"X-Drip-%d: 1\r\n" % n)
            except OSError:
                pass
    for s in socks:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--airlock", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                      "airlock"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=100)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up_port = upstream.server_address[1]

    tmp = tempfile.mkdtemp(prefix="serve-attack-")
    try:
        keys_db = os.path.join(tmp, "keys.db")
        key = subprocess.run([args.airlock, "keys", "create", "--db", keys_db], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        policy = os.path.join(tmp, "policy.toml")
        with open(policy, "w") as f:
            f.write(f"[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:{up_port}/v1'\n"
                    "jurisdiction='US'\nmodels=['m']\n"
                    "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
                    f"[audit]\npath='{tmp}/audit.db'\n"
                    f"[server]\nkeys_db='{keys_db}'\nheader_timeout_s=600\n")
        serve = subprocess.Popen([args.airlock, "serve", "--config", policy, "--port", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = serve.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        try:
            base = measure(port, up_port, key, args.requests)
            stop = threading.Event()
            t = threading.Thread(target=attack, args=(port, args.idle, args.slow, stop))
            t.start()
            time.sleep(3)  # all connections open and parked
            under = measure(port, up_port, key, args.requests)
            metrics = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            metrics.request("GET", "/metrics", headers={"Authorization": "Bearer " + key})
            open_line = [l for l in metrics.getresponse().read().decode().splitlines()
                         if l.startswith("airlock_open_connections ")]
            stop.set()
            t.join()
        finally:
            serve.terminate()
            serve.wait(timeout=60)
        print(f"attack: {args.idle} idle + {args.slow} slow-header connections; "
              f"{args.requests} requests per measurement; server saw {open_line}")
        print(f"{'':22}{'no attack':>12}{'under attack':>14}")
        for k in ("health_p50_ms", "health_p99_ms", "added_p50_ms", "added_p99_ms"):
            print(f"{k:22}{base[k]:12.3f}{under[k]:14.3f}")
    finally:
        upstream.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
