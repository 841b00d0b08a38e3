"""Ship a `metaal run` directory's policy inside the package: `--strategy policy` then uses it.

Copies RUN_DIR/policy's metadata and scorer weights (byte for byte; never d3rlpy's pickle) into
metaal/policies/default of the checkout this script lies in, with SHIPPED.json beside them: each file's sha256
and the commands that regenerate them (the `metaal run` command the policy records, then this one).  The policy
must load with this checkout's code (format, feature schema, weights).  A policy that `metaal run --quick` or
another command made is refused: the commands recorded must regenerate what ships.

    python scripts/ship_policy.py runs/default

Bad input: a one-line error and exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "metaal" / "__init__.py").is_file() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's metaal: its schema is the one the shipped files must match

SCRIPT = "scripts/ship_policy.py"


def run_command(run_dir: Path) -> dict:
    """The provenance of RUN_DIR's policy, checked: made by `metaal run` (not --quick)."""
    from metaal.errors import MetaalError
    from metaal.policy.artefact import read_meta

    if not run_dir.is_dir():
        raise MetaalError(f"{run_dir}: no such run directory")
    if not (run_dir / "policy").is_dir():
        raise MetaalError(f"{run_dir}: no policy/ inside (not a `metaal run` directory, or its distillation has not "
                          "finished)")
    meta = read_meta(run_dir / "policy")
    prov = meta.get("provenance") or {}
    command = str(prov.get("command") or "")
    words = shlex.split(command) if command else []
    if words[:2] != ["metaal", "run"]:
        raise MetaalError(f"{run_dir / 'policy'} was made by {command or 'an unrecorded command'!r}, not `metaal run`: "
                          "ship a policy from a `metaal run` directory, whose command regenerates it")
    if "--quick" in words:
        raise MetaalError(f"{run_dir / 'policy'} was made by {command!r}: a --quick run's policy is a smoke test, "
                          "not one to ship")
    return prov


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a finished `metaal run --out RUN_DIR` directory")
    ap.add_argument("--dest", default=None, help="where to write (default: metaal/policies/default of this checkout)")
    args = ap.parse_args(argv)

    from metaal.errors import MetaalError
    from metaal.policy.artefact import SHIPPED_DIR, SHIPPED_FILE, ship_policy

    run_dir = Path(args.run_dir)
    dest = Path(args.dest) if args.dest else SHIPPED_DIR
    try:
        prov = run_command(run_dir)
        commands = [prov["command"], shlex.join(["python", SCRIPT, *argv])]
        origin = {"run_dir": str(run_dir.resolve()),
                  "code": {"git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty")},
                  "made": {"host": prov.get("host"), "time": prov.get("time")}}
        manifest = ship_policy(run_dir / "policy", dest, commands, origin)
    except (MetaalError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
    if prov.get("git_dirty") is not False:
        print(f"warning: the code that made the policy is {'uncommitted' if prov.get('git_dirty') else 'unknown'} "
              f"(commit {prov.get('git_commit')}): the recorded command may not regenerate it", file=sys.stderr)
    for name, info in manifest["files"].items():
        print(f"{dest / name}: {info['bytes']} bytes, sha256 {info['sha256']}")
    print(f"{dest / SHIPPED_FILE}: regenerate with: {' && '.join(commands)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
