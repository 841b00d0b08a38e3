"""One name -> one strategy, for every command: a classic heuristic (``margin``, ...), ``policy:DIR``
(a distilled policy) or ``oracle`` (the lookahead expert; it reads true labels).  All share the
``select(state, n, candidates=None)`` signature, so experiments swap strategies by name."""

from __future__ import annotations

from metaal.acquisition.strategies import HEURISTICS, Strategy
from metaal.errors import MetaalError

__all__ = ["HEURISTICS", "get_strategy", "strategy_names"]


def strategy_names() -> list[str]:
    """The heuristics' names (``policy:DIR`` and ``oracle`` are resolved too, see ``get_strategy``)."""
    return list(HEURISTICS)


def get_strategy(name: str, **options) -> Strategy:
    """Resolve a strategy by name: a heuristic, ``policy:DIR`` (a distilled policy) or ``oracle``."""
    if name.startswith("policy:"):
        from metaal.policy import load_policy

        return load_policy(name.split(":", 1)[1], **options)
    if name == "oracle":
        from metaal.oracle import OracleStrategy

        return OracleStrategy(**options)
    if name not in HEURISTICS:
        raise MetaalError(f"unknown strategy '{name}' (choose from {', '.join(HEURISTICS)}, policy:DIR)")
    return HEURISTICS[name]()
