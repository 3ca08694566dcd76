#!/usr/bin/env bash
# `make check-sarif`: SARIF from `airlock scan` validated by Microsoft's SARIF multitool with
# GitHub code scanning's rules plus the SARIF spec rules (`validate --rule-kind "Gh;Sarif"`).
# The multitool comes from npm (@microsoft/sarif-multitool, into BUILD/npm); it is not part of
# `make test`. Input: the demo set (benign and malicious samples of every format) and the
# scanner fixtures in ../shared/fixtures. Zero errors passes; anything else, a missing fixture
# folder or a missing tool included, fails.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures="$root/../shared/fixtures"
npm install --no-save --no-audit --no-fund --prefix "$build/npm" @microsoft/sarif-multitool >/dev/null
# The package's bin.js runs the native tool through a shell, which would split "Gh;Sarif" at the
# ';': call the platform binary it points to directly.
tool=$(node -p "require('$build/npm/node_modules/@microsoft/sarif-multitool')")
[ -x "$tool" ] || chmod u+x "$tool"  # npm may skip the package's postinstall chmod
[ -x "$tool" ] || { echo "check-sarif: FAILED: no sarif-multitool at $tool" >&2; exit 1; }
out="$build/sarif-check"
rm -rf "$out" && mkdir -p "$out"
"$build/airlock-demo-gen" "$out/demo" >/dev/null

# Each scan runs from the folder it reports on, so that URIs are relative to %SRCROOT%.
scan() {  # scan NAME DIR
  (cd "$2" && "$build/airlock" scan . --format sarif -o "$out/$1.sarif" >/dev/null 2>&1) || true
  [ -s "$out/$1.sarif" ] || { echo "check-sarif: FAILED: no SARIF for $2" >&2; exit 1; }
}
scan demo-benign "$out/demo/benign"
scan demo-malicious "$out/demo/malicious"
for f in modelaudit modelscan picklescan gguf-models; do
  [ -d "$fixtures/$f" ] || { echo "check-sarif: FAILED: fixtures missing: $fixtures/$f" >&2; exit 1; }
  scan "$f" "$fixtures/$f"
done

errors=0
for s in "$out"/*.sarif; do
  log="${s%.sarif}.validation.json"
  rm -f "$log"
  "$tool" validate "$s" --rule-kind "Gh;Sarif" --output "$log" >"${log%.json}.txt" 2>&1 || true
  [ -s "$log" ] || { echo "check-sarif: FAILED: the multitool wrote no log for $s" >&2; exit 1; }
  # Errors: results at level "error" (the multitool writes the level on each result).
  n=$(python3 - "$log" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
errors = []
for run in log.get("runs", []):
    for r in run.get("results", []):
        if r.get("level", "warning") == "error":
            errors.append(r)
for r in errors[:20]:
    print("  %s: %s" % (r.get("ruleId"), r.get("message", {}).get("text", "")[:300]), file=sys.stderr)
print(len(errors))
PY
)
  results=$(grep -c '"ruleId"' "$s" || true)
  echo "$(basename "$s"): $results results, $n validation errors"
  errors=$((errors + n))
done
# Negative control: the same log with absolute paths and no regions (what Airlock wrote before)
# must draw errors, or the validator did not run GitHub's rules.
mkdir -p "$out/control"
python3 - "$out/demo-malicious.sarif" "$out/control/broken.sarif" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
for run in log["runs"]:
    run.pop("originalUriBaseIds", None)
    for r in run["results"]:
        loc = r["locations"][0]["physicalLocation"]
        loc.pop("region", None)
        loc["artifactLocation"] = {"uri": "/abs/" + loc["artifactLocation"]["uri"]}
json.dump(log, open(sys.argv[2], "w"))
PY
"$tool" validate "$out/control/broken.sarif" --rule-kind "Gh;Sarif" \
  --output "$out/control/broken.validation.json" >/dev/null 2>&1 || true
control=$(python3 -c 'import json,sys; print(sum(1 for run in json.load(open(sys.argv[1]))["runs"] for r in run.get("results", []) if r.get("level", "warning") == "error"))' "$out/control/broken.validation.json" 2>/dev/null || echo 0)
echo "negative control (absolute paths, no regions): $control validation errors"
if [ "$control" -eq 0 ]; then
  echo "check-sarif: FAILED: the validator found nothing wrong with a broken log" >&2
  exit 1
fi
if [ "$errors" -ne 0 ]; then
  echo "check-sarif: FAILED: $errors validation errors (logs in $out)" >&2
  exit 1
fi
echo "check-sarif: OK: zero errors from sarif-multitool validate --rule-kind Gh;Sarif"
