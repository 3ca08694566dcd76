#!/usr/bin/env bash
# Runs every fuzz target in BUILD_DIR/fuzz for SECONDS each (default 5).
# Seeds: fuzz/corpus/<target>/ (committed) plus the fixture folders listed in fuzz/<target>.seeds
# (relative to ../shared/fixtures; skipped when absent). New inputs go to a scratch corpus, never
# into the read-only fixtures. A crash, leak or timeout fails the script and leaves the input in
# BUILD_DIR/fuzz-artifacts/.
set -euo pipefail
build_dir=${1:?usage: run-fuzzers.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-5}
shift 2 || shift $#
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${AIRLOCK_FIXTURES:-$root/../shared/fixtures}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$build_dir"/fuzz/*_fuzz; do [ -x "$f" ] && targets+=("$(basename "$f")"); done
fi
mkdir -p "$build_dir/fuzz-artifacts"
status=0
for t in "${targets[@]}"; do
  scratch="$build_dir/fuzz-corpus/$t"
  mkdir -p "$scratch"
  seeds=()
  [ -d "$root/fuzz/corpus/$t" ] && seeds+=("$root/fuzz/corpus/$t")
  if [ -f "$root/fuzz/$t.seeds" ]; then
    while read -r rel; do
      [ -z "$rel" ] && continue
      [ -d "$fixtures/$rel" ] && seeds+=("$fixtures/$rel")
    done < "$root/fuzz/$t.seeds"
  fi
  echo "fuzz: $t for ${seconds}s (${#seeds[@]} seed folders)"
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$build_dir/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=1048576 -print_final_stats=0 -artifact_prefix="$build_dir/fuzz-artifacts/$t-" \
      "$scratch" "${seeds[@]}" > "$build_dir/fuzz-artifacts/$t.log" 2>&1; then
    echo "fuzz: $t FAILED; see $build_dir/fuzz-artifacts/$t.log"
    tail -40 "$build_dir/fuzz-artifacts/$t.log"
    status=1
  fi
done
exit $status
