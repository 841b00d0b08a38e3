#!/bin/bash
# Issue 27 tuning study, DAgger lever (docs/research-log.md, 2026-12-05, rule written before these runs).
# Iteration i, draw g: `metaal run` generates sources episodes rolled in with the previous iteration's policy
# (beta 0.5: each pick the expert's with probability 0.5, else the policy's), then the aggregate policy is
# distilled with V0's settings on every store so far (V0's own, D1's, ...).  Every step resumes.
# A finished aggregate policy is kept (a rerun with more ITERATIONS goes on from there).
#   bash scripts/configs/tuning-keel/dagger.sh [ITERATIONS]   (from the repository root; default 2)
set -euo pipefail
M=${METAAL:-metaal}  # e.g. METAAL=.venv/bin/metaal
R=/work/runs/tuning-keel
C=scripts/configs/tuning-keel
D="--algo gain --target accuracy --steps 2000 --batch-size 128 --count-context per-class --quiet"
export METAAL_THREADS=1
for it in $(seq 1 "${1:-2}"); do
  for g in 0 1; do
    base=$([ "$g" = 0 ] && echo /work/runs/default || echo $R/v0-g1)
    stores="$base/store.zarr,$base/store-initial-3.zarr"
    for j in $(seq 1 "$it"); do stores="$stores,$R/d$j-g$g/store.zarr,$R/d$j-g$g/store-initial-3.zarr"; done
    echo "== d$it-g$g generate $(date -u +%H:%M:%S)"
    $M run --config $C/d$it-g$g.toml --out $R/d$it-g$g --quiet > $R/d$it-g$g.log 2>&1
    echo "== d$it-g$g distill $stores $(date -u +%H:%M:%S)"
    [ -d $R/d$it-g$g/aggregate ] || $M distill "$stores" $D --out $R/d$it-g$g/aggregate >> $R/d$it-g$g.log 2>&1
  done
done
echo "== done $(date -u +%H:%M:%S)"
