"""Pure numpy metrics: average precision, mAP, flips."""

from __future__ import annotations

from typing import Any

import numpy as np


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated average precision of one label (the VOC-2010+/COCO-style definition).

    The mean, over the positives, of the precision at each positive's rank when the scores are
    sorted in decreasing order (ties broken by order, stable). ``nan`` when there is no positive.
    """
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets).astype(bool)
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = targets[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_k[hits].sum() / n_pos)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP over labels that have at least one positive, and the per-label APs (nan = no positive)."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    aps = np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    return float(np.nanmean(aps)), aps


def flip_count(probs: Any, clean_pred: Any, threshold: float) -> Any:
    """Equation 3, the one definition: per row, the labels whose prediction ``probs >= threshold`` differs
    from the clean prediction ``clean_pred``, counted over all labels (the last axis).

    Works on numpy arrays and torch tensors alike (the result keeps the type and device)."""
    return ((probs >= threshold) != clean_pred).sum(-1)


def count_flips(clean_pred: np.ndarray, adv_pred: np.ndarray) -> np.ndarray:
    """Equation 3 from two predictions: labels whose binary prediction changed, summed over the last axis."""
    return (np.asarray(clean_pred).astype(bool) != np.asarray(adv_pred).astype(bool)).sum(-1)
