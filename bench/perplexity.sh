#!/usr/bin/env bash
# Perplexity throughput (tokens/s) next to prompt-processing speed on the same model, measured in
# the same run (bench/perplexity_bench.cc). Models: the engine-reference fixture llama-Q8_0 and,
# when engine_bench has generated them, the random-weight Qwen2.5-0.5B-shaped Q8_0 / Q4_K_M files.
#   usage: bench/perplexity.sh [BUILD_DIR] [THREADS] [EXTRA_MODEL.gguf...]
set -euo pipefail
build=${1:-build}
threads=${2:-2}
bin="$build/bench/perplexity_bench"
[ -x "$bin" ] || { echo "perplexity.sh: build $bin first (ninja -C $build perplexity_bench)"; exit 1; }
"$bin" --ctx 128 --chunks 16 --threads "$threads" --reps 5
shift 2 || shift $#
for m in "$build"/bench-models/qwen05-Q4_K_M.gguf "$@"; do
  [ -f "$m" ] && "$bin" --model "$m" --ctx 128 --chunks 2 --threads "$threads" --reps 1
done
exit 0
