import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("METAAL_THREADS", "1")


@pytest.fixture
def digits_task():
    from metaal.tasks import load_task

    return load_task("sklearn:digits", 0)
