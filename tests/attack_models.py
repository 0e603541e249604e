"""Tiny models for the attack tests (captum-style analytic toys), imported by test_attacks / test_losses.

Both work in float64 so that batch composition cannot change a gradient's sign through rounding, and
both carry the attributes the engine reads (``threshold``, ``labels``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LinearMultiLabel(nn.Module):
    """logits = W . flatten(x) + b on 3 x 8 x 8 images: every gradient is known in closed form."""

    threshold = 0.5

    def __init__(self, num_labels: int = 5, size: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = 3 * size * size
        self.weight = nn.Parameter(torch.randn(num_labels, d, generator=g, dtype=torch.float64) * 4 / d**0.5)
        # biases put the clean confidences on both sides of the threshold
        self.bias = nn.Parameter(torch.linspace(-1.5, 1.5, num_labels, dtype=torch.float64) - 0.5 * self.weight.sum(1))
        self.labels = tuple(f"label{i}" for i in range(num_labels))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class TinyConvNet(nn.Module):
    """A small random conv net on 3 x 16 x 16 images (non-linear, with a ReLU and a strided conv)."""

    threshold = 0.5

    def __init__(self, num_labels: int = 6, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
        self.head = nn.Linear(4 * 8 * 8, num_labels).double()
        self.labels = tuple(f"c{i}" for i in range(num_labels))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1)) * 3.0


def grid_images(n: int, size: int, seed: int = 0, margin: int = 0) -> torch.Tensor:
    """Images on the 8-bit grid (k / 255), float64, with levels in [margin, 255 - margin]."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(margin, 256 - margin, size=(n, 3, size, size))
    return torch.from_numpy(levels / 255.0)


def toy_models() -> dict[str, tuple[nn.Module, int]]:
    """name -> (model, image side)."""
    return {"linear": (LinearMultiLabel(), 8), "conv": (TinyConvNet(), 16)}


def linear_findings_inputs(num_images: int):
    """A 6-label :class:`LinearMultiLabel`, ``num_images`` random 8x8 images and the keyword arguments of
    ``paper_findings`` for them (their profile, both correlation matrices, made-up label statistics)."""
    import mlvis

    model = LinearMultiLabel(num_labels=6)
    x = torch.rand(num_images, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prof = mlvis.profile(model, x, degree=3, interval=4, max_eps=0.1, patience=2)
    up = mlvis.correlations(model, x, eps=0.002, direction="up")
    down = mlvis.correlations(model, x, eps=0.002, direction="down")
    co = np.random.default_rng(0).random((6, 6))
    stats = {"frequencies": np.linspace(0.5, 0.1, 6), "cooccurrence": {"conditional": co, "lift": co + 0.5}}
    return model, x, {"profile": prof, "up": up, "down": down, **stats}
