#!/usr/bin/env bash
# Installs every Debian 12 package Airlock needs to build, test, fuzz and benchmark.
# Idempotent: packages already present are skipped, so running it twice costs a dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  clang libclang-rt-14-dev libfuzzer-14-dev clang-format
  libssl-dev zlib1g-dev libarchive-dev libsqlite3-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libre2-dev libpcre2-dev
  libtomlplusplus-dev libboost-dev libcpp-httplib-dev libicu-dev unicode-data
  libbrotli-dev  # br-encoded upstream answers (the gateway decodes them itself)
  libseccomp-dev
  libpq-dev postgresql  # the PostgreSQL key store and its tests (a server each test starts)
  libgtest-dev libgmock-dev libbenchmark-dev
  chromium fonts-dejavu-core fonts-noto-cjk
  python3 python3-yaml curl  # python3-yaml: the manifest check (deploy_test); make demo: the stand-in upstream (scripts/demo-upstream.py) and the client
)
# Hyperscan (the detectors' multi-pattern engine) exists for x86-64 only; elsewhere the build
# uses RE2::Set.
if [ "$(dpkg --print-architecture)" = amd64 ]; then packages+=(libhyperscan-dev); fi
# Opt-in extras, in any combination:
#   --with-go  Go and golang.org/x/mod for `make check-note-go`
#   --oracle   the real loaders and the sandbox that tools/oracle/run-oracle.sh detonates crafted
#              files with (python3-torch alone pulls in ~170 packages)
for arg in "$@"; do
  case "$arg" in
    --with-go) packages+=(golang-go golang-golang-x-mod-dev) ;;
    --oracle) packages+=(python3-torch python3-numpy python3-joblib bubblewrap) ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
