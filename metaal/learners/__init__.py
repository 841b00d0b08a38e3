"""Deep models being actively trained (MLP, small CNN, ResNet-18) and their training."""

from metaal.learners.learner import Learner, LearnerConfig, derive_seed, resolve_device, seeded, set_threads
from metaal.learners.models import MODELS, Net, build_model, resolve_model

__all__ = ["MODELS", "Learner", "LearnerConfig", "Net", "build_model", "derive_seed", "resolve_device", "resolve_model", "seeded", "set_threads"]
