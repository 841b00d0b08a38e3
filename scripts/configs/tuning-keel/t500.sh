#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): variant T500, V0's stores of draw g
# distilled with 500 gradient steps instead of 2000 (every other setting V0's); writes RUNS/t500-g$g/policy.
#   bash scripts/configs/tuning-keel/t500.sh RUNS 0 1 2 3      (draw 0's stores are the default study's: RUNS/../default)
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
for g in "$@"; do
  src="$runs/v0-g$g"; [ "$g" = 0 ] && src="$runs/../default"
  mkdir -p "$runs/t500-g$g"
  echo "== t500-g$g $(date -u +%T)"
  $metaal distill "$src/store.zarr,$src/store-initial-3.zarr" --algo gain --target accuracy --steps 500 --batch-size 128 \
    --count-context per-class --out "$runs/t500-g$g/policy" > "$runs/t500-g$g.log" 2>&1
done
