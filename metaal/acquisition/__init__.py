"""Acquisition, label-free only: uncertainty scores, small ops, the classic heuristics, candidate proposals
and the policy's features.  ``metaal.registry`` resolves these and the policy and oracle by name."""

from metaal.acquisition.strategies import HEURISTICS, Strategy, get_heuristic

__all__ = ["HEURISTICS", "Strategy", "get_heuristic"]
