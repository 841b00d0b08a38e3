#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05, second session): a distillation-only variant NAME, V0's
# stores of draw g distilled with V0's settings except the options of its row below; writes RUNS/NAME-g$g/policy.
# Draw 0's stores are the default study's (RUNS/../default).
#   bash scripts/configs/tuning-keel/redistill.sh RUNS t500|loss|nb 0 1 2 3
set -euo pipefail
runs=$1; name=$2; shift 2
metaal=${METAAL:-metaal}
case "$name" in
  t500) change="--target accuracy --steps 500" ;;                            # 500 gradient steps instead of 2000
  loss) change="--target loss --steps 2000" ;;                               # rank by the loss gain
  nb)   change="--target accuracy --steps 2000 --drop-features budget_used" ;; # budget share held at 0
  *) echo "redistill.sh: unknown variant $name (t500, loss or nb)" >&2; exit 2 ;;
esac
for g in "$@"; do
  src="$runs/v0-g$g"; [ "$g" = 0 ] && src="$runs/../default"
  mkdir -p "$runs/$name-g$g"
  echo "== $name-g$g $(date -u +%T)"
  # shellcheck disable=SC2086  # $change is a list of options
  $metaal distill "$src/store.zarr,$src/store-initial-3.zarr" --algo gain $change --batch-size 128 \
    --count-context per-class --out "$runs/$name-g$g/policy" > "$runs/$name-g$g.log" 2>&1
done
