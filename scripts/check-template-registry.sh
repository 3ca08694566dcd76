#!/usr/bin/env bash
# Checks a folder of official chat templates (*.jinja, or tokenizer_config.json files reduced to
# their template) against Airlock's registry: each must be named official and scan clean.
#   scripts/check-template-registry.sh DIR [BUILD]
# The templates are not part of the repository (only their digests are); see docs/template.md.
set -euo pipefail
dir=${1:?usage: check-template-registry.sh DIR [BUILD]}
build=${2:-build}
AIRLOCK_OFFICIAL_TEMPLATES=$(cd "$dir" && pwd) \
  "$build/tests/template_test" --gtest_filter='Registry.OfficialTemplatesFromFolderScanCleanAndNamed'
for f in "$dir"/*; do
  "$build/airlock" scan "$f" >/dev/null && echo "clean: $f" || { echo "NOT CLEAN: $f"; exit 1; }
done
