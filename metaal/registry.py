"""One name -> one strategy, for every command: a classic heuristic (``margin``, ...), ``policy`` (the learned
policy shipped inside metaal), ``policy:DIR`` (a distilled policy directory) or ``oracle`` (the lookahead expert;
it reads true labels).  All share the ``select(state, n, candidates=None)`` signature, so experiments swap
strategies by name.

``shipped`` names the shipped policy too, and only it: in transfer-eval and benchmark, ``--policy DIR`` makes the
strategy ``policy`` that directory's policy, and ``metaal run`` evaluates its own policy as ``policy`` beside the
shipped one as ``shipped``."""

from __future__ import annotations

from pathlib import Path

from metaal.acquisition.strategies import HEURISTICS, Strategy
from metaal.errors import MetaalError

__all__ = ["HEURISTICS", "POLICY", "SHIPPED", "get_strategy", "is_policy_name", "policy_dir", "strategy_names"]

POLICY, SHIPPED = "policy", "shipped"


def strategy_names() -> list[str]:
    """The heuristics' names and ``policy`` (``policy:DIR``, ``shipped`` and ``oracle`` resolve too, see
    ``get_strategy``)."""
    return [*HEURISTICS, POLICY]


def is_policy_name(name: str) -> bool:
    """Whether ``name`` names a learned policy: ``policy``, ``shipped`` or ``policy:DIR``."""
    return name in (POLICY, SHIPPED) or name.startswith(f"{POLICY}:")


def policy_dir(name: str) -> Path:
    """The directory a policy name reads: the shipped policy's for ``policy`` and ``shipped``, DIR for ``policy:DIR``."""
    from metaal.policy.artefact import SHIPPED_DIR

    if not is_policy_name(name):
        raise MetaalError(f"'{name}' does not name a policy (policy, shipped or policy:DIR)")
    return SHIPPED_DIR if name in (POLICY, SHIPPED) else Path(name.split(":", 1)[1])


def get_strategy(name: str, **options) -> Strategy:
    """Resolve a strategy by name: a heuristic, ``policy`` or ``shipped`` (the policy shipped inside metaal),
    ``policy:DIR`` (a distilled policy) or ``oracle``."""
    if name in (POLICY, SHIPPED):
        from metaal.policy.artefact import load_shipped_policy

        return load_shipped_policy(policy_dir(name), **options)
    if name.startswith(f"{POLICY}:"):
        from metaal.policy import load_policy

        return load_policy(name.split(":", 1)[1], **options)
    if name == "oracle":
        from metaal.oracle import OracleStrategy

        return OracleStrategy(**options)
    if name not in HEURISTICS:
        raise MetaalError(f"unknown strategy '{name}' (choose from {', '.join(HEURISTICS)}, policy, policy:DIR)")
    return HEURISTICS[name]()
