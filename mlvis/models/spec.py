"""What a model is, apart from its weights: labels, input geometry, normalisation, threshold."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model card fields every part of mlvis relies on.

    Attributes:
        name: registry name (``demo-asl``).
        labels: label names in output order.
        input_size: ``(height, width)`` the model expects; images are resized to it.
        mean, std: per-channel normalisation applied *inside* the model to inputs in [0, 1].
        threshold: a label is predicted present when sigmoid(logit) >= threshold.
        source: where the weights come from (a file path or "embedded").
        card: the full model card (training config, measured mAP, ...), for display.
    """

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    threshold: float = 0.5
    source: str = ""
    description: str = ""
    card: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.labels)
