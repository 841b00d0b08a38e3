"""Issue 27 lever E (on trial, docs/research-log.md 2026-12-05 second session): one policy whose score is the mean
of several policies' scorers, here the generation draws of one recipe.

The members must agree on everything that decides how they are deployed (schema, scorer sizes, algorithm,
candidate settings); the result is a ``ScorerEnsemble`` artefact, which ``load_policy`` already reads.

    python scripts/ensemble_policies.py OUT DRAW0/policy DRAW1/policy ...
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from metaal.errors import MetaalError
from metaal.policy.artefact import load_policy, read_meta, write_policy
from metaal.policy.networks import CandidateScorer, ScorerEnsemble

# metadata that may differ between members (provenance, training summaries); everything else must match
PER_MEMBER = {"scorer", "training", "sources", "versions", "platform", "provenance", "validation"}


def ensemble(out: Path, members: list[Path]) -> dict:
    if len(members) < 2:
        raise MetaalError("an ensemble needs at least two policies")
    if out.exists():
        raise MetaalError(f"{out} exists: choose a new directory")
    metas = [read_meta(m) for m in members]
    first = metas[0]
    for m, meta in zip(members[1:], metas[1:]):
        for key in sorted((set(first) | set(meta)) - PER_MEMBER):
            if first.get(key) != meta.get(key):
                raise MetaalError(f"{m}: {key!r} differs from {members[0]}'s; members must be deployed alike")
        for key in ("n_features", "n_context", "hidden", "class"):
            if first["scorer"].get(key) != meta["scorer"].get(key):
                raise MetaalError(f"{m}: scorer {key!r} differs from {members[0]}'s")
    if first["scorer"].get("class", "CandidateScorer") != "CandidateScorer":
        raise MetaalError("only CandidateScorer policies can be ensembled")
    info = first["scorer"]
    ens = ScorerEnsemble(int(info["n_features"]), int(info["n_context"]), int(info["hidden"]), len(members))
    for slot, m in zip(ens.members, members):
        scorer = load_policy(m).scorer
        assert isinstance(scorer, CandidateScorer)
        slot.load_state_dict(scorer.state_dict())
    meta = {k: v for k, v in first.items() if k not in PER_MEMBER}
    meta["scorer"] = {k: v for k, v in info.items() if k not in ("sha256", "file")}
    meta["scorer"].update({"class": "ScorerEnsemble", "members": len(members)})
    meta["ensemble_of"] = [str(m) for m in members]
    meta["members"] = [{k: mm.get(k) for k in sorted(PER_MEMBER - {"scorer"})} for mm in metas]
    stage = Path(tempfile.mkdtemp(prefix=".ensemble-", dir=out.parent))
    try:
        written = write_policy(stage, ens, meta)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("members", type=Path, nargs="+")
    a = ap.parse_args(argv)
    try:
        ensemble(a.out, a.members)
    except MetaalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({len(a.members)} members)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
