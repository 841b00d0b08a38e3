"""Lookahead experts: how much each candidate, once labelled, would help the model.

``lookahead_gains`` is the batched torch.func implementation (what everything uses);
``reference_gains`` is the slow per-candidate loop it is tested against; ``OracleStrategy``
turns the gains into a selection (it reads true labels: a ceiling, not a competitor).
``metaal.oracle.batch`` is the batch oracle: each heuristic's whole batch, retrained and compared.
"""

from metaal.oracle.lookahead import (
    ALL_ORACLE_MODES,
    ORACLE_MODES,
    OracleConfig,
    OracleResult,
    auto_chunk,
    lookahead_gains,
    minibatch_schedule,
)
from metaal.oracle.reference import reference_gains
from metaal.oracle.strategy import OracleStrategy

__all__ = [
    "ALL_ORACLE_MODES",
    "ORACLE_MODES",
    "OracleConfig",
    "OracleResult",
    "OracleStrategy",
    "auto_chunk",
    "lookahead_gains",
    "minibatch_schedule",
    "reference_gains",
]
