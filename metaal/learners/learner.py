"""A deep classifier under active learning: seeded init, (re)training, and the outputs strategies read."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
import torch.nn.functional as F

from metaal.config import LearnerConfig
from metaal.errors import MetaalError
from metaal.learners.models import Net, build_model, resolve_model


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda[:i]' without CUDA is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise MetaalError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MetaalError(f"device '{device}' requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MetaalError(f"device '{device}' does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type != "cpu":
        raise MetaalError(f"unsupported device '{device}' (use auto, cpu, cuda or cuda:N)")
    return dev


def set_threads(n: int) -> None:
    """CPU threads for everything a run computes: torch's intra-op pool and the BLAS / OpenMP pools numpy and
    scikit-learn use (k-means in TypiClust and ProbCover).  Why the latter too: left at the core count, parallel
    workers oversubscribe the cores (k-means on 1,000 items took 2-20x longer beside two busy processes) and
    OpenMP's k-means sums its chunks in thread order, so its clusters could depend on the machine's cores."""
    import os

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(n))
    os.environ["OMP_NUM_THREADS"] = str(int(n))  # OpenMP runtimes loaded later (scikit-learn's) read it at load
    threadpool_limits(limits=int(n))  # those loaded already (numpy's BLAS)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Run a block with torch's global RNG (dropout) set from seed, restoring it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % (2**63))
        yield


def derive_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (numpy's SeedSequence mixes them well)."""
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class Learner:
    """Owns one ``Net``, its initial weights, and the round-by-round training."""

    def __init__(self, config: LearnerConfig, input_shape, n_classes: int, seed: int, device: str | torch.device = "cpu"):
        self.config = config
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.kind = resolve_model(config.model, tuple(input_shape))
        self.n_classes = n_classes
        self.input_shape = tuple(input_shape)
        self.seed = seed
        with seeded(derive_seed(seed, 1), torch.device("cpu")):
            net = build_model(config.model, tuple(input_shape), n_classes, config.hidden, config.dropout)
        self.net: Net = net.to(self.device)
        self.init_state = copy.deepcopy(self.net.state_dict())
        self.train_loss = float("nan")
        self.train_accuracy = float("nan")

    # ------------------------------------------------------------------ training
    def reset(self) -> None:
        self.net.load_state_dict(self.init_state)

    def fit(self, X: np.ndarray, y: np.ndarray, round_seed: int) -> None:
        """Train on (X, y); from the initial weights unless ``warm_start``.

        Minibatch order and dropout masks come from ``round_seed`` so that paired runs
        with the same labelled set train identically.
        """
        if not self.config.warm_start:
            self.reset()
        Xt, yt = self.tensor(X), torch.as_tensor(y, device=self.device, dtype=torch.long)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, round_seed, 2))
        n, bs = len(yt), min(self.config.batch_size, len(yt))
        self.net.train()
        with seeded(derive_seed(self.seed, round_seed, 3), self.device):
            order = torch.randperm(n, generator=gen)
            pos = 0
            for _ in range(self.config.steps):
                if pos + bs > n:
                    order, pos = torch.randperm(n, generator=gen), 0
                idx = order[pos : pos + bs].to(self.device)
                pos += bs
                loss = F.cross_entropy(self.net(Xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.net.eval()
        self._fit_stats(Xt, yt)

    @torch.no_grad()
    def _fit_stats(self, Xt: torch.Tensor, yt: torch.Tensor) -> None:
        """Loss and accuracy on the labelled rows after training (eval mode); also set by the stacked trainer."""
        logits = self._logits(Xt)
        self.train_loss = float(F.cross_entropy(logits, yt))
        self.train_accuracy = float((logits.argmax(1) == yt).float().mean())

    # ------------------------------------------------------------------ outputs
    def tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(X, dtype=torch.float32, device=self.device)

    def _batches(self, X: np.ndarray, size: int = 2048):
        for start in range(0, len(X), size):
            yield self.tensor(X[start : start + size])

    def _logits(self, Xt: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(Xt[i : i + 2048]) for i in range(0, len(Xt), 2048)]) if len(Xt) else self.net(Xt)

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self._proba(X)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax outputs in whatever train/eval mode the modules are in."""
        out = [F.softmax(self.net(xb), dim=1).cpu().numpy() for xb in self._batches(X)]
        return np.concatenate(out) if out else np.zeros((0, self.n_classes), np.float32)

    @torch.no_grad()
    def embed(self, X: np.ndarray) -> np.ndarray:
        """Penultimate-layer embeddings (the head's input)."""
        self.net.eval()
        out = [self.net.embed(xb).cpu().numpy() for xb in self._batches(X)]
        return np.concatenate(out) if out else np.zeros((0, self.net.embed_dim), np.float32)

    @torch.no_grad()
    def mc_proba(self, X: np.ndarray, samples: int | None = None, seed: int = 0) -> np.ndarray:
        """MC-dropout class probabilities, shape (T, N, C): dropout on, everything else in eval mode."""
        T = samples or self.config.mc_samples
        self.net.eval()
        for m in self.net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.train()
        try:
            with seeded(derive_seed(self.seed, seed, 4), self.device):
                out = np.stack([self._proba(X) for _ in range(T)])
        finally:
            self.net.eval()
        return out

    @torch.no_grad()
    def grad_embedding(self, X: np.ndarray) -> np.ndarray:
        """BADGE gradient embeddings: d loss / d head weights at the predicted label, (N, C*E)."""
        self.net.eval()
        out = []
        for xb in self._batches(X):
            emb = self.net.embed(xb)
            p = F.softmax(self.net.head(emb), dim=1)
            g = p - F.one_hot(p.argmax(1), self.n_classes).to(p.dtype)
            out.append((g[:, :, None] * emb[:, None, :]).reshape(len(xb), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_classes * self.net.embed_dim), np.float32)

    @torch.no_grad()
    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        if len(y) == 0:
            return float("nan")
        return float((self.predict_proba(X).argmax(1) == y).mean())
