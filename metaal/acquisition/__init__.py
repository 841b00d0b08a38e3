"""Acquisition: classic heuristics, the feature extractor, and the learned policy at inference."""

from metaal.acquisition.strategies import HEURISTICS, Strategy, get_strategy, strategy_names

__all__ = ["HEURISTICS", "Strategy", "get_strategy", "strategy_names"]
