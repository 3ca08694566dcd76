#!/usr/bin/env bash
# Cross-compiles the engine's kernel tables for aarch64 and runs tests/kernels_check.cc under
# qemu: the NEON table (baseline and dotprod variants) against the scalar reference. Installs the
# cross toolchain and emulator with apt when missing (kept out of scripts/setup.sh: CI does not
# need them), then repeats the run with ASan+UBSan (build-dir-san; LeakSanitizer cannot run under
# qemu). Usage: scripts/check-neon.sh [build-dir]   (default build-aarch64; `make check-neon`)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-aarch64}"
sysroot=/usr/aarch64-linux-gnu
unset AIRLOCK_ENGINE_KERNELS  # the check asserts which table is chosen by default

packages=(g++-aarch64-linux-gnu qemu-user libstdc++-12-dev-arm64-cross cmake ninja-build)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-neon: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

configure() {  # configure <dir> <extra cmake args...>
  local dir="$1"
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
      -DAIRLOCK_KERNELS_ONLY=ON "$@"
  fi
  cmake --build "$dir" --target kernels_check
}
configure "$build_dir" -DCMAKE_BUILD_TYPE=Release
configure "$build_dir-san" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAIRLOCK_SANITIZE=ON

# "max" has every extension qemu emulates (dotprod included: both NEON variants are compared);
# Cortex-A53 is ARMv8.0 without dotprod, so the baseline table must be the one chosen.
for cpu in max cortex-a53; do
  echo "check-neon: qemu-aarch64 -cpu $cpu"
  out=$(qemu-aarch64 -L "$sysroot" -cpu "$cpu" "$build_dir/kernels_check")
  echo "$out"
  want="neon"
  if [ "$cpu" = max ]; then want="neon-dotprod"; fi
  if ! grep -q "best table $want\$" <<<"$out"; then
    echo "check-neon: expected the $want table to be chosen on -cpu $cpu" >&2
    exit 1
  fi
done
echo "check-neon: qemu-aarch64 -cpu max, ASan+UBSan build"
ASAN_OPTIONS=detect_leaks=0 qemu-aarch64 -L "$sysroot" -cpu max "$build_dir-san/kernels_check"
echo "check-neon: OK"
