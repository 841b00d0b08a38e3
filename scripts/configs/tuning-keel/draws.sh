#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): generation draws of one variant.
# Draw g of variant NAME is scripts/configs/tuning-keel/NAME.toml with [generate] seed = g; writes RUNS/NAME-g$g/
# (rerun resumes).  NAME defaults to v0 (V0's recipe, from v0-g1.toml).
#   bash scripts/configs/tuning-keel/draws.sh RUNS 2 3 4 5 6 7
#   VARIANT=m3 bash scripts/configs/tuning-keel/draws.sh RUNS 0 1 2 3
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
name=${VARIANT:-v0}
here=$(cd "$(dirname "$0")" && pwd)
base="$here/$name.toml"
[ "$name" = v0 ] && base="$here/v0-g1.toml"
for g in "$@"; do
  sed "s/^seed = 1$/seed = $g/" "$base" > "$runs/$name-g$g.toml"
  grep -q "^seed = $g$" "$runs/$name-g$g.toml"
  echo "== $name-g$g $(date -u +%T)"
  $metaal run --config "$runs/$name-g$g.toml" --out "$runs/$name-g$g" --quiet > "$runs/$name-g$g.log" 2>&1
done
