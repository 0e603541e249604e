"""CLASS subset selection (paper section V-B, Algorithm 3): a look-ahead tree over labels.

Pure numpy; one image at a time (the attack calls it per image before its loop).

Given, for one image,
  * ``ease`` P: per-label closeness of the confidence to the attack target
    (``t * y + (1 - t) * (1 - y)``), normalised by its maximum;
  * ``icm``: the instance correlation matrix (C x C);
the selector grows a label set from the easiest label. Each iteration builds a tree ``depth``
levels deep in which every node keeps the ``branches`` best-scoring labels not yet in its set,
score ``S = gamma * Z + (1 - gamma) * P`` with ``Z`` the row + column sums of the ICM over the
node's set (normalised by its largest magnitude); the leaf with the highest objective
``O = gamma * sum(icm[set, set]) + (1 - gamma) * sum(P[set])`` wins, and the first label on its
path joins the set. Ties go to the first leaf in breadth-first order, as in the paper.

Unlike the paper's code, it never fails when every score or objective is <= 0 (the best value
starts at -inf, not 0), and the tree is evaluated one level at a time as arrays instead of one
node at a time.
"""

from __future__ import annotations

import numpy as np


def target_ease(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """P of equation 8: closeness of each confidence to its target, normalised by the maximum."""
    probs, target = np.asarray(probs, np.float64), np.asarray(target, np.float64)
    p = target * probs + (1 - target) * (1 - probs)
    m = p.max(axis=-1, keepdims=True)
    return np.divide(p, m, out=np.zeros_like(p), where=m > 0)


def subset_length(expected_flips: float, num_labels: int, factor: float = 1.66) -> int:
    """Section V-B's heuristic: target 1/0.6 ~ 1.66 times the expected number of flips (>= 1)."""
    return int(min(num_labels, max(1, np.floor(factor * max(float(expected_flips), 0.0)))))


def select_subset(
    ease: np.ndarray,
    icm: np.ndarray,
    length: int,
    gamma: float = 0.5,
    branches: int = 4,
    depth: int = 4,
) -> np.ndarray:
    """The ordered label subset Algorithm 3 chooses for one image.

    Args:
        ease: (C,) P, the normalised closeness of each label to its target.
        icm: (C, C) instance correlation matrix.
        length: subset length (clipped to [1, C]).
        gamma: weight of correlation against ease (0 = ease only, 1 = correlation only).
        branches, depth: the look-ahead tree's width and depth (the paper uses 4 and 4).

    Returns:
        int array of ``length`` distinct label indices, in the order they were added.
    """
    ease = np.asarray(ease, np.float64)
    icm = np.asarray(icm, np.float64)
    C = ease.shape[0]
    if icm.shape != (C, C):
        raise ValueError(f"icm must be ({C}, {C}) to match ease, not {icm.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], not {gamma}")
    if branches < 1 or depth < 1:
        raise ValueError("branches and depth must be at least 1")
    length = int(np.clip(length, 1, C))
    pair = icm + icm.T  # Z contribution of one member: its column (to the set) + its row (from it)

    chosen = [int(np.argmax(ease))]  # root: the easiest label (first on ties)
    while len(chosen) < length:
        levels = min(depth, length - len(chosen))
        # every node of the current level: its member mask, Z vector, path (first added label)
        members = np.zeros((1, C), bool)
        members[0, chosen] = True
        z = pair[chosen].sum(0, keepdims=True)
        first = np.full(1, -1)
        for level in range(levels):
            scale = np.abs(z).max(axis=1, keepdims=True)
            zn = np.divide(z, scale, out=np.zeros_like(z), where=scale > 0)
            score = np.where(members, -np.inf, gamma * zn + (1 - gamma) * ease)
            k = min(branches, C - int(members[0].sum()))
            # top-k per node, best first; stable so that ties keep label order
            top = np.argsort(-score, axis=1, kind="stable")[:, :k]
            n_nodes = members.shape[0]
            parent = np.repeat(np.arange(n_nodes), k)
            added = top.reshape(-1)
            members = members[parent].copy()
            members[np.arange(len(added)), added] = True
            z = z[parent] + pair[added]
            first = added if level == 0 else first[parent]
        mf = members.astype(np.float64)
        sub_icm = np.einsum("ni,ij,nj->n", mf, icm, mf)
        objective = gamma * sub_icm + (1 - gamma) * (mf @ ease)
        chosen.append(int(first[int(np.argmax(objective))]))  # argmax: first of equal leaves
    return np.array(chosen, dtype=np.int64)
