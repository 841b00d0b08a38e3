#!/bin/bash
# Issue 27 tuning study (docs/research-log.md, 2026-12-05): generation draws of one variant.
# Draw g of variant NAME is V0's recipe (v0-g1.toml) with [generate] seed = g and NAME's one change below; writes
# RUNS/NAME-g$g.toml and RUNS/NAME-g$g/ (rerun resumes).  NAME defaults to v0.
#   bash scripts/configs/tuning-keel/draws.sh RUNS 2 3 4 5 6 7
#   VARIANT=m3 bash scripts/configs/tuning-keel/draws.sh RUNS 0 1 2 3
set -euo pipefail
runs=$1; shift
metaal=${METAAL:-metaal}
name=${VARIANT:-v0}
here=$(cd "$(dirname "$0")" && pwd)
case "$name" in  # sed expression of the change; the line it must leave
  v0)  change="" ;                                                   line="oracle_margin_pool = 5" ;;
  m3)  change="s/^oracle_margin_pool = 5$/oracle_margin_pool = 3/";   line="oracle_margin_pool = 3" ;;   # uncertain pool 3 x n
  m10) change="s/^oracle_margin_pool = 5$/oracle_margin_pool = 10/";  line="oracle_margin_pool = 10" ;;  # 10 x n
  n48) change="s/^episodes = 24$/episodes = 48/";                     line="episodes = 48" ;;            # 48 episodes per store
  x0)  change="s/^extra_initial = \[3\]$/extra_initial = []/";        line="extra_initial = []" ;;       # no 3-label episodes
  acc) change='s/^oracle_margin_pool = 5$/&\noracle_metric = "accuracy"/'; line='oracle_metric = "accuracy"' ;;  # expert on accuracy
  *) echo "draws.sh: unknown variant $name (v0, m3, m10, n48, x0 or acc)" >&2; exit 2 ;;
esac
for g in "$@"; do
  sed -e "s/^seed = 1$/seed = $g/" -e "$change" "$here/v0-g1.toml" > "$runs/$name-g$g.toml"
  grep -q "^seed = $g$" "$runs/$name-g$g.toml"
  grep -qxF "$line" "$runs/$name-g$g.toml"
  echo "== $name-g$g $(date -u +%T)"
  $metaal run --config "$runs/$name-g$g.toml" --out "$runs/$name-g$g" --quiet > "$runs/$name-g$g.log" 2>&1
done
