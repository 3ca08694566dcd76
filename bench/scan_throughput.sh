#!/usr/bin/env bash
# Scan throughput against plain read speed of the same file, measured in the same run.
# Generates a large pickle, a torch.save-style zip and a GGUF (SIZE_MIB each, default 512) under
# BUILD/bench-data, warms the page cache, then takes the best of 3 runs of `cat FILE >/dev/null`
# (the baseline: reading every byte) and of `airlock scan FILE`.
set -euo pipefail
build=${1:-build}
size=${SIZE_MIB:-512}
data="$build/bench-data"
mkdir -p "$data"
now() { date +%s.%N; }
best_of_3() {
  local best=999999
  for _ in 1 2 3; do
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1 || true
    t1=$(now)
    best=$(echo "$t1 $t0 $best" | awk '{d=$1-$2; print (d<$3)?d:$3}')
  done
  echo "$best"
}
printf "%-12s %8s %12s %12s %14s %8s\n" format MiB "read MB/s" "scan MB/s" "scan/read" verdict
for kind in pickle pytorch-zip gguf; do
  f="$data/bench-$size.$kind"
  [ -f "$f" ] || "$build/airlock-bench-gen" "$kind" "$f" "$size"
  cat "$f" >/dev/null
  bytes=$(stat -c %s "$f")
  t_read=$(best_of_3 cat "$f")
  t_scan=$(best_of_3 "$build/airlock" scan --no-color "$f")
  verdict=$("$build/airlock" scan --format json "$f" | grep -m1 '"verdict"' | tr -d ' ",' | cut -d: -f2)
  echo "$kind $((bytes / 1048576)) $bytes $t_read $t_scan $verdict" |
    awk '{r=$3/$4/1e6; s=$3/$5/1e6; printf "%-12s %8d %12.0f %12.0f %13.2fx %8s\n", $1, $2, r, s, s/r, $6}'
done
