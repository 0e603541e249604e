"""Data: the project's procedural scene world, ``demo_batch``, and real dataset folders (``open_dataset``)."""

from __future__ import annotations

import numpy as np
import torch

from mlvis.data.datasets import (
    KINDS,
    PAPER_SPLITS,
    Dataset,
    DatasetError,
    open_dataset,
    parse_data_spec,
    preprocessing,
    write_scene_dataset,
)
from mlvis.data.scenes import (
    BLOCK,
    CONTEXTS,
    LABEL_DEFS,
    LABELS,
    NUM_LABELS,
    SPLIT_BASE,
    SceneConfig,
    SceneWorld,
    to_tensor,
    world,
)
from mlvis.data.stats import SceneStatistics, scene_statistics
from mlvis.errors import InvalidInput

__all__ = [
    "BLOCK",
    "CONTEXTS",
    "KINDS",
    "PAPER_SPLITS",
    "Dataset",
    "DatasetError",
    "LABELS",
    "LABEL_DEFS",
    "NUM_LABELS",
    "SPLIT_BASE",
    "SceneConfig",
    "SceneStatistics",
    "SceneWorld",
    "demo_batch",
    "open_dataset",
    "parse_data_spec",
    "preprocessing",
    "scene_statistics",
    "to_tensor",
    "world",
    "write_scene_dataset",
]


def demo_batch(n: int, split: str = "test", seed: int = 0, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes of the demo world as ``(images, labels)``.

    Returns a float32 tensor ``(n, 3, size, size)`` in [0, 1] and a multi-hot float32 tensor
    ``(n, C)``. ``seed`` picks a block of scenes: block ``s`` holds the split's scene indices
    ``s * 10**6, s * 10**6 + 1, ...``, so blocks never overlap (for ``n <= 10**6``) and
    ``seed=0`` gives the split's first ``n`` scenes (the ones the docs' tables use).
    """
    if not isinstance(n, (int, np.integer)) or n < 0 or n > BLOCK:
        raise InvalidInput(f"n must be an integer between 0 and {BLOCK}, not {n!r}.")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1000:
        raise InvalidInput(f"seed must be an integer between 0 and 999, not {seed!r}.")
    start = int(seed) * BLOCK
    imgs, labels = world(0, size).batch_uint8(split, range(start, start + int(n)))
    return to_tensor(imgs), torch.from_numpy(labels).float()
