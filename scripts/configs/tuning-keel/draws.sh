#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): more generation draws of V0's recipe.
# Draw g is scripts/configs/tuning-keel/v0-g1.toml with [generate] seed = g; writes RUNS/v0-g$g/ (rerun resumes).
#   bash scripts/configs/tuning-keel/draws.sh RUNS 2 3 4 5 6 7
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
here=$(cd "$(dirname "$0")" && pwd)
for g in "$@"; do
  sed "s/^seed = 1$/seed = $g/" "$here/v0-g1.toml" > "$runs/v0-g$g.toml"
  grep -q "^seed = $g$" "$runs/v0-g$g.toml"
  echo "== v0-g$g $(date -u +%T)"
  $metaal run --config "$runs/v0-g$g.toml" --out "$runs/v0-g$g" --quiet > "$runs/v0-g$g.log" 2>&1
done
