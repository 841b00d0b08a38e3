"""The deep models metaal actively trains.

Every model is a ``Net``: ``body`` -> embedding -> dropout -> linear ``head``.  Strategies
and features rely on that shape (embeddings for coreset and distances, the head's input for
BADGE gradient embeddings, the dropout for MC-dropout BALD), and the oracle relies on
the absence of BatchNorm in the default models so that K copies can be vmapped.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metaal.errors import MetaalError

MODELS = ("auto", "mlp", "cnn", "resnet18")


def bernoulli_mask(shape: tuple[int, ...], keep: float, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A CPU 0/1 mask with the very bits of ``torch.empty(shape).bernoulli_(keep, generator=...)``.

    Torch's CPU ``bernoulli_`` draws one float64 uniform per element and keeps it when below ``keep``;
    ``torch.rand`` draws the same uniforms from the same generator state (and leaves the generator where
    ``bernoulli_`` does) about twice as fast, so MC-dropout and training cost half as much in masks.
    ``tests/test_dropout.py`` checks the bits and the generator state against torch's own calls.
    """
    return (torch.rand(shape, dtype=torch.float64, generator=generator) < keep).to(dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the same outputs and the same global RNG use, its CPU masks from :func:`bernoulli_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0.0 < self.p < 1.0 or self.inplace or x.device.type != "cpu" or x.numel() == 0:
            return super().forward(x)
        keep = 1.0 - self.p
        return x * bernoulli_mask(tuple(x.shape), keep, dtype=x.dtype).div_(keep)  # torch's CPU dropout, step for step


PLAIN_DROPOUTS = (nn.Dropout, Dropout)  # the layers the oracle and the stacked trainer replace by explicit masks


class Net(nn.Module):
    def __init__(self, body: nn.Module, embed_dim: int, n_classes: int, dropout: float):
        super().__init__()
        self.body = body
        self.dropout = Dropout(dropout)
        self.head = nn.Linear(embed_dim, n_classes)
        self.embed_dim = embed_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))


def mlp_body(n_in: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
    )


def cnn_body(channels: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        Dropout(dropout),
        nn.Linear(32 * 16, hidden),
        nn.ReLU(),
    )


def resnet18_body(channels: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None)  # never downloads: architecture only
    if channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def resolve_model(model: str, input_shape: tuple[int, ...]) -> str:
    if model not in MODELS:
        raise MetaalError(f"unknown model '{model}' (choose from {', '.join(MODELS)})")
    is_image = len(input_shape) == 3
    if model == "auto":
        return "cnn" if is_image else "mlp"
    if model in ("cnn", "resnet18") and not is_image:
        raise MetaalError(f"model '{model}' needs image inputs (N, C, H, W); this task is tabular {input_shape}")
    return model


def build_model(model: str, input_shape: tuple[int, ...], n_classes: int, hidden: int, dropout: float) -> Net:
    kind = resolve_model(model, input_shape)
    if kind == "mlp":
        return Net(mlp_body(math.prod(input_shape), hidden, dropout), hidden, n_classes, dropout)
    if kind == "cnn":
        return Net(cnn_body(input_shape[0], hidden, dropout), hidden, n_classes, dropout)
    return Net(resnet18_body(input_shape[0]), 512, n_classes, dropout)
