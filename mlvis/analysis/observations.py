"""The paper's Observation 1 (section IV-A): a classifier inherits its training label statistics.

The more often a label occurs in the training data, the higher the confidence the model gives it
on images where it is *absent*. Measured as Pearson's r between each label's training frequency
and its mean confidence over the evaluation images that do not contain it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from mlvis.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class AbsentConfidence:
    r: float
    p_value: float
    frequencies: np.ndarray  # (C,) training frequency of each label
    mean_absent_confidence: np.ndarray  # (C,) mean confidence where the label is absent


def absent_confidence_correlation(probs: np.ndarray, truth: np.ndarray, frequencies: np.ndarray) -> AbsentConfidence:
    """Pearson correlation between training frequency and mean confidence on absent images."""
    probs, truth = np.asarray(probs, np.float64), np.asarray(truth).astype(bool)
    absent = ~truth
    if (absent.sum(0) == 0).any():
        raise InvalidInput("every label needs at least one evaluation image where it is absent")
    mean_absent = (probs * absent).sum(0) / absent.sum(0)
    r, p = stats.pearsonr(np.asarray(frequencies, np.float64), mean_absent)
    return AbsentConfidence(float(r), float(p), np.asarray(frequencies), mean_absent)
