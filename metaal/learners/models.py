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


class Net(nn.Module):
    def __init__(self, body: nn.Module, embed_dim: int, n_classes: int, dropout: float):
        super().__init__()
        self.body = body
        self.dropout = nn.Dropout(dropout)
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
        nn.Dropout(dropout),
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
        nn.Dropout(dropout),
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
