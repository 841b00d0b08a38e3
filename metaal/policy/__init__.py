"""The learned acquisition policy: the artefact (``artefact``: file names, format, write, read, load),
the permutation-equivariant networks and the d3rlpy glue (``networks``), and inference (``inference``)."""

from metaal.policy.artefact import is_policy, load_policy, read_meta
from metaal.policy.inference import Policy

__all__ = ["Policy", "is_policy", "load_policy", "read_meta"]
