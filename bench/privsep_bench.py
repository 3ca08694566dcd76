#!/usr/bin/env python3
"""What privilege separation costs per generated token (a bench, not a test).

Starts two `airlock serve` processes on the same model in the same run: one with the model in
its worker process (the default) and one with `--in-process-models` (the layout before
privilege separation, kept for this comparison only). Then, alternating between them round by
round so that both see the same machine state, sends streamed completions (temperature 0, the
same prompt, so both generate the same tokens) and measures, per request, the decode time per
token as the client sees it: from the first streamed chunk to the last, divided by the chunks in
between (one chunk per decoded piece).
Prints, per mode, the median over rounds and the spread (min..max of the per-round medians),
and the worker's added time per token in microseconds and percent; then the CPU time (user +
system) the server processes (gateway, and worker when there is one) spent per generated token,
which other load on the machine disturbs less than wall time.

Usage: bench/privsep_bench.py [--airlock build/airlock] [--model M.gguf ...] [--rounds 7]
                              [--requests 5] [--max-tokens 200] [--threads 2]
Default models, both measured: ../shared/fixtures/gguf-models/stories260K.gguf (tiny: a fraction of
a millisecond per token, so the fixed cost per token weighs far more than on any real model) and
build/bench-models/privsep-1024x8.gguf, a 91M-parameter F16 llama with random weights and
stories260K's tokenizer that decodes at the speed of a small real model (written once by
`airlock-bench-gen gguf-llama`).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(airlock, model, threads, in_process):
    args = [airlock, "serve", model, "--port", "0", "--threads", str(threads), "--alias", "m"]
    if in_process:
        args.append("--in-process-models")
    # Each server in its own folder: its own default audit log (a log has one writer).
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=tempfile.mkdtemp(prefix="privsep-bench-"))
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.kill()
        sys.exit(f"serve did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def cpu_seconds(pid):
    """CPU time (user + system) of `pid` and its live children (the model worker)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def decode_seconds_per_token(port, max_tokens):
    """One streamed completion; (seconds per token between the first and last chunk, tokens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": "m", "prompt": "Once upon a time", "max_tokens": max_tokens,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    times = []
    tokens = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        # One chunk per text piece the model produced, as it is produced (its text may be empty:
        # the response policy holds text back for its detectors, but the chunk still flows).
        if any(c.get("finish_reason") is None for c in event.get("choices", [])):
            times.append(time.perf_counter())
    conn.close()
    if len(times) < 3 or not tokens:
        sys.exit("too few streamed chunks to time")
    return (times[-1] - times[0]) / (len(times) - 1), tokens


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--airlock", default=os.path.join(ROOT, "build", "airlock"))
    p.add_argument("--model", action="append")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--requests", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    models = a.model
    if not models:
        stories = os.path.join(ROOT, "..", "shared", "fixtures", "gguf-models", "stories260K.gguf")
        big = os.path.join(os.path.dirname(a.airlock), "bench-models", "privsep-1024x8.gguf")
        if not os.path.exists(big) and os.path.exists(stories):
            os.makedirs(os.path.dirname(big), exist_ok=True)
            subprocess.run([os.path.join(os.path.dirname(a.airlock), "airlock-bench-gen"),
                            "gguf-llama", big, stories, "1024", "8", "2816"], check=True)
        models = [stories, big]
    for model in models:
        if not os.path.exists(model):
            sys.exit(f"model not found: {model}")
        measure(a, model)


def measure(a, model):
    servers = {}
    try:
        for mode in ("in-process", "worker"):
            servers[mode] = start(a.airlock, model, a.threads, mode == "in-process")
    except SystemExit:
        for proc, _ in servers.values():  # never leave a server behind
            proc.kill()
        raise
    per_round = {mode: [] for mode in servers}
    cpu = {mode: 0.0 for mode in servers}
    tokens = {mode: 0 for mode in servers}
    try:
        for mode, (_, port) in servers.items():  # warm-up
            decode_seconds_per_token(port, a.max_tokens)
        for r in range(a.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(list(servers)))
            for mode in order:
                proc, port = servers[mode]
                before = cpu_seconds(proc.pid)
                samples = []
                for _ in range(a.requests):
                    per_token, n = decode_seconds_per_token(port, a.max_tokens)
                    samples.append(per_token)
                    tokens[mode] += n
                cpu[mode] += cpu_seconds(proc.pid) - before
                per_round[mode].append(statistics.median(samples))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    print(f"model {os.path.basename(model)}, threads {a.threads}, {a.rounds} rounds x "
          f"{a.requests} streamed completions of up to {a.max_tokens} tokens per mode")
    med = {}
    for mode, values in per_round.items():
        med[mode] = statistics.median(values)
        print(f"  {mode:10s} decode {med[mode] * 1e6:9.1f} us/token "
              f"({1 / med[mode]:8.1f} tok/s), per-round medians {min(values) * 1e6:.1f}.."
              f"{max(values) * 1e6:.1f} us")
    added = med["worker"] - med["in-process"]
    print(f"  worker adds {added * 1e6:+.1f} us/token = {100 * added / med['in-process']:+.2f}% "
          f"of in-process decode time (wall clock, as the client sees it)")
    # CPU time of the server processes per generated token (whole requests: prompt included),
    # less sensitive than wall time to other load on the machine.
    cpu_per = {m: cpu[m] / max(1, tokens[m]) for m in cpu}
    for mode in servers:
        print(f"  {mode:10s} CPU {cpu_per[mode] * 1e6:9.1f} us/token over {tokens[mode]} tokens")
    extra = cpu_per["worker"] - cpu_per["in-process"]
    print(f"  worker adds {extra * 1e6:+.1f} CPU us/token = "
          f"{100 * extra / cpu_per['in-process']:+.2f}% of in-process CPU time")


if __name__ == "__main__":
    main()
