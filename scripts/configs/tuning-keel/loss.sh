#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): variant LOSS, V0's stores of draw g
# distilled with the loss gain as target instead of the accuracy gain (every other setting V0's); writes RUNS/loss-g$g/policy.
#   bash scripts/configs/tuning-keel/loss.sh RUNS 0 1 2 3      (draw 0's stores are the default study's: RUNS/../default)
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
for g in "$@"; do
  src="$runs/v0-g$g"; [ "$g" = 0 ] && src="$runs/../default"
  mkdir -p "$runs/loss-g$g"
  echo "== loss-g$g $(date -u +%T)"
  $metaal distill "$src/store.zarr,$src/store-initial-3.zarr" --algo gain --target loss --steps 2000 --batch-size 128 \
    --count-context per-class --out "$runs/loss-g$g/policy" > "$runs/loss-g$g.log" 2>&1
done
