#!/usr/bin/env bash
# `make demo`: generate the demo samples (benign and malicious, each format) and scan them.
set -uo pipefail
build=${1:-build}
out="$build/demo"
rm -rf "$out"
"$build/airlock-demo-gen" "$out" || exit 1
echo "== airlock scan $out/benign"
"$build/airlock" scan "$out/benign"
echo "exit code $?"
echo
echo "== airlock scan $out/malicious"
"$build/airlock" scan "$out/malicious"
echo "exit code $? (1 = findings at or above --fail-on high)"
echo
echo "== airlock inspect $out/benign/tiny-chatml.gguf"
"$build/airlock" inspect "$out/benign/tiny-chatml.gguf"
