#!/usr/bin/env bash
# Hashing throughput of `airlock sign` (the OpenSSF model-signing manifest: SHA-256 of every file)
# against `sha256sum` of the same files, measured in the same run on warm page cache.
#   bash bench/hash_bench.sh [BUILD_DIR]     env: HASH_BENCH_MB (total, default 1024),
#                                                 HASH_BENCH_FILES (default 4), HASH_BENCH_RUNS (2)
# Prints MB/s for each and the ratio airlock/sha256sum (> 1 means airlock is faster).
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
  (yes "airlock hash bench $i 0123456789abcdefghijklmnopqrstuvwxyz" || true) | head -c "$((per_file << 20))" \
    > "$model/shard-$i.bin"
done
bytes=$(du -cb "$model"/*.bin | tail -1 | cut -f1)
cat "$model"/*.bin > /dev/null  # warm the page cache
"$airlock" keygen --out "$work/key" > /dev/null

now() { date +%s.%N; }
best() {  # best wall time of $runs runs of "$@"
  local b=""
  for _ in $(seq 1 "$runs"); do
    local t0 t1 d
    t0=$(now)
    "$@" > /dev/null
    t1=$(now)
    d=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    if [ -z "$b" ] || awk -v d="$d" -v b="$b" 'BEGIN { exit !(d < b) }'; then b=$d; fi
  done
  echo "$b"
}
mbps() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.1f", n / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

t_sum=$(best sha256sum "$model"/*.bin)
t_sum_par=$(best bash -c "ls '$model'/*.bin | xargs -P $threads -n 1 sha256sum")
t_one=$(best "$airlock" sign "$model" --key "$work/key.key" --signature "$work/one.sig" --threads 1)
t_par=$(best "$airlock" sign "$model" --key "$work/key.key" --signature "$work/par.sig" --threads "$threads")

echo "hash_bench: $((bytes >> 20)) MiB in $nfiles files, $threads hardware threads, best of $runs"
printf '  %-36s %8s MB/s\n' "sha256sum (1 thread)" "$(mbps "$t_sum")"
printf '  %-36s %8s MB/s\n' "sha256sum x$threads (xargs -P)" "$(mbps "$t_sum_par")"
printf '  %-36s %8s MB/s  ratio vs sha256sum %s\n' "airlock sign --threads 1" "$(mbps "$t_one")" \
  "$(ratio "$t_sum" "$t_one")"
printf '  %-36s %8s MB/s  ratio vs sha256sum %s, vs xargs -P %s\n' "airlock sign --threads $threads" \
  "$(mbps "$t_par")" "$(ratio "$t_sum" "$t_par")" \
  "$(ratio "$t_sum_par" "$t_par")"
