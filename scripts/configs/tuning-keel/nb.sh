#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): variant NB, V0's stores of draw g
# distilled with the context column budget_used held at 0 (every other setting V0's); writes RUNS/nb-g$g/policy.
#   bash scripts/configs/tuning-keel/nb.sh RUNS 0 1 2 3      (draw 0's stores are the default study's: RUNS/../default)
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
for g in "$@"; do
  src="$runs/v0-g$g"; [ "$g" = 0 ] && src="$runs/../default"
  mkdir -p "$runs/nb-g$g"
  echo "== nb-g$g $(date -u +%T)"
  $metaal distill "$src/store.zarr,$src/store-initial-3.zarr" --algo gain --target accuracy --steps 2000 --drop-features budget_used --batch-size 128 \
    --count-context per-class --out "$runs/nb-g$g/policy" > "$runs/nb-g$g.log" 2>&1
done
