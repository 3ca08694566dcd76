#!/usr/bin/env bash
# Hashing throughput of `airlock sign` (the OpenSSF model-signing manifest: SHA-256 of every file)
# against `sha256sum` of the same files, measured in the same run on warm page cache.
#   bash bench/hash_bench.sh [BUILD_DIR]     env: HASH_BENCH_MB (total, default 1024),
#                                                 HASH_BENCH_FILES (default 4), HASH_BENCH_RUNS (2)
# Prints wall-clock MB/s, MB per CPU-second (user+sys, meaningful on a busy machine) and the
# ratios airlock/sha256sum (> 1 means airlock is faster).
set -euo pipefail
build=${1:-build}
airlock=$(cd "$build" && pwd)/airlock
total_mb=${HASH_BENCH_MB:-1024}
nfiles=${HASH_BENCH_FILES:-4}
runs=${HASH_BENCH_RUNS:-2}
threads=$(nproc)
[ -x "$airlock" ] || { echo "hash_bench: $airlock not built" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/airlock-hash-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
model="$work/model"
mkdir -p "$model"
per_file=$((total_mb / nfiles))
for i in $(seq 1 "$nfiles"); do
  # Any content hashes at the same speed; a repeated pattern is quick to generate.
  (yes "airlock hash bench $i 0123456789abcdefghijklmnopqrstuvwxyz" || true) |
    head -c "$((per_file << 20))" > "$model/shard-$i.bin"
done
bytes=$(du -cb "$model"/*.bin | tail -1 | cut -f1)
cat "$model"/*.bin > /dev/null  # warm the page cache
"$airlock" keygen --out "$work/key" > /dev/null

# Wall and CPU (user+sys) seconds of the fastest of $runs runs of "$@".
best() {
  local bw="" bc=""
  for _ in $(seq 1 "$runs"); do
    local out w c
    out=$( { TIMEFORMAT='%R %U %S'; time "$@" > /dev/null 2>&1; } 2>&1 | tail -1)
    w=$(echo "$out" | awk '{ print $1 }')
    c=$(echo "$out" | awk '{ printf "%.3f", $2 + $3 }')
    if [ -z "$bw" ] || awk -v d="$w" -v b="$bw" 'BEGIN { exit !(d < b) }'; then
      bw=$w
      bc=$c
    fi
  done
  echo "$bw $bc"
}
mbps() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.1f", n / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

read -r w_sum c_sum < <(best sha256sum "$model"/*.bin)
read -r w_sum_par c_sum_par < <(best bash -c "ls '$model'/*.bin | xargs -P $threads -n 1 sha256sum")
read -r w_one c_one < <(best "$airlock" sign "$model" --key "$work/key.key" \
  --signature "$work/one.sig" --threads 1)
read -r w_par c_par < <(best "$airlock" sign "$model" --key "$work/key.key" \
  --signature "$work/par.sig" --threads "$threads")

echo "hash_bench: $((bytes >> 20)) MiB in $nfiles files, $threads hardware threads," \
  "best of $runs (load average $(cut -d' ' -f1 /proc/loadavg))"
printf '  %-32s %9s %14s\n' "" "wall MB/s" "MB per CPU-s"
row() { printf '  %-32s %9s %14s  %s\n' "$1" "$(mbps "$2")" "$(mbps "$3")" "${4:-}"; }
row "sha256sum (1 thread)" "$w_sum" "$c_sum"
row "sha256sum x$threads (xargs -P)" "$w_sum_par" "$c_sum_par"
row "airlock sign --threads 1" "$w_one" "$c_one" \
  "ratio vs sha256sum: wall $(ratio "$w_sum" "$w_one"), CPU $(ratio "$c_sum" "$c_one")"
row "airlock sign --threads $threads" "$w_par" "$c_par" \
  "ratio vs sha256sum: wall $(ratio "$w_sum" "$w_par"), vs xargs -P $(ratio "$w_sum_par" "$w_par")"
