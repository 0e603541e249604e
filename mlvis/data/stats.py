"""Label statistics of the scene world: frequencies and co-occurrence (Fig. 5(a)'s heatmap)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mlvis.data.scenes import LABELS, world


@dataclasses.dataclass(frozen=True)
class SceneStatistics:
    """Exact statistics of the scenes ``0..n-1`` of one split.

    Attributes:
        labels: label names.
        n: number of scenes counted.
        counts: ``(C,)`` scenes in which each label is present.
        cooccurrence: ``(C, C)`` scenes in which both labels are present (diagonal = counts).
    """

    labels: tuple[str, ...]
    split: str
    n: int
    counts: np.ndarray
    cooccurrence: np.ndarray

    @property
    def frequencies(self) -> np.ndarray:
        return self.counts / self.n

    @property
    def conditional(self) -> np.ndarray:
        """``P(column | row)``: how often label j is present in scenes that hold label i."""
        return self.cooccurrence / np.maximum(self.counts[:, None], 1)

    @property
    def lift(self) -> np.ndarray:
        """``P(i, j) / (P(i) P(j))``: > 1 when two labels meet more often than by chance."""
        f = self.frequencies
        return (self.cooccurrence / self.n) / np.maximum(np.outer(f, f), 1e-12)


@functools.lru_cache(maxsize=8)
def scene_statistics(split: str = "train", n: int = 20_000, world_seed: int = 0) -> SceneStatistics:
    """Count label frequencies and co-occurrences over the split's first ``n`` scenes."""
    y = world(world_seed).label_matrix(split, range(n)).astype(np.int64)
    co = y.T @ y
    return SceneStatistics(tuple(LABELS), split, n, np.diag(co).copy(), co)
