#!/usr/bin/env bash
# Runs the end-to-end benchmarks. Each prints a ratio against a baseline measured in the same run.
set -euo pipefail
build=${1:-build}
for b in "$build"/bench/*_bench; do
  [ -x "$b" ] && "$b"
done
for s in "$(dirname "$0")"/*.sh; do
  [ "$(basename "$s")" = run.sh ] && continue
  bash "$s" "$build"
done
