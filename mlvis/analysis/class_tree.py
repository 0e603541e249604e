"""The look-ahead trees CLASS explored for one image (Fig. 9, Algorithm 3), recorded from the selector itself.

:func:`class_tree` runs the same selection the ``"class"`` attack runs for one image at one budget (same
clean confidences, same maximum-flip target, same subset length from the profile, same normalised
correlation matrices) with :func:`mlvis.attacks.class_subset.select_subset`'s ``trace`` on, so every node, score
and objective shown is the one that decided the subset. Each iteration adds one label: a tree ``depth``
levels deep with ``branches`` children per node grows from the labels chosen so far, and the first label on
the path to the leaf with the highest objective ``O = gamma * sum(ICM[set, set]) + (1 - gamma) * sum(P[set])``
joins the set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from mlvis.attacks.class_subset import (
    correlation_pair,
    instance_correlation,
    profile_lengths,
    select_subset,
    target_ease,
)
from mlvis.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class TreeNode:
    """One node of an iteration's tree: ``id`` 0 is the root (the set so far); ``level`` 1 ... depth."""

    id: int
    level: int
    parent: int
    label: int  # the label this node adds (-1 for the root)
    score: float  # S of that label at the parent (NaN for the root)
    objective: float  # O of the leaf's set (NaN for inner nodes)
    on_path: bool  # on the path from the root to the best leaf


@dataclasses.dataclass(frozen=True)
class ClassTree:
    """CLASS's choice for one image with every tree it explored.

    Attributes:
        labels: label names; ``probs``: clean confidences ``(C,)``; ``target``: the maximum-flip target.
        ease: P, the normalised closeness of each confidence to its target.
        length: the subset length; ``subset``: the labels chosen, in the order they joined.
        iterations: the selector's raw trace, one dict per added label (see ``select_subset``).
    """

    labels: tuple[str, ...]
    probs: np.ndarray
    target: np.ndarray
    ease: np.ndarray
    eps: float
    length: int
    gamma: float
    branches: int
    depth: int
    subset: np.ndarray
    iterations: tuple[dict[str, Any], ...]

    @property
    def root(self) -> int:
        """The easiest label, where every subset starts."""
        return int(self.subset[0])

    def nodes(self, iteration: int = 0) -> list[TreeNode]:
        """The nodes of one iteration's tree in breadth-first order (``id`` = position)."""
        if not self.iterations:
            return []
        if not 0 <= iteration < len(self.iterations):
            raise InvalidInput(f"This tree has iterations 0 to {len(self.iterations) - 1}, not {iteration}.")
        it = self.iterations[iteration]
        levels = it["levels"]
        nodes = [TreeNode(0, 0, -1, -1, float("nan"), float("nan"), True)]
        offsets = [0]  # id of the first node of each level
        for depth, lv in enumerate(levels, start=1):
            offsets.append(len(nodes))
            leaf = depth == len(levels)
            for j, (par, lab, sc) in enumerate(zip(lv["parent"], lv["label"], lv["score"], strict=True)):
                obj = float(it["objective"][j]) if leaf else float("nan")
                parent = offsets[depth - 1] + int(par)
                nodes.append(TreeNode(len(nodes), depth, parent, int(lab), float(sc), obj, False))
        # mark the best leaf's path
        best = offsets[-1] + int(it["best_leaf"])
        marked = list(nodes)
        while best > 0:
            marked[best] = dataclasses.replace(marked[best], on_path=True)
            best = marked[best].parent
        return marked

    def to_dict(self) -> dict:
        """Plain values for the CLI's JSON export."""
        return {
            "labels": list(self.labels),
            "eps": self.eps,
            "length": self.length,
            "gamma": self.gamma,
            "branches": self.branches,
            "depth": self.depth,
            "clean_confidence": self.probs.tolist(),
            "target": self.target.astype(int).tolist(),
            "ease": self.ease.tolist(),
            "subset": [self.labels[i] for i in self.subset],
            "iterations": [
                {
                    "root": [self.labels[i] for i in it["root"]],
                    "chosen": self.labels[it["chosen"]],
                    "nodes": [dataclasses.asdict(n) for n in self.nodes(k)],
                }
                for k, it in enumerate(self.iterations)
            ],
        }


def class_tree(
    model: torch.nn.Module,
    image: Any,
    eps: float,
    *,
    correlations: Any,
    profile: Any = None,
    length: int | None = None,
    gamma: float = 0.5,
    branches: int = 4,
    depth: int = 4,
    factor: float = 1.66,
) -> ClassTree:
    """The trees CLASS explores for ``image`` at the L-inf budget ``eps`` (Fig. 9).

    Args:
        model: a ``MultiLabelModel`` in eval mode.
        image: one image ``(3, H, W)`` (or ``(1, 3, H, W)``) in [0, 1].
        eps: the budget; with ``profile`` the subset length is ``min(C, floor(factor * E(eps)))``.
        correlations: the flip-up ``CorrelationMatrix`` (flip-down = 1 - up) or a (flip-up, flip-down) pair.
        profile, length: the model's ``FlipProfile``, or an explicit subset length.
        gamma, branches, depth, factor: as for the ``"class"`` attack.
    """
    x = torch.as_tensor(image)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3 or not x.is_floating_point():
        raise InvalidInput(f"class_tree takes one float image (3, H, W) in [0, 1], not shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise InvalidInput("The image must have finite values in [0, 1].")
    if not 0.0 <= float(gamma) <= 1.0:
        raise InvalidInput(f"gamma must lie in [0, 1], not {gamma!r}.")
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        logits = model(x.to(dev, torch.float32)).float()
    probs = torch.sigmoid(logits).double().cpu().numpy()[0]
    c = probs.shape[0]
    threshold = float(getattr(model, "threshold", 0.5))
    target = (probs < threshold).astype(np.float64)  # 1 - clean prediction
    up, down = correlation_pair(correlations)
    if up.shape[0] != c:
        raise InvalidInput(f"The correlation matrices are {up.shape[0]} x {up.shape[0]}; the model has {c} labels.")
    if length is None:
        if profile is None or not hasattr(profile, "expected_flips"):
            raise InvalidInput("Give the model's profile (to size the subset from E(eps)) or an explicit length.")
        length = int(profile_lengths(profile, np.array([float(eps)]), c, factor)[0])
    length = int(length)
    if not 1 <= length <= c:
        raise InvalidInput(f"The subset length must be between 1 and the number of labels ({c}), not {length}.")
    ease = target_ease(probs, target)
    icm = instance_correlation(up, down, target)
    trace: list = []
    subset = select_subset(ease, icm, length, float(gamma), int(branches), int(depth), trace=trace)
    labels = tuple(getattr(model, "labels", None) or (str(i) for i in range(c)))
    return ClassTree(labels, probs, target, ease, float(eps), length, float(gamma), int(branches), int(depth),
                     subset, tuple(trace))  # fmt: skip
