#!/usr/bin/env python3
"""A/B timing of two `airlock` binaries scanning the same files, interleaved (A B, B A, ...) so
that a noisy shared machine penalizes both alike. Prints, per file and binary, the median and
minimum wall time and the mean CPU time (user + sys) over N runs each.

Usage: bench/scan_ab.py A_AIRLOCK B_AIRLOCK FILE... [--runs N]   (default 150)
Example (files from bench/scan_throughput.sh):
  bench/scan_ab.py /tmp/airlock-main build/airlock build/bench-data/bench-512.*
"""
import resource
import statistics
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    runs = 150
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i:i + 2]
    if len(args) < 3:
        print(__doc__)
        return 2
    bins = {"A": args[0], "B": args[1]}
    for f in args[2:]:
        wall = {k: [] for k in bins}
        cpu = {k: [] for k in bins}
        for i in range(runs):
            order = list(bins.items()) if i % 2 == 0 else list(reversed(bins.items()))
            for k, b in order:
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([b, "scan", "--no-color", f], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
                t1 = time.perf_counter()
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall[k].append(t1 - t0)
                cpu[k].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        for k in bins:
            print(f"{f:40s} {k} median wall {statistics.median(wall[k]) * 1e3:7.2f} ms  "
                  f"min {min(wall[k]) * 1e3:7.2f} ms  mean cpu {statistics.mean(cpu[k]) * 1e3:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
