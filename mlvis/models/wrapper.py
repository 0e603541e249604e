"""``MultiLabelModel``: images in [0, 1] -> logits, with the normalisation inside."""

from __future__ import annotations

import torch
from torch import nn

from mlvis.models.spec import ModelSpec


class MultiLabelModel(nn.Module):
    """Wraps a network so that every attack sees the same contract.

    ``forward(x)`` takes float images ``(N, 3, H, W)`` in [0, 1] and returns logits ``(N, C)``.
    Mean/std normalisation happens here, so attacks work (and measure eps) in pixel space.
    The wrapper is put in eval mode with frozen parameters by the registry; attacks assert that
    rather than switching modes themselves (one cached model is shared by every app session).
    """

    mean: torch.Tensor  # (1, 3, 1, 1) buffers: they follow the model's device and dtype
    std: torch.Tensor

    def __init__(self, net: nn.Module, spec: ModelSpec):
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def num_labels(self) -> int:
        return len(self.spec.labels)

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Confidences sigmoid(logits) without autograd, in chunks of ``batch_size``."""
        outs = [torch.sigmoid(self(x[i : i + batch_size].to(self.device))) for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.num_labels)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_proba(x) >= self.spec.threshold

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, labels={self.num_labels}, input_size={self.spec.input_size}"
